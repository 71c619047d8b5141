"""Connection reversal and hole punching on 127.0.0.1 (the NAT cases themselves are in
test_nat.py): who dials whom, which side is the TLS server, and what a hostile inviter,
invitee or server cannot make a peer do."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import pytest

import p2pchat
from p2pchat.peering.dialler import Dialler
from p2pchat.protocol import (
    PROTOCOL_VERSION,
    Accept,
    Auth,
    Challenge,
    Error,
    Hello,
    Invite,
    Invited,
    Msg,
    Ok,
    Proceed,
    PunchNote,
    PunchRequest,
    Reverse,
    Ringing,
    StartTls,
    Welcome,
    encode,
)
from p2pchat.shared import connection as connection_module
from p2pchat.shared.identity import (
    Identity,
    b64decode,
    b64encode,
    direct_tls_context,
    login_challenge_payload,
)

from .conftest import PeerFactory, RawClient, connect, eventually

RawFactory = Callable[[int], Awaitable[RawClient]]

UNREACHABLE = [("127.0.0.1", 1)]  # nobody listens there (behind a NAT, a firewall)


async def test_an_unreachable_inviter_calls_the_invitee_back(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice", advertise=UNREACHABLE)
    bob = await make_peer("bob")
    chat_a, chat_b = await connect(alice, bob)
    assert (chat_a.route, chat_a.via) == ("direct", "reversed")
    assert (chat_b.route, chat_b.via) == ("direct", "reversed")
    await chat_a.send("I dialled you, yet I am the TLS server")
    assert (await asyncio.wait_for(chat_b.receive(), 5)).body.startswith("I dialled you")
    await chat_b.send("and I sent starttls")
    assert (await asyncio.wait_for(chat_a.receive(), 5)).body == "and I sent starttls"
    await chat_b.wait_acknowledged()


async def test_the_server_connection_comes_from_the_listening_port(
    make_peer: PeerFactory,
) -> None:
    alice = await make_peer("alice")
    assert alice.observed == ("127.0.0.1", alice.listening[0][1])
    bob = await make_peer("bob", traversal=False)
    assert bob.observed is not None
    assert bob.observed[1] != bob.listening[0][1]


async def test_two_peers_advertising_nowhere_meet_at_their_observed_addresses(
    make_peer: PeerFactory,
) -> None:
    # Neither advertised address answers; the ones the server observes are the listening
    # ports (each connects to the server from there), which is what the punches aim at.
    alice = await make_peer("alice", advertise=UNREACHABLE)
    bob = await make_peer("bob", advertise=UNREACHABLE)
    chat_a, chat_b = await connect(alice, bob)
    assert chat_a.route == chat_b.route == "direct"
    assert chat_b.via in ("punched", "reversed")  # which SYN met which listener first
    await chat_b.send("through the hole")
    assert (await asyncio.wait_for(chat_a.receive(), 5)).body == "through the hole"


async def test_a_peer_without_traversal_is_reached_through_the_relay(
    make_peer: PeerFactory,
) -> None:
    alice = await make_peer("alice", advertise=UNREACHABLE, traversal=False)
    bob = await make_peer("bob")
    chat_a, chat_b = await connect(alice, bob)
    assert (chat_a.via, chat_b.via) == ("relayed", "relayed")
    assert chat_b.route == "relay"


async def test_a_call_back_for_an_invitation_not_being_reached_is_refused(
    make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    bob = await make_peer("bob")
    caller = await raw_clients(bob.listening[0][1])
    await caller.send(Reverse(invitation="made-up"))
    refusal = await caller.recv()
    assert isinstance(refusal, Error)
    assert refusal.code == "invitation_gone"
    assert await caller.closed_by_other_side()


async def test_clear_bytes_after_proceed_fail_a_call_back(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    # A hand-driven inviter calls bob back and slips a message in clear after proceed:
    # bob reads no clear byte after the last clear frame as if it came through TLS.
    bob = await make_peer("bob", hello_timeout=1, punch_timeout=1)
    alice = await raw_clients(server.port)
    await alice.login("alice", 1, traversal=True)
    await alice.send(Invite(id="1", user="bob"))
    invitation = await asyncio.wait_for(bob.next_invitation(), 5)
    accepting = asyncio.create_task(invitation.accept())
    note = await alice.recv_until(PunchNote)
    assert note.step == "connect"
    assert note.addresses == [bob.listening[0]]
    caller = await raw_clients(bob.listening[0][1])
    await caller.send(Reverse(invitation=invitation.id))
    assert isinstance(await caller.recv(), StartTls)
    await caller.send_raw(encode(Proceed()) + encode(Msg(id="x", ts=0.0, body="INJECTED")))
    assert await caller.closed_by_other_side()
    with pytest.raises(p2pchat.PeerUnreachable):
        await accepting
    assert await bob.history("alice") == []


async def test_a_call_back_by_someone_without_the_inviters_key_fails_its_handshake(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    # Someone who learned bob's address and the invitation calls him back first: bob's
    # TLS, pinned to alice's certificate, refuses them, and alice's own call still works.
    bob = await make_peer("bob")
    alice_key = Identity.generate()
    alice = await raw_clients(server.port)
    await alice.login("alice", 1, alice_key, traversal=True)
    await alice.send(Invite(id="1", user="bob"))
    ringing = await alice.recv_until(Ringing)
    invitation = await asyncio.wait_for(bob.next_invitation(), 5)
    accepting = asyncio.create_task(invitation.accept())
    await alice.recv_until(PunchNote)
    bob_certificate = b64decode(ringing.certificate)
    for identity in (Identity.generate(), alice_key):  # the impostor, then alice
        caller = await raw_clients(bob.listening[0][1])
        await caller.send(Reverse(invitation=invitation.id))
        start = await caller.recv()
        assert isinstance(start, StartTls)
        await caller.send(Proceed())
        context = direct_tls_context(identity, bob_certificate, server_side=True)
        if identity is not alice_key:
            with contextlib.suppress(p2pchat.P2PChatError, OSError):
                await caller.connection.start_tls(context, server_side=True, timeout=5)
                await caller.recv()  # bob refuses the handshake (it may show only here)
            assert not accepting.done()
            continue
        await caller.connection.start_tls(context, server_side=True, timeout=5)
        hello = await caller.recv()
        assert isinstance(hello, Hello)
        assert hello.invitation == invitation.id
        await caller.send(Welcome(version=hello.version, name="alice"))
    chat = await asyncio.wait_for(accepting, 5)
    assert (chat.peer, chat.via) == ("alice", "reversed")


async def test_a_hostile_invitee_cannot_make_the_inviter_dial_what_it_must_not(
    server: p2pchat.SignallingServer,
    make_peer: PeerFactory,
    raw_clients: RawFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # mallory advertises privileged ports and asks for call backs and punches, again and
    # again: alice connects to none of those ports (every connection she opens is seen
    # here), punches a bounded number of times, and the server stops passing them on.
    dialled: list[tuple[str, int]] = []
    opened = connection_module.Connection.open.__func__  # type: ignore[attr-defined]

    async def spy(cls: Any, /, host: str, port: int, **kwargs: Any) -> Any:
        dialled.append((host, port))
        return await opened(cls, host, port, **kwargs)

    alice = await make_peer("alice", punch_timeout=0.3)
    monkeypatch.setattr(connection_module.Connection, "open", classmethod(spy))
    mallory = await raw_clients(server.port)
    identity = Identity.generate()
    await mallory.send(
        Hello(
            version=PROTOCOL_VERSION,
            name="mallory",
            addresses=[("127.0.0.1", 22), ("127.0.0.1", 443), ("127.0.0.1", 1023)],
            certificate=b64encode(identity.certificate),
            traversal=True,
        )
    )
    challenge = await mallory.recv()
    assert isinstance(challenge, Challenge)
    payload = login_challenge_payload(challenge.nonce, "mallory", identity.key)
    await mallory.send(Auth(signature=identity.sign(payload)))
    await mallory.recv_until(Welcome)
    inviting = asyncio.create_task(alice.invite("mallory", timeout=10))
    invited = await mallory.recv_until(Invited)
    await mallory.send(Accept(id="a", invitation=invited.invitation))
    await mallory.recv_until(Ok)
    outgoing = alice._dialler().outgoing[invited.invitation]
    answers: list[Ok | Error] = []
    for n in range(10):
        step: Literal["connect", "sync"] = "connect" if n % 2 == 0 else "sync"
        await mallory.send(PunchRequest(id=f"p{n}", invitation=invited.invitation, step=step))
        answers.append(await mallory.recv_until((Ok, Error)))
    refused = [a for a in answers if isinstance(a, Error)]
    assert len(refused) == 10 - server.settings.max_punches
    assert all(a.code == "rate_limited" for a in refused)
    await eventually(lambda: outgoing.traversal is not None and outgoing.traversal.punches == 3)
    await eventually(lambda: not outgoing.attempts)  # every call back and punch has ended
    observed = mallory.writer.get_extra_info("sockname")[:2]
    assert set(dialled) == {tuple(observed)}  # only where the server saw mallory come from
    inviting.cancel()
    with contextlib.suppress(asyncio.CancelledError, p2pchat.P2PChatError):
        await inviting


async def test_every_address_from_a_remote_server_goes_through_the_dial_rules() -> None:
    dialler = Dialler(lambda: ("198.18.0.1", 5535), sources=list)
    for host, port in [("127.0.0.1", 5000), ("::1", 5000), ("0.0.0.0", 5000), ("10.0.0.1", 80)]:
        assert dialler.refuse_to_dial(host, port) is not None
        with pytest.raises(p2pchat.ConnectionClosed, match=r"not dialled|not a host"):
            await dialler.connect(host, port, timeout=1, from_listener=True)
    assert dialler.refuse_to_dial("10.0.0.1", 4000) is None


async def test_listeners_on_one_machine_never_share_a_port() -> None:
    from p2pchat.shared.sockets import listen

    async def nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    servers = [
        s
        for group in await asyncio.gather(
            *(listen(nothing, "127.0.0.1", 0, reuse_port=True) for _ in range(50))
        )
        for s in group
    ]
    try:
        ports = [s.sockets[0].getsockname()[1] for s in servers]
        assert len(set(ports)) == len(ports)
        with pytest.raises(OSError, match="in use"):
            await listen(nothing, "127.0.0.1", ports[0], reuse_port=True)
    finally:
        for s in servers:
            s.close()


async def test_a_wildcard_host_listens_on_both_families_on_one_port() -> None:
    async with p2pchat.SignallingServer(host="::", port=0) as server:
        families = sorted(host for host, _ in server.addresses())
        assert families == ["0.0.0.0", "::"]
        assert len({port for _, port in server.addresses()}) == 1
        where = ("::1", server.port)
        async with (
            p2pchat.Peer("alice", server=where, listen=("::", 0)) as alice,
            p2pchat.Peer("bob", server=where, listen=("::1", 0)) as bob,
        ):
            assert sorted(host for host, _ in alice.listening) == ["0.0.0.0", "::"]
            assert alice.observed is not None
            assert alice.observed[0] == "::1"
            chat_a, chat_b = await connect(alice, bob)
            assert (chat_b.route, chat_b.via) == ("direct", "dialled")
            assert chat_b.remote_address is not None
            assert chat_b.remote_address[0] == "::1"
            await chat_a.send("over IPv6")
            assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "over IPv6"


async def test_connections_to_hand_made_listeners_do_not_wait_for_nagle() -> None:
    from p2pchat.shared.sockets import listen

    delays: asyncio.Queue[int] = asyncio.Queue()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        delays.put_nowait(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    servers = await listen(accepted, "0.0.0.0", 0, reuse_port=True)
    try:
        for server in servers:
            family = server.sockets[0].family
            host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
            _, writer = await asyncio.open_connection(host, server.sockets[0].getsockname()[1])
            assert await asyncio.wait_for(delays.get(), 5) == 1  # TCP_NODELAY, as asyncio's
            writer.close()
    finally:
        for server in servers:
            server.close()


@dataclass
class Accepted:
    """What an accepted invitation knows of its inviter (the door's ``Target``)."""

    id: str
    sender: str
    addresses: list[tuple[str, int]]
    certificate: bytes
    key: str


async def test_a_presentation_stopped_in_its_handshake_ends_at_once(
    make_peer: PeerFactory,
) -> None:
    # When the call back wins while the invitee's punch is in its TLS handshake, the punch
    # is stopped and the talk waits for it to end: it is dropped at once. (It was closed,
    # which waited 2 s for a handshake that would not finish: a NATed inviter's talk then
    # opened 2.3 s after the accept instead of 0.3, in about one run in seven.)
    bob = await make_peer("bob")
    assert bob._reach is not None
    in_tls = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # starttls
        writer.write(encode(Proceed()))
        await reader.read(65536)  # the TLS client's hello: never answered
        in_tls.set()
        await reader.read()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        port = listener.sockets[0].getsockname()[1]
        inviter = Identity.generate()

        accepted = Accepted("x", "alice", [], inviter.certificate, inviter.key)
        connection = await bob._reach.dialler.connect("127.0.0.1", port, timeout=5)
        presenting = asyncio.create_task(bob._reach.door.present(connection, accepted))
        await asyncio.wait_for(in_tls.wait(), 5)
        loop = asyncio.get_running_loop()
        stopped = loop.time()
        presenting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await presenting
        assert loop.time() - stopped < 0.5
    finally:
        listener.close()
