"""The group parts of the message store, one suite over every backend (memory, SQLite):
one stored message, a delivery state per member, the per-member pipe views, rosters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

import p2pchat
from p2pchat import GroupRecord, Message, MessageStore

GROUP = "g" + "0" * 32


@pytest.fixture(params=["memory", "sqlite"])
async def messages(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MessageStore]:
    store: MessageStore = (
        p2pchat.MemoryMessageStore()
        if request.param == "memory"
        else p2pchat.SqliteMessageStore(tmp_path / "messages.sqlite3")
    )
    await store.start()
    yield store
    await store.close()


def ours(n: int, *, group: str = GROUP) -> Message:
    return Message(
        id=f"g{n}",
        sender="alice",
        recipient=group,
        body=f"group {n}",
        sent_at=1000.0 + n,
        group=group,
        group_version=1,
    )


def record(version: int = 1, **changes: object) -> GroupRecord:
    kept = GroupRecord(
        id=GROUP,
        name="club",
        admin="alice",
        members=("alice", "bob", "carol"),
        version=version,
        roster=f"roster {version}",
    )
    return msgspec.structs.replace(kept, **changes)


async def test_groups_and_their_rosters_are_kept(messages: MessageStore) -> None:
    await messages.save_group(record())
    await messages.save_group(record(2, members=("alice", "bob"), announced=True))
    assert await messages.groups() == [record(2, members=("alice", "bob"), announced=True)]
    assert await messages.group_roster(GROUP, 1) == "roster 1"
    assert await messages.group_roster(GROUP, 2) == "roster 2"
    assert await messages.group_roster(GROUP, 3) is None


async def test_a_group_message_is_stored_once_and_goes_to_each_member(
    messages: MessageStore,
) -> None:
    one = Message(id="o1", sender="alice", recipient="bob", body="1:1", sent_at=999.0)
    await messages.add(one)
    await messages.add_group_messages([ours(1), ours(2)], ["bob", "carol"])
    await messages.add_group_messages([ours(1)], ["bob", "carol"])  # known: nothing more
    assert [m.id for m in await messages.group_history(GROUP)] == ["g1", "g2"]
    pipe = await messages.unshipped("alice", "bob")
    assert [(m.id, m.recipient, m.group) for m in pipe] == [
        ("o1", "bob", None),
        ("g1", "bob", GROUP),
        ("g2", "bob", GROUP),
    ]
    assert [(m.id, m.recipient) for m in await messages.undeposited("alice")] == [
        ("o1", "bob"),
        ("g1", "bob"),
        ("g1", "carol"),
        ("g2", "bob"),
        ("g2", "carol"),
    ]
    await messages.mark_deposited(["g1"], recipient="carol")
    assert ("g1", "carol") not in [(m.id, m.recipient) for m in await messages.undeposited("alice")]
    await messages.mark_shipped("bob", ["g1", "o1"])
    assert await messages.group_delivery("g1") == {"bob": True, "carol": False}
    assert not (await messages.group_history(GROUP))[0].shipped
    assert [m.id for m in await messages.unshipped("alice", "bob")] == ["g2"]
    await messages.mark_shipped("carol", ["g1"])
    assert (await messages.group_history(GROUP))[0].shipped
    # One-to-one views never show group messages.
    assert [m.id for m in await messages.history("alice", "bob")] == ["o1"]
    assert await messages.correspondents("alice") == ["bob"]


async def test_a_member_out_holds_nothing_back(messages: MessageStore) -> None:
    await messages.add_group_messages([ours(1)], ["bob", "carol"])
    await messages.mark_shipped("bob", ["g1"])
    await messages.drop_deliveries(GROUP, "carol")
    assert await messages.group_delivery("g1") == {"bob": True}
    assert (await messages.group_history(GROUP))[0].shipped
    assert await messages.unshipped("alice", "carol") == []


async def test_received_group_messages_are_read_through_their_group_only(
    messages: MessageStore,
) -> None:
    theirs = msgspec.structs.replace(ours(1), sender="bob", shipped=True)
    mail = Message(id="m1", sender="bob", recipient="alice", body="mail", sent_at=1.0)
    await messages.add_many([theirs, mail], unread=True)
    first = await messages.next_unread("alice")
    assert first is not None
    assert first.id == "m1"
    found = await messages.next_unread("alice", group=GROUP)
    assert found == theirs
    await messages.mark_read("bob", ["g1"])
    assert await messages.next_unread("alice", group=GROUP) is None
    assert await messages.history("alice", "bob") == [mail]
