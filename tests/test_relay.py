"""Peers that cannot reach each other directly are joined through the server, which passes
bytes it cannot read: the TLS between the peers runs end to end through it."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

import p2pchat
from p2pchat.protocol import Accept, Error, Invite, Invited, Ok, RelayRequest, RelayTicket

from .conftest import RawClient, RecordingProxy, connect, server_certificate

UNREACHABLE = [("127.0.0.1", 1)]  # an advertised address where nobody listens (NAT, firewall)
# ... and alice takes no part in reversal or hole punching (as behind a NAT that defeats
# them), so that nothing but the relay can join the two.


async def test_an_unreachable_inviter_is_reached_through_the_relay() -> None:
    async with p2pchat.SignallingServer(port=0) as server:
        proxy = RecordingProxy(("127.0.0.1", server.port))  # sees all that goes to the server
        where = await proxy.start()
        try:
            alice = p2pchat.Peer("alice", server=where, advertise=UNREACHABLE, traversal=False)
            async with alice, p2pchat.Peer("bob", server=where) as bob:
                chat_a, chat_b = await connect(alice, bob)
                assert (chat_a.route, chat_b.route) == ("relay", "relay")
                said = ["psst, the relay cannot read this", "nor this reply"]
                await chat_a.send(said[0])
                assert (await asyncio.wait_for(chat_b.receive(), 5)).body == said[0]
                await chat_b.send(said[1])
                assert (await asyncio.wait_for(chat_a.receive(), 5)).body == said[1]
                await chat_b.wait_acknowledged()
                await chat_a.close()
                await chat_b.wait_closed()
            assert b"relay" in proxy.captured  # the relay was used...
            for text in [*said, "psst", "reply"]:
                assert text.encode() not in proxy.captured  # ...and saw ciphertext only
            assert server.relays.active == 0
        finally:
            await proxy.close()


async def test_relays_are_bounded_per_user_and_the_refusal_says_so() -> None:
    async with p2pchat.SignallingServer(port=0, max_relays_per_user=1) as server:
        where = ("127.0.0.1", server.port)
        alice = p2pchat.Peer("alice", server=where, advertise=UNREACHABLE, traversal=False)
        async with (
            alice,
            p2pchat.Peer("bob", server=where) as bob,
            p2pchat.Peer("carol", server=where) as carol,
        ):
            chat_a, _ = await connect(alice, bob)
            assert chat_a.route == "relay"
            inviting = asyncio.create_task(alice.invite("carol"))
            invitation = await asyncio.wait_for(carol.next_invitation(), 5)
            with pytest.raises(
                p2pchat.PeerUnreachable, match="alice has 1 relayed conversations already"
            ):
                await invitation.accept()
            with pytest.raises(p2pchat.InviteRefused, match="relay"):
                await inviting


async def test_the_relay_works_inside_a_tls_server_connection(tmp_path: Path) -> None:
    cert, key = server_certificate(tmp_path)
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert, key)
    pinned = ssl.create_default_context(cafile=cert)
    async with p2pchat.SignallingServer(port=0, ssl=serving) as server:
        where = ("127.0.0.1", server.port)
        alice = p2pchat.Peer(
            "alice", server=where, server_ssl=pinned, advertise=UNREACHABLE, traversal=False
        )
        async with alice, p2pchat.Peer("bob", server=where, server_ssl=pinned) as bob:
            chat_a, chat_b = await connect(alice, bob)  # TLS between peers, in TLS to the server
            assert chat_b.route == "relay"
            await chat_a.send("tls in tls")
            assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "tls in tls"


async def test_a_direct_path_that_hangs_does_not_delay_the_relay() -> None:
    # Something accepts at alice's advertised address but never answers: dialling it
    # directly would wait for the whole hello_timeout (30 s). The relay joins after
    # relay_after (1 s) and wins the race.
    held: list[asyncio.StreamWriter] = []  # from 3.13, a writer let go of closes
    silent = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
    hole = silent.sockets[0].getsockname()[:2]
    try:
        async with p2pchat.SignallingServer(port=0) as server:
            where = ("127.0.0.1", server.port)
            alice = p2pchat.Peer("alice", server=where, advertise=[hole], traversal=False)
            bob = p2pchat.Peer("bob", server=where, hello_timeout=30, relay_after=1.0)
            async with alice, bob:
                async with asyncio.timeout(10):
                    chat_a, chat_b = await connect(alice, bob)
                assert chat_b.route == "relay"
                await chat_a.send("no waiting")
                assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "no waiting"
    finally:
        silent.close()


async def test_an_invitee_gets_one_relay_per_invitation() -> None:
    """An invitee asking for a relay again and again within the dial window held the
    inviter's relay slots (2) for all of it: one invitation now gives one relay."""
    async with p2pchat.SignallingServer(port=0, max_relays_per_user=2) as server:
        alice, bob = await RawClient.open(server.port), await RawClient.open(server.port)
        try:
            await alice.login("alice", 1)
            await bob.login("bob", 1)
            await alice.send(Invite(id="i", user="bob"))
            invited = await bob.recv_until(Invited)
            await bob.send(Accept(id="a", invitation=invited.invitation))
            await bob.recv_until(Ok)
            await bob.send(RelayRequest(id="r1", invitation=invited.invitation))
            assert isinstance(await bob.recv_until((RelayTicket, Error)), RelayTicket)
            await bob.send(RelayRequest(id="r2", invitation=invited.invitation))
            again = await bob.recv_until((RelayTicket, Error))
            assert isinstance(again, Error)
            assert (again.code, again.reason) == (
                "relay_unavailable",
                "this invitation was given a relay already",
            )
            assert server.relays.active == 1  # alice holds one slot, not both
        finally:
            await alice.close()
            await bob.close()
