"""Inputs for the fuzzer, from one seeded ``random.Random``: valid messages of a typed
schema (read with ``msgspec.inspect``), the same with one field made hostile, random
values of every JSON and msgpack kind, and byte-level damage to all of them.

Hostile values are those that broke a store or a decoder before, and their kin: NaN and
the infinities, floats that overflow (``1e400``), integers past 64 bits, strings with
control characters, lone surrogates, 70,000 characters, deep nesting, wrong types.
"""

from __future__ import annotations

import math
import random
import string
from typing import Any

import msgspec

from p2pchat.messages import GROUP_ID_PATTERN

__all__ = ["Generator"]

FLOATS = (math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308, -1e308, 5e-324, 1e16, 2.0**53 + 1)
INTS = (0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, -(10**30))
STRINGS = (
    "",
    " ",
    "\x00",
    "\x1b[2J",
    "a\nb",
    "\u202e",
    "\ud800",  # a lone surrogate: cannot be UTF-8
    "é" * 3,
    "../../etc/passwd",
    "NaN",
    "1e400",
)
JSON_TEXTS = (  # what a JSON encoder would never write, but a hostile peer can
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e400",
    b"-1e400",
    b"123456789012345678901234567890",
    b'"\\ud800"',
    b'"\\u0000"',
    b"[" * 2000 + b"]" * 2000,
    b'{"a":' * 500 + b"1" + b"}" * 500,
)


class Generator:
    """Random values and messages for one schema, reproducible from ``seed``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    # Any value at all.

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        kind = rng.randrange(9 if depth < 4 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return rng.random() < 0.5
        if kind == 2:
            return rng.choice(INTS) if rng.random() < 0.5 else rng.randint(-(2**70), 2**70)
        if kind == 3:
            return rng.choice(FLOATS) if rng.random() < 0.6 else rng.uniform(-1e20, 1e20)
        if kind in (4, 5):
            return self.text()
        if kind == 6:
            return [self.value(depth + 1) for _ in range(rng.randrange(5))]
        if kind == 7:
            return {self.text(8): self.value(depth + 1) for _ in range(rng.randrange(5))}
        return {"type": self.text(12), "id": self.value(depth + 1)}

    def text(self, longest: int = 64) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            return rng.choice(STRINGS)
        if roll < 0.35:
            return rng.choice("x\x00\n€") * rng.choice((256, 4097, 70_000))
        alphabet = string.printable if roll < 0.8 else "".join(map(chr, range(0, 0x2070, 7)))
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(longest)))

    # Valid-looking messages of a schema, with one hostile part now and then.

    def message(self, schema: Any, hostile: float = 0.3) -> Any:
        """A value for ``schema`` (a ``msgspec.inspect`` type); each part is replaced by
        any value at all with probability ``hostile`` / its depth."""
        return self._of(schema, hostile, 1)

    def _of(self, t: Any, hostile: float, depth: int) -> Any:
        rng = self.rng
        if rng.random() < hostile / depth:
            return self.value()
        mi = msgspec.inspect
        if isinstance(t, mi.UnionType):
            return self._of(rng.choice(t.types), hostile, depth)
        if isinstance(t, mi.StructType) and t.array_like:  # its fields in order, as a list
            return [self._of(f.type, hostile, depth + 1) for f in t.fields]
        if isinstance(t, mi.StructType):
            fields = {}
            for f in t.fields:
                if f.required or rng.random() < 0.7:
                    fields[f.encode_name] = self._of(f.type, hostile, depth + 1)
            if rng.random() < hostile / 4:
                fields[self.text(10)] = self.value()  # a field nobody asked for
            if t.tag_field is not None:
                tag = t.tag if rng.random() > hostile / 4 else self.value()
                fields = {t.tag_field: tag, **fields}
            return fields
        if isinstance(t, mi.StrType):
            return self._string(t)
        if isinstance(t, mi.BoolType):
            return rng.random() < 0.5
        if isinstance(t, mi.IntType):
            low = t.ge if t.ge is not None else -(2**31)
            high = t.le if t.le is not None else 2**31
            return rng.randint(low, high)
        if isinstance(t, mi.FloatType):
            return rng.uniform(0, 2e9)
        if isinstance(t, mi.LiteralType):
            return rng.choice(t.values)
        if isinstance(t, mi.NoneType):
            return None
        if isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
            most = t.max_length if t.max_length is not None else 6
            count = rng.randrange(min(most, 6) + 1)
            return [self._of(t.item_type, hostile, depth + 1) for _ in range(count)]
        if isinstance(t, mi.TupleType):
            return [self._of(item, hostile, depth + 1) for item in t.item_types]
        if isinstance(t, mi.DictType):
            return {
                self._string(mi.StrType()): self._of(t.value_type, hostile, depth + 1)
                for _ in range(rng.randrange(4))
            }
        if isinstance(t, mi.BytesType):
            return self.rng.randbytes(self.rng.randrange(64))
        return self.value()

    def _string(self, t: Any) -> str:
        rng = self.rng
        shortest = t.min_length or 0
        longest = t.max_length if t.max_length is not None else 40
        size = rng.randint(shortest, min(longest, shortest + 40))
        if t.pattern == GROUP_ID_PATTERN:  # a group's id: "g" and 32 hex digits
            return "g" + "".join(rng.choice("0123456789abcdef") for _ in range(32))
        if t.pattern is not None:  # the other patterns are names and base64url: letters do
            return "".join(rng.choice("abcdefghijk012_-") for _ in range(max(size, 1)))
        return "".join(rng.choice(string.ascii_letters) for _ in range(size))

    # Bytes.

    def damage(self, data: bytes) -> bytes:
        """``data`` with one kind of damage: bits flipped, cut, spliced, or repeated."""
        rng = self.rng
        if not data:
            return rng.randbytes(rng.randrange(16))
        roll = rng.randrange(6)
        where = rng.randrange(len(data))
        if roll == 0:
            flipped = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            return bytes(flipped)
        if roll == 1:
            return data[:where]
        if roll == 2:
            return data[:where] + rng.choice(JSON_TEXTS) + data[where:]
        if roll == 3:
            return data[:where] + rng.randbytes(rng.randrange(1, 9)) + data[where + 1 :]
        if roll == 4:
            return data + data[where:]
        return rng.randbytes(rng.randrange(1, 64))
