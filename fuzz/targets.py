"""The decoders a remote party reaches, each as a fuzz target: ``target(seed, count,
findings) -> accepted``."""

from __future__ import annotations

import asyncio
import json
import math
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from p2pchat.errors import ProtocolError, SealError
from p2pchat.frontends.webevents import Command, decode_command
from p2pchat.messages import GroupNote
from p2pchat.peering.delivery import Delivery
from p2pchat.protocol import Decoder, WireMessage
from p2pchat.shared.identity import Identity, b64decode, b64encode
from p2pchat.shared.seal import (
    _BUNDLE,
    _BUNDLE_INFO,
    _GROUP_LETTER,
    _LETTER,
    _RECEIPT,
    _SEAL_INFO,
    SUITE,
    Bundle,
    Letter,
    SignedReceipt,
    _fields,
    bundle_id,
    open_bundle,
    open_letter,
    open_receipt,
)
from p2pchat.store import Message
from p2pchat.stores.sqlite import SqliteMessageStore

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
"""Each target by name (the mail ones are added below)."""


def _sign(identity: Identity, context: bytes, parts: list[Any]) -> str:
    """``parts`` signed as a peer signs them, if each is of a type it can sign."""
    if not all(isinstance(p, str) or (isinstance(p, float | int) and p is not True) for p in parts):
        return "AAAA"
    try:
        return identity.sign(
            _fields(context, *(float(p) if isinstance(p, int) else p for p in parts))
        )
    except (UnicodeEncodeError, OverflowError):
        return "AAAA"


DEEP_MSGPACK = b"\x81\xa1x" + b"\x91" * 5000 + b"\xc0"
"""``{"x": [[[[...nil]]]]}``, 5000 deep: what once killed the postbox."""


def _msgpack(generator: Generator, value: Any) -> bytes:
    if generator.rng.random() < 0.01:
        return DEEP_MSGPACK
    try:
        data = msgspec.msgpack.encode(value)
    except (OverflowError, TypeError, UnicodeEncodeError):  # past 64 bits, surrogates
        data = generator.rng.randbytes(32)
    return generator.damage(data) if generator.rng.random() < 0.2 else data


def letters(seed: int, count: int, findings: Findings) -> int:
    """Mail as a peer opens it (``seal.open_letter``, then the checks of a received
    message), each accepted one stored in a real SQLite store, as the postbox does; group
    letters too (a note that decodes is signed as a group letter's)."""
    return asyncio.run(_letters(seed, count, findings))


async def _letters(seed: int, count: int, findings: Findings) -> int:
    generator = Generator(seed)
    rng = generator.rng
    alice, bob = Identity.generate(), Identity.generate()
    public = X25519PublicKey.from_public_bytes(b64decode(bob.mailbox_key))
    schema = msgspec.inspect.type_info(Letter)
    delivery = Delivery("bob", "alice", max_message_size=16 * 1024)
    accepted = 0
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteMessageStore(Path(folder) / "bob.sqlite3")
        await store.start()
        batch: list[Message] = []
        try:
            for number in range(count):
                fields = generator.message(schema, hostile=0.15)
                item = f"i{number}"
                if isinstance(fields, dict) and rng.random() < 0.8:  # addressed right
                    fields.update(sender="alice", recipient="bob", id=item)
                if isinstance(fields, dict):
                    parts = [fields.get(k) for k in ("sender", "recipient", "id", "ts", "body")]
                    note = _note(fields.get("group"))
                    context = _LETTER if note is None else _GROUP_LETTER
                    fields["signature"] = _sign(alice, context, [*parts, *filter(None, [note])])
                plain = _msgpack(generator, fields)
                info = _fields(_SEAL_INFO, "bob", item)
                sealed = b64encode(SUITE.encrypt(plain, public, info=info))
                try:
                    message, group = open_letter(
                        bob, "bob", item=item, sender="alice", sealed=sealed, sender_key=alice.key
                    )
                    delivery.check_incoming(message)
                except (SealError, ProtocolError):
                    findings.rejected += 1
                    continue
                except Exception as exc:
                    findings.add(number, f"{type(exc).__name__}: {exc}", plain)
                    continue
                if (why := bad_value(message) or bad_value(group)) is not None:
                    findings.add(number, f"let through {why}", plain)
                batch.append(message)
                accepted += 1
                if len(batch) >= 512:
                    await _store(store, batch, number, findings)
            await _store(store, batch, count, findings)
        finally:
            await store.close()
    return accepted


def _note(value: Any) -> str | None:
    """A generated group note as its letter's signature covers it (JSON), if it decodes."""
    if value is None:
        return None
    try:
        return msgspec.json.encode(msgspec.convert(value, GroupNote)).decode()
    except (msgspec.ValidationError, TypeError, ValueError, OverflowError):
        return None


