"""The decoders a remote party reaches, each as a fuzz target: ``target(seed, count,
findings) -> accepted``."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import Any

import msgspec

from p2pchat.errors import ProtocolError
from p2pchat.protocol import Decoder, WireMessage
from p2pchat.webevents import Command, decode_command

from .generate import Generator

__all__ = ["TARGETS", "Findings"]


class Findings:
    """What broke a rule, each with what makes it again."""

    def __init__(self, target: str, seed: int) -> None:
        self.target = target
        self.seed = seed
        self.items: list[str] = []
        self.rejected = 0

    def add(self, number: int, what: str, data: object) -> None:
        text = repr(data)
        shown = text if len(text) < 300 else text[:300] + "..."
        self.items.append(f"input {number} (seed {self.seed}): {what}: {shown}")


def bad_value(value: Any) -> str | None:
    """Why a decoded ``value`` must not have been let through, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"a number that is not finite ({value})"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
        return f"an integer past 64 bits ({value})"
    if isinstance(value, msgspec.Struct):
        return next(filter(None, map(bad_value, msgspec.structs.astuple(value))), None)
    if isinstance(value, (list, tuple, set, frozenset)):
        return next(filter(None, map(bad_value, value)), None)
    if isinstance(value, dict):
        return next(filter(None, map(bad_value, value.values())), None)
    return None


def _json(generator: Generator, schema: Any) -> bytes:
    body = json.dumps(generator.message(schema), allow_nan=True).encode()
    return generator.damage(body) if generator.rng.random() < 0.3 else body


def wire(seed: int, count: int, findings: Findings) -> int:
    """Frames as a server or a peer reads them off a socket (``protocol.Decoder``)."""
    generator = Generator(seed)
    rng = generator.rng
    schema = msgspec.inspect.type_info(WireMessage)
    accepted = 0
    for number in range(count):
        body = _json(generator, schema)
        size = len(body) if rng.random() < 0.9 else rng.choice((0, 1, 2**31, len(body) + 1))
        data = struct.pack(">I", size) + body
        decoder = Decoder()
        try:
            cut = rng.randrange(len(data) + 1)
            messages = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        except ProtocolError:
            findings.rejected += 1
            continue
        except Exception as exc:
            findings.add(number, f"{type(exc).__name__}: {exc}", data)
            continue
        for message in messages:
            if (why := bad_value(message)) is not None:
                findings.add(number, f"let through {why}", data)
        accepted += len(messages)
    return accepted


def web(seed: int, count: int, findings: Findings) -> int:
    """What a page sends on its WebSocket (``webevents.decode_command``)."""
    generator = Generator(seed)
    schema = msgspec.inspect.type_info(Command)
    accepted = 0
    for number in range(count):
        data = _json(generator, schema)
        try:
            text = data.decode()  # a text frame that is not UTF-8 ends at the WebSocket
        except UnicodeDecodeError:
            findings.rejected += 1
            continue
        try:
            command = decode_command(text)
        except (msgspec.ValidationError, msgspec.DecodeError):
            findings.rejected += 1
            continue
        except Exception as exc:
            findings.add(number, f"{type(exc).__name__}: {exc}", data)
            continue
        if (why := bad_value(command)) is not None:
            findings.add(number, f"let through {why}", data)
        accepted += 1
    return accepted


TARGETS: dict[str, Callable[[int, int, Findings], int]] = {"wire": wire, "web": web}
