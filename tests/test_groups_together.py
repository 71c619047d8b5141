"""Groups beside search and files, over real sockets and SQLite files: a group's messages
are found by every member's search; files still go between members, and a group message
is never taken for a file offer, whether it comes in a talk or by mail."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import p2pchat
from p2pchat.peering.files import FileNote, offer_body

from .conftest import connect, eventually
from .test_groups import hub, take  # noqa: F401  (hub: a fixture)
from .test_mailbox import Server


async def test_every_member_finds_a_groups_messages(hub: Server) -> None:  # noqa: F811
    carol = hub.peer("carol")
    await carol.start()  # known to the server; then away: the group reaches her by mail
    await carol.close()
    async with hub.peer("alice") as alice, hub.peer("bob") as bob:
        await connect(alice, bob)  # bob's copies go by the talk
        group = await alice.create_group("hikers", ["bob", "carol"])
        bobs = await asyncio.wait_for(bob.next_group(), 10)
        await group.send("Picnic at the lake on Sunday")
        await bobs.send("picnic: I bring the bread")
        await bob.send("alice", "a picnic of our own?")  # one-to-one, beside the group
        await take(bobs, 2)  # the notice, alice's message

        async def found(peer: p2pchat.Peer, user: str | None = None) -> list[str]:
            return [m.body for m in await peer.search("picnic", user)]

        # The sender and a member, each with their own store: every group message, the
        # one-to-one ones beside them; with a user, what that user sent (to the group too).
        await eventually(lambda: _has(alice, "picnic: I bring the bread"))
        assert sorted(await found(alice)) == sorted(
            ["Picnic at the lake on Sunday", "picnic: I bring the bread", "a picnic of our own?"]
        )
        assert sorted(await found(bob, "alice")) == [
            "Picnic at the lake on Sunday",
            "a picnic of our own?",
        ]
        assert sorted(await found(alice, "bob")) == [
            "a picnic of our own?",
            "picnic: I bring the bread",
        ]
        (match,) = await bob.search("lake")
        assert (match.group, match.recipient, match.sender) == (group.id, group.id, "alice")
        async with hub.peer("carol") as carol:  # the member who was away: by mail
            carols = await asyncio.wait_for(carol.next_group(), 10)
            await take(carols, 3)
            assert sorted(await found(carol)) == [
                "Picnic at the lake on Sunday",
                "picnic: I bring the bread",
            ]
            assert [m.body for m in await carol.search("bread", "bob")] == [
                "picnic: I bring the bread"
            ]
            assert await carol.search("own") == []  # alice and bob's talk is theirs


async def _has(peer: p2pchat.Peer, body: str) -> bool:
    return body in [m.body for m in await peer.search("picnic")]


async def test_files_between_members_and_no_offer_through_a_group(
    hub: Server,  # noqa: F811
    tmp_path: Path,
) -> None:
    carol = hub.peer("carol")
    await carol.start()
    await carol.close()
    fake = offer_body(FileNote(id="not-a-file", name="evil.sh", size=10, sha256="0" * 64))
    async with hub.peer("alice") as alice, hub.peer("bob") as bob:
        await connect(alice, bob)
        group = await alice.create_group("makers", ["bob", "carol"])
        bobs = await asyncio.wait_for(bob.next_group(), 10)
        await take(bobs, 1)
        sent = await group.send(fake)  # text that looks like an offer, to the group
        source = tmp_path / "plan.bin"
        source.write_bytes(os.urandom(300_000))
        sending = await alice.send_file("bob", source)  # a real file, to one member
        (got,) = await take(bobs, 1)
        assert (got.id, got.body, got.group) == (sent.id, fake, group.id)  # text, in the group
        offer = await asyncio.wait_for(bob.next_file(), 5)
        assert offer.id == sending.id  # the real one only
        receiving = await offer.accept(tmp_path / "in")
        path = await asyncio.wait_for(receiving.wait(), 10)
        assert path is not None
        assert path.read_bytes() == source.read_bytes()
        await asyncio.wait_for(sending.wait(), 5)
        assert [t.id for t in await bob.transfers()] == [sending.id]
        async with hub.peer("carol") as carol:  # by mail: the same
            carols = await asyncio.wait_for(carol.next_group(), 10)
            bodies = [m.body for m in await take(carols, 2)]
            assert bodies == ["alice created makers", fake]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(carol.next_file(), 0.3)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(carol.next_message(), 0.3)
            assert await carol.transfers() == []