async def _store(
    store: SqliteMessageStore, batch: list[Message], number: int, findings: Findings
) -> None:
    """Store what was accepted, as the postbox does; no write may fail."""
    try:
        await store.add_many(batch, unread=True)
    except Exception as exc:
        findings.add(number, f"a store write failed: {type(exc).__name__}: {exc}", batch[:2])
    batch.clear()


def bundles(seed: int, count: int, findings: Findings) -> int:
    """Mail in batches as a peer opens it (``seal.open_bundle``, then each message's
    checks), each message accepted stored in a real SQLite store, as the postbox does."""
    return asyncio.run(_bundles(seed, count, findings))


async def _bundles(seed: int, count: int, findings: Findings) -> int:
    generator = Generator(seed)
    rng = generator.rng
    alice, bob = Identity.generate(), Identity.generate()
    public = X25519PublicKey.from_public_bytes(b64decode(bob.mailbox_key))
    schema = msgspec.inspect.type_info(Bundle)
    delivery = Delivery("bob", "alice", max_message_size=16 * 1024)
    accepted = 0
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteMessageStore(Path(folder) / "bob.sqlite3")
        await store.start()
        batch: list[Message] = []
        try:
            for number in range(count):
                fields = generator.message(schema, hostile=0.15)
                item = f"l-{number}"
                entries = fields.get("messages") if isinstance(fields, dict) else None
                if isinstance(fields, dict) and rng.random() < 0.8:  # addressed right
                    fields.update(sender="alice", recipient="bob")
                    if isinstance(entries, list) and all(
                        isinstance(e, list) and e and isinstance(e[0], str) for e in entries
                    ):
                        item = bundle_id([e[0] for e in entries])  # named by its ids
                if isinstance(fields, dict):
                    parts = [fields.get("sender"), fields.get("recipient")]
                    for entry in entries if isinstance(entries, list) else [None]:
                        parts += entry if isinstance(entry, list) else [entry]
                    fields["signature"] = _sign(alice, _BUNDLE, parts)
                plain = _msgpack(generator, fields)
                info = _fields(_BUNDLE_INFO, "bob", item)
                sealed = b64encode(SUITE.encrypt(plain, public, info=info))
                try:
                    messages = open_bundle(
                        bob, "bob", item=item, sender="alice", sealed=sealed, sender_key=alice.key
                    )
                except SealError:
                    findings.rejected += 1
                    continue
                except Exception as exc:
                    findings.add(number, f"{type(exc).__name__}: {exc}", plain)
                    continue
                for message in messages:  # one that breaks a rule is refused alone
                    try:
                        delivery.check_incoming(message)
                    except ProtocolError:
                        findings.rejected += 1
                        continue
                    except Exception as exc:
                        findings.add(number, f"{type(exc).__name__}: {exc}", plain)
                        continue
                    if (why := bad_value(message)) is not None:
                        findings.add(number, f"let through {why}", plain)
                    batch.append(message)
                    accepted += 1
                if len(batch) >= 512:
                    await _store(store, batch, number, findings)
            await _store(store, batch, count, findings)
        finally:
            await store.close()
    return accepted


def receipts(seed: int, count: int, findings: Findings) -> int:
    """Receipts as a sender opens them (``seal.open_receipt``), the ids each names then
    marked shipped in a real SQLite store, as the postbox does."""
    return asyncio.run(_receipts(seed, count, findings))


async def _receipts(seed: int, count: int, findings: Findings) -> int:
    generator = Generator(seed)
    rng = generator.rng
    bob = Identity.generate()
    schema = msgspec.inspect.type_info(SignedReceipt)
    accepted = 0
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteMessageStore(Path(folder) / "alice.sqlite3")
        await store.start()
        try:
            for number in range(count):
                fields = generator.message(schema, hostile=0.15)
                if isinstance(fields, dict) and rng.random() < 0.8:
                    fields.update(recipient="bob", sender="alice")
                if isinstance(fields, dict):
                    ids = fields.get("ids")
                    parts = [fields.get("recipient"), fields.get("sender")]
                    parts += ids if isinstance(ids, list) else [None]
                    fields["signature"] = _sign(bob, _RECEIPT, parts)
                data = _msgpack(generator, fields)
                try:
                    shipped = open_receipt(
                        "alice", recipient="bob", sealed=b64encode(data), recipient_key=bob.key
                    )
                except SealError:
                    findings.rejected += 1
                    continue
                except Exception as exc:
                    findings.add(number, f"{type(exc).__name__}: {exc}", data)
                    continue
                if (why := bad_value(shipped)) is not None:
                    findings.add(number, f"let through {why}", data)
                try:
                    await store.mark_shipped("bob", shipped)
                except Exception as exc:
                    findings.add(number, f"a store write failed: {type(exc).__name__}: {exc}", data)
                accepted += 1
        finally:
            await store.close()
    return accepted


TARGETS.update(letters=letters, bundles=bundles, receipts=receipts)
