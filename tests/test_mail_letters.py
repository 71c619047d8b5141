"""Mail in bursts: the messages waiting for one recipient go as one sealed letter per
batch, so that a burst is not paced one deposit at a time; each message still arrives
once, in order, and the receipts of a batch bring every one of its messages back shipped.

Real sockets on 127.0.0.1, real SQLite files for the server and the peers.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

import p2pchat
from p2pchat.shared.identity import Identity, b64decode, b64encode
from p2pchat.shared.seal import (
    _BUNDLE_INFO,
    MAX_BUNDLE,
    SUITE,
    _fields,
    bundle_id,
    is_bundle,
    open_bundle,
    open_seal,
    seal,
    seal_bundle,
)
from p2pchat.store import Message

from .conftest import eventually
from .test_mailbox import (  # noqa: F401 (server: a fixture)
    Server,
    _none_undeposited,
    all_shipped,
    meet,
    server,
)


def _messages(count: int, *, size: int = 20) -> list[Message]:
    return [Message.new("alice", "bob", f"{n:05d}".ljust(size, "x")) for n in range(count)]


def test_a_batch_opens_whole_for_its_recipient_and_item_only() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    messages = _messages(3)
    item = bundle_id([m.id for m in messages])
    assert is_bundle(item)
    assert not is_bundle(messages[0].id)
    sealed = seal_bundle(alice, messages, bob.mailbox_key)
    opened = open_bundle(bob, "bob", item=item, sender="alice", sealed=sealed, sender_key=alice.key)
    assert [(m.id, m.body, m.sent_at) for m in opened] == [
        (m.id, m.body, m.sent_at) for m in messages
    ]
    other = bundle_id([m.id for m in messages[:2]])
    with pytest.raises(p2pchat.SealError):  # moved to another item (another batch's id)
        open_bundle(bob, "bob", item=other, sender="alice", sealed=sealed, sender_key=alice.key)
    with pytest.raises(p2pchat.SealError):  # said to come from someone else
        open_bundle(bob, "bob", item=item, sender="carol", sealed=sealed, sender_key=alice.key)
    with pytest.raises(p2pchat.SealError):  # a single letter's way of opening: not this
        open_seal(bob, "bob", item=item, sender="alice", sealed=sealed, sender_key=alice.key)
    single = seal(alice, messages[0], bob.mailbox_key)
    with pytest.raises(p2pchat.SealError):  # nor the reverse
        open_bundle(
            bob, "bob", item=messages[0].id, sender="alice", sealed=single, sender_key=alice.key
        )
    with pytest.raises(ValueError, match="a batch holds 1 to 256 messages"):
        seal_bundle(alice, _messages(MAX_BUNDLE + 1), bob.mailbox_key)


def test_a_batch_signed_by_another_key_or_named_by_other_ids_does_not_open() -> None:
    alice, bob, mallory = Identity.generate(), Identity.generate(), Identity.generate()
    messages = _messages(2)
    item = bundle_id([m.id for m in messages])
    forged = seal_bundle(mallory, messages, bob.mailbox_key)  # mallory signs as alice
    with pytest.raises(p2pchat.SealError, match="not signed by the key of alice"):
        open_bundle(bob, "bob", item=item, sender="alice", sealed=forged, sender_key=alice.key)
    # A batch sealed for this item but holding other messages than its name says.
    good = msgspec.msgpack.decode(
        SUITE.decrypt(
            b64decode(seal_bundle(alice, messages, bob.mailbox_key)),
            bob.mailbox_private_key,
            info=_fields(_BUNDLE_INFO, "bob", item),
        )
    )
    good["messages"] = good["messages"][:1]
    public = X25519PublicKey.from_public_bytes(b64decode(bob.mailbox_key))
    swapped = b64encode(
        SUITE.encrypt(msgspec.msgpack.encode(good), public, info=_fields(_BUNDLE_INFO, "bob", item))
    )
    with pytest.raises(p2pchat.SealError, match="not what it claims"):
        open_bundle(bob, "bob", item=item, sender="alice", sealed=swapped, sender_key=alice.key)


async def test_500_messages_written_to_someone_away_are_collected_at_once(
    server: Server,  # noqa: F811 (the fixture)
) -> None:
    """Written one after another (each send awaited), deposited as a few letters, not
    paced at 10 deposits a second: bob, back, has all of them once, in order, at once;
    alice's come back shipped, by the receipts of the batches."""
    await meet(server)
    bodies = [f"m{n:04d}" for n in range(500)]
    async with server.peer("alice") as alice:
        for body in bodies:
            await alice.send("bob", body)
        await eventually(lambda: _none_undeposited(alice), timeout=20)
        assert server.server is not None
        items, _ = await server.server.mail.mailbox.usage("bob")
        # Letters, not one deposit each: one by one, one sender's share (250 items) of a
        # mailbox would have stopped them at half, and the deposit rate paced them.
        assert items < 250
    async with server.peer("bob") as bob:
        started = time.monotonic()
        got = [(await asyncio.wait_for(bob.next_message(), 10)).body for _ in bodies]
        assert got == bodies
        assert time.monotonic() - started < 10  # no pacing (it was 40 s, one by one)
        assert [m.body for m in await bob.history("alice")] == bodies  # stored once each
    async with server.peer("alice") as alice:  # the receipts waited for her
        await eventually(lambda: all_shipped(alice, "bob"), timeout=20)


async def test_a_message_of_a_batch_that_breaks_a_rule_is_refused_alone(
    server: Server,  # noqa: F811 (the fixture)
) -> None:
    """Bob takes messages of at most 100 bytes; alice (16 KiB) writes three, the middle
    one larger: bob keeps the other two, and only those come back shipped to alice (the
    third waits, unshipped, for a talk)."""
    await meet(server)
    bodies = ["first", "x" * 200, "third"]
    written = [Message.new("alice", "bob", body) for body in bodies]
    store = p2pchat.SqliteMessageStore(server.directory / "alice.sqlite3")
    await store.start()
    await store.add_many(written)  # written while away: deposited together at the login
    await store.close()
    async with server.peer("alice") as alice:
        await eventually(lambda: _none_undeposited(alice), timeout=20)
        assert server.server is not None
        assert (await server.server.mail.mailbox.usage("bob"))[0] == 1  # one letter
    async with server.peer("bob", max_message_size=100) as bob:
        got = [(await asyncio.wait_for(bob.next_message(), 5)).body for _ in range(2)]
        assert got == ["first", "third"]
    async with server.peer("alice") as alice:

        async def two_shipped() -> bool:
            marks = [(m.body, m.shipped) for m in await alice.history("bob")]
            return marks == [("first", True), (bodies[1], False), ("third", True)]

        await eventually(two_shipped, timeout=20)
