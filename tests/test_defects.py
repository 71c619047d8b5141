"""Regressions for the nine defects a review of the server and the peer found.

Each test here failed before its fix. Where the defect needed a slow disk to show, the
test uses ``GatedMessageStore`` / ``GatedUserStore``: a real store whose chosen method
waits at a gate the test opens, as a loaded disk would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

import p2pchat
from p2pchat.protocol import (
    PROTOCOL_VERSION,
    Accept,
    Ack,
    Bye,
    Cancelled,
    Error,
    Hello,
    Invite,
    Invited,
    ListUsers,
    Msg,
    Ok,
    Ping,
    Pong,
    Proceed,
    Relaying,
    RelayOffer,
    RelayRequest,
    RelayTicket,
    Ringing,
    StartTls,
    Users,
    Welcome,
    encode,
)
from p2pchat.protocol import (
    Relay as RelayHello,
)
from p2pchat.serving.session import Session
from p2pchat.shared.connection import Connection
from p2pchat.shared.identity import Identity, b64decode, direct_tls_context

from .conftest import (
    GatedMessageStore,
    GatedUserStore,
    PeerFactory,
    RawClient,
    connect,
    eventually,
    hand_driven_invitee,
    let_the_loop_run,
)

RawFactory = Callable[[int], Awaitable[RawClient]]


def reset(client: RawClient) -> None:
    """Close with a TCP reset (RST), as a crashed host or a middlebox would."""
    sock = client.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.writer.transport.abort()


# 1. Relay slots leaked when the first side had gone.


async def test_a_relay_whose_first_side_reset_is_ended_and_frees_its_slot(
    raw_clients: RawFactory,
) -> None:
    async with p2pchat.SignallingServer(port=0, max_relays_per_user=2) as server:
        alice = await raw_clients(server.port)
        await alice.login("alice", 1)
        bob = await raw_clients(server.port)
        await bob.login("bob", 1)

        async def relay_with_first_side_reset(n: int) -> None:
            await alice.send(Invite(id=f"i{n}", user="bob"))
            invited = await bob.recv_until(Invited)
            await bob.send(Accept(id=f"a{n}", invitation=invited.invitation))
            await bob.recv_until(Ok)
            await bob.send(RelayRequest(id=f"r{n}", invitation=invited.invitation))
            ticket = await bob.recv_until(RelayTicket)
            offer = await alice.recv_until(RelayOffer)
            first = await raw_clients(server.port)
            await first.send(RelayHello(ticket=offer.ticket))
            await eventually(lambda: server.relays.waiting == 1)
            reset(first)  # alice's side is gone before bob's arrives
            second = await raw_clients(server.port)
            await second.send(RelayHello(ticket=ticket.ticket))
            assert await second.closed_by_other_side()

        for n in range(3):  # more than max_relays_per_user: each must have been ended
            await relay_with_first_side_reset(n)
            await eventually(lambda: server.relays.active == 0)
        await eventually(lambda: server.connection_count == 2)  # the two logins only


# 2. Bytes sent in clear after starttls were read as if they came through TLS.


async def test_clear_bytes_after_starttls_fail_the_dial_in(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    store = GatedMessageStore("known_key")  # the inviter's key check waits on its disk
    alice = await make_peer("alice", store=store)
    identity = Identity.generate()
    login = await raw_clients(server.port)
    await login.login("bob", 1, identity)
    inviting = asyncio.create_task(alice.invite("bob", timeout=30))
    invited = await login.recv_until(Invited)
    direct = await raw_clients(invited.addresses[0][1])
    await direct.send(StartTls(invitation=invited.invitation))
    await store.entered.wait()
    await let_the_loop_run()  # alice has read the starttls and waits for her disk
    # Someone on the path adds a hello and a message, in clear, after the starttls.
    forged = Hello(version=PROTOCOL_VERSION, name="bob", invitation=invited.invitation)
    await direct.send_raw(encode(forged) + encode(Msg(id="x", ts=0.0, body="INJECTED")))
    await let_the_loop_run()  # the bytes reach alice's socket before her disk answers
    store.gate.set()
    assert isinstance(await direct.recv(), Proceed)
    trusted = b64decode(invited.certificate)
    context = direct_tls_context(identity, trusted, server_side=False)
    # The right key on both sides: only the clear bytes, reaching alice's TLS layer, fail it.
    with pytest.raises(p2pchat.ConnectionClosed):
        await direct.connection.start_tls(context, server_side=False)
    assert "bob" not in alice.conversations
    assert not inviting.done()
    assert await alice.history("bob") == []
    inviting.cancel()


async def test_clear_bytes_after_proceed_fail_the_dial_out(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    # The invitee's side: a "proceed" followed by anything in clear is refused, even when
    # the TLS handshake after it would succeed (the clear bytes would be read as if they
    # had come through it: a welcome from "alice", then a message from her).
    bob = await make_peer("bob", hello_timeout=1)  # (the relay it then tries: not for long)
    alice_identity = Identity.generate()
    bob_certificate: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def inviter_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = RawClient(reader, writer)
        assert isinstance(await client.recv(), StartTls)
        welcome = Welcome(version=PROTOCOL_VERSION, name="alice")
        injected = Msg(id="x", ts=0.0, body="INJECTED")
        await client.send_raw(encode(Proceed()) + encode(welcome) + encode(injected))
        context = direct_tls_context(alice_identity, await bob_certificate, server_side=True)
        with contextlib.suppress(Exception):
            await client.connection.start_tls(context, server_side=True)
            await client.closed_by_other_side()
        answered.set_result(None)

    listener = await asyncio.start_server(inviter_side, "127.0.0.1", 0)
    try:
        alice = await raw_clients(server.port)
        await alice.login("alice", listener.sockets[0].getsockname()[1], alice_identity)
        await alice.send(Invite(id="1", user="bob"))
        bob_certificate.set_result(b64decode((await alice.recv_until(Ringing)).certificate))
        invitation = await asyncio.wait_for(bob.next_invitation(), 5)
        with pytest.raises(p2pchat.PeerUnreachable):
            await invitation.accept()
        await asyncio.wait_for(answered, 5)
        assert "alice" not in bob.conversations
        assert await bob.history("alice") == []
    finally:
        listener.close()


async def test_clear_bytes_after_starttls_fail_a_relayed_dial_in(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    # The same injection, through the server's relay: alice cannot be dialled, the
    # invitee "bob" (hand-driven) meets her through the relay and sends clear bytes after
    # his starttls while alice waits for her disk.
    store = GatedMessageStore("known_key")
    alice = await make_peer("alice", store=store, advertise=[("127.0.0.1", 9)])
    bob = await raw_clients(server.port)
    identity = Identity.generate()
    await bob.login("bob", 1, identity)
    inviting = asyncio.create_task(alice.invite("bob", timeout=30))
    invited = await bob.recv_until(Invited)
    await bob.send(Accept(id="a", invitation=invited.invitation))
    await bob.recv_until(Ok)
    await bob.send(RelayRequest(id="r", invitation=invited.invitation))
    ticket = await bob.recv_until(RelayTicket)
    relayed = await raw_clients(server.port)
    await relayed.send(RelayHello(ticket=ticket.ticket))
    await relayed.recv_until(Relaying)
    await relayed.send(StartTls(invitation=invited.invitation))
    await store.entered.wait()
    await let_the_loop_run()  # alice has read the starttls and waits for her disk
    forged = Hello(version=PROTOCOL_VERSION, name="bob", invitation=invited.invitation)
    await relayed.send_raw(encode(forged) + encode(Msg(id="x", ts=0.0, body="INJECTED")))
    await let_the_loop_run()
    store.gate.set()
    assert isinstance(await relayed.recv(), Proceed)
    trusted = b64decode(invited.certificate)
    context = direct_tls_context(identity, trusted, server_side=False)
    with pytest.raises(p2pchat.ConnectionClosed):
        await relayed.connection.start_tls(context, server_side=False)
    assert "bob" not in alice.conversations
    assert await alice.history("bob") == []
    inviting.cancel()


# 3. One account could lock a user out of invitations both ways.


async def test_one_account_cannot_lock_a_user_out_of_invitations(
    raw_clients: RawFactory,
) -> None:
    async with p2pchat.SignallingServer(port=0, max_invitations=16) as server:
        clients = {}
        for name in ("victim", "carol", "dave"):
            clients[name] = await raw_clients(server.port)
            await clients[name].login(name, 1)
        carol, victim, dave = clients["carol"], clients["victim"], clients["dave"]
        for n in range(16):
            await carol.send(Invite(id=f"c{n}", user="victim"))
        answers = [await carol.recv_until((Ringing, Error)) for _ in range(16)]
        refused = [a for a in answers if isinstance(a, Error)]
        assert refused, "one sender may hold only a few invitations to one user"
        assert "pending to victim" in refused[0].reason
        await victim.send(Invite(id="v", user="carol"))  # the victim can still invite
        assert isinstance(await victim.recv_until((Ringing, Error)), Ringing)
        await dave.send(Invite(id="d", user="victim"))  # and others can still invite her
        assert isinstance(await dave.recv_until((Ringing, Error)), Ringing)


async def test_invitations_received_do_not_stop_a_user_from_inviting(
    raw_clients: RawFactory,
) -> None:
    # Each direction has its own bound: a victim whose received invitations are all taken
    # (8 accounts, 2 each) can still invite others.
    async with p2pchat.SignallingServer(
        port=0, max_invitations=16, max_invitations_per_pair=2
    ) as server:
        victim = await raw_clients(server.port)
        await victim.login("victim", 1)
        for n in range(8):
            sender = await raw_clients(server.port)
            await sender.login(f"sender{n}", 1)
            for k in range(2):
                await sender.send(Invite(id=f"{n}-{k}", user="victim"))
                assert isinstance(await sender.recv_until((Ringing, Error)), Ringing)
        late = await raw_clients(server.port)
        await late.login("late", 1)
        await late.send(Invite(id="l", user="victim"))
        refused = await late.recv_until((Ringing, Error))
        assert isinstance(refused, Error)
        assert refused.code == "too_many_invitations"
        await victim.send(Invite(id="v", user="late"))  # her own invitations: her own bound
        assert isinstance(await victim.recv_until((Ringing, Error)), Ringing)


# 4. Accepted invitations stayed pending until their time to live.


async def test_accepted_invitations_no_longer_count_against_the_bound() -> None:
    async with p2pchat.SignallingServer(port=0, max_invitations=2) as server:
        where = ("127.0.0.1", server.port)
        async with (
            p2pchat.Peer("alice", server=where) as alice,
            p2pchat.Peer("bob", server=where) as bob,
        ):
            for n in range(3):  # the third invitation used to be refused
                chat_a, chat_b = await connect(alice, bob)
                await chat_a.send(f"talk {n}")
                assert (await asyncio.wait_for(chat_b.receive(), 5)).body == f"talk {n}"
                await chat_a.close()
                await chat_b.wait_closed()


async def test_an_accepted_invitation_ends_quietly(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(port=0, invitation_ttl=0.3, dial_window=0.3) as server:
        carol = await raw_clients(server.port)
        await carol.login("carol", 1)
        dave = await raw_clients(server.port)
        await dave.login("dave", 1)
        await carol.send(Invite(id="1", user="dave"))
        invited = await dave.recv_until(Invited)
        await dave.send(Accept(id="2", invitation=invited.invitation))
        await dave.recv_until(Ok)
        await eventually(lambda: not server.invitations)
        await dave.send(Ping(id="3"))  # no "cancelled" for it was queued before the pong
        while not isinstance(answer := await dave.recv(), Pong):
            assert not isinstance(answer, Cancelled), answer


# 5. The online list kept a user who had just logged out.


async def test_the_online_list_is_right_after_a_logout_on_a_slow_store() -> None:
    store = GatedUserStore("set_offline")
    async with p2pchat.SignallingServer(port=0, store=store) as server:
        where = ("127.0.0.1", server.port)
        async with p2pchat.Peer("alice", server=where) as alice:
            bob = p2pchat.Peer("bob", server=where)
            await bob.start()
            closing = asyncio.create_task(bob.close())
            await store.entered.wait()  # the server is writing bob's logout
            assert await alice.online() == ["alice"]
            store.gate.set()
            await closing
            await eventually(lambda: store.calls["set_offline"] == 1)
            assert await alice.online() == ["alice"]


# 6. Names: a trailing newline, look-alike letters, names that differ only in case.


@pytest.mark.parametrize("name", ["alice\n", "alic\u0435", "al ice", "-alice", "", "a" * 33])
def test_names_outside_the_rule_are_refused(name: str) -> None:
    with pytest.raises(p2pchat.InvalidName):
        p2pchat.Peer(name)
    hello = msgspec.json.encode({"type": "hello", "version": PROTOCOL_VERSION, "name": name})
    with pytest.raises(p2pchat.ProtocolError):
        p2pchat.protocol.decode_body(hello)


async def test_names_are_unique_whatever_their_case(
    server: p2pchat.SignallingServer, make_peer: PeerFactory
) -> None:
    await make_peer("alice")
    with pytest.raises(p2pchat.AuthenticationError, match="registered as alice"):
        await make_peer("Alice")
    await make_peer("Bob")
    with pytest.raises(p2pchat.AuthenticationError, match="registered as Bob"):
        await make_peer("bob")


async def test_names_are_unique_whatever_their_case_on_sqlite(tmp_path: Path) -> None:
    store = p2pchat.SqliteUserStore(tmp_path / "users.sqlite3")
    async with p2pchat.SignallingServer(port=0, store=store) as server:
        where = ("127.0.0.1", server.port)
        async with p2pchat.Peer("alice", server=where):
            with pytest.raises(p2pchat.AuthenticationError, match="registered as alice"):
                await p2pchat.Peer("ALICE", server=where).start()


# 7. A receive() cancelled at the wrong moment lost the message it had taken.


async def test_a_cancelled_receive_loses_nothing(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    chat_a, chat_b = await connect(alice, bob)
    got: list[str] = []
    for offset in range(40):  # cancel at every step of the way, one after another
        receiving = asyncio.create_task(chat_b.receive())
        await asyncio.sleep(0)  # it waits for a message now
        await chat_a.send(f"m{offset}")
        await let_the_loop_run(offset)
        receiving.cancel()
        try:
            got.append((await receiving).body)
        except asyncio.CancelledError:
            got.append((await asyncio.wait_for(chat_b.receive(), 5)).body)
    assert got == [f"m{n}" for n in range(40)]


# 8. Messages stored but never handed to the application.


async def test_messages_stored_when_the_conversation_ends_are_still_received(
    make_peer: PeerFactory,
) -> None:
    alice = await make_peer("alice")
    # bob's application does not read: his queue fills, and his keepalive, hearing nothing
    # read, ends the conversation while a burst is stored and not yet handed over.
    bob = await make_peer("bob", max_queue=2, ping_interval=0.2, ping_timeout=0.2)
    chat_a, chat_b = await connect(alice, bob)
    for n in range(5):
        await chat_a.send(f"m{n}")
    await asyncio.wait_for(chat_b.wait_closed(), 5)
    first = [m.body async for m in chat_b]
    assert first == [m.body for m in await bob.history("alice")]  # all that was stored
    # The rest comes by mail (alice's talk ended with them unacknowledged): each once.
    rest = [(await asyncio.wait_for(bob.next_message(), 5)).body for _ in range(5 - len(first))]
    assert first + rest == [f"m{n}" for n in range(5)]


async def test_a_burst_stored_as_the_conversation_ends_is_all_received(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    # Five messages and a bye in one write: stored as one batch, more than the queue
    # holds, and the conversation over before the application reads any of them.
    alice = await make_peer("alice", max_queue=2)
    chat, direct = await hand_driven_invitee(alice, "mallory", server.port, raw_clients)
    burst = b"".join(encode(Msg(id=f"b{n}", ts=float(n), body=f"m{n}")) for n in range(5))
    await direct.send_raw(burst + encode(Bye(reason="done")))
    await asyncio.wait_for(chat.wait_closed(), 5)
    assert [m.body async for m in chat] == [f"m{n}" for n in range(5)]
    assert [m.body for m in await alice.history("mallory")] == [f"m{n}" for n in range(5)]


# 9. invite() raised InviteTimeout and the conversation opened anyway.


async def test_an_invite_that_times_out_after_the_dial_in_is_proven_returns_the_chat(
    server: p2pchat.SignallingServer, make_peer: PeerFactory
) -> None:
    store = GatedMessageStore("remember_key")  # opening the talk waits on alice's disk
    alice = await make_peer("alice", store=store)
    bob = await make_peer("bob")
    timeout = 0.5
    inviting = asyncio.create_task(alice.invite("bob", timeout=timeout))
    invitation = await asyncio.wait_for(bob.next_invitation(), 5)
    accepting = asyncio.create_task(invitation.accept())
    await store.entered.wait()  # the dial-in is proven; the talk is being opened
    # invite()'s clock started before this: it has run out once ``timeout`` more has passed.
    asyncio.get_running_loop().call_later(timeout, store.gate.set)
    chat_a = await asyncio.wait_for(inviting, 5)
    chat_b = await accepting
    await chat_b.send("made it")
    assert (await asyncio.wait_for(chat_a.receive(), 5)).body == "made it"


# Also examined: a list request cannot keep a stale online list either.


async def test_list_requests_during_logouts_never_show_a_departed_user(
    raw_clients: RawFactory,
) -> None:
    async with p2pchat.SignallingServer(port=0) as server:
        watcher = await raw_clients(server.port)
        await watcher.login("watcher", 1)
        for n in range(5):
            leaving = await raw_clients(server.port)
            await leaving.login(f"u{n}", 1)
            await leaving.close()
            await eventually(lambda: f"u{n}" not in server.online_users)  # noqa: B023
            await watcher.send(ListUsers(id=str(n)))
            assert (await watcher.recv_until(Users)).users == ["watcher"]


# Also examined.


async def test_crossed_invitations_make_one_conversation(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    for _ in range(3):  # whichever way the pushes cross
        chat_a, chat_b = await asyncio.wait_for(
            asyncio.gather(alice.invite("bob"), bob.invite("alice")), 10
        )
        await chat_a.send("hi")
        assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "hi"
        await chat_b.send("hi too")
        assert (await asyncio.wait_for(chat_a.receive(), 5)).body == "hi too"
        assert alice.conversations == {"bob": chat_a}
        assert bob.conversations == {"alice": chat_b}
        await eventually(lambda: alice.pending_invitations() == bob.pending_invitations() == [])
        await chat_a.close()
        await chat_b.wait_closed()


async def test_inviting_someone_who_invited_us_accepts_their_invitation(
    make_peer: PeerFactory,
) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    inviting = asyncio.create_task(alice.invite("bob"))
    await asyncio.wait_for(bob.next_invitation(), 5)
    chat_b = await bob.invite("alice")  # bob asks back instead of answering
    chat_a = await asyncio.wait_for(inviting, 5)
    await chat_b.send("same talk")
    assert (await asyncio.wait_for(chat_a.receive(), 5)).body == "same talk"


async def test_a_refusal_after_the_dial_in_is_proven_does_not_undo_the_talk(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    store = GatedMessageStore("remember_key")
    alice = await make_peer("alice", store=store)
    identity = Identity.generate()
    login = await raw_clients(server.port)
    await login.login("bob", 1, identity)
    inviting = asyncio.create_task(alice.invite("bob", timeout=30))
    invited = await login.recv_until(Invited)
    await login.send(Accept(id="a", invitation=invited.invitation))
    direct = await raw_clients(invited.addresses[0][1])
    await direct.start_direct(identity, invited, "bob")
    await store.entered.wait()  # proven; alice is opening the talk
    await login.close()  # bob leaves the server: alice is told "went offline"
    await eventually(lambda: "bob" not in server.online_users)
    await let_the_loop_run()
    store.gate.set()
    chat = await asyncio.wait_for(inviting, 5)  # the talk stands
    assert chat.peer == "bob"
    assert not chat.closed


async def test_a_cancelled_accept_leaves_no_dial_behind(make_peer: PeerFactory) -> None:
    # alice's address answers but never speaks: the dial hangs until it is stopped. (Its
    # writers are held: from 3.13 on, a writer let go of closes its connection.)
    held: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
    hole = silent.sockets[0].getsockname()[:2]
    try:
        alice = await make_peer("alice", advertise=[hole])
        bob = await make_peer("bob", hello_timeout=30, relay_after=30)
        inviting = asyncio.create_task(alice.invite("bob", timeout=30))
        invitation = await asyncio.wait_for(bob.next_invitation(), 5)
        before = set(asyncio.all_tasks())
        accepting = asyncio.create_task(invitation.accept())
        await eventually(lambda: len(asyncio.all_tasks() - before) > 1)  # dialling now
        accepting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await accepting
        await eventually(lambda: all(t.done() for t in asyncio.all_tasks() - before))
        # alice is told bob gave up, at once, rather than waiting for her timeout.
        with pytest.raises(p2pchat.InviteRefused, match="gave up"):
            await asyncio.wait_for(inviting, 5)
    finally:
        silent.close()


async def test_acks_count_only_for_messages_to_whoever_sends_them(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    alice = await make_peer("alice")
    await (await make_peer("carol")).close()  # carol is known, and away
    to_carol = await alice.send("carol", "for carol only")  # kept for later
    chat, direct = await hand_driven_invitee(alice, "mallory", server.port, raw_clients)
    await chat.send("for mallory")
    msg = await direct.recv_until(Msg)
    await direct.send(Ack(ids=[to_carol.id, msg.id]))
    await chat.wait_acknowledged()
    shipped = {m.id: m.shipped for m in await alice.history("carol")}
    assert shipped == {to_carol.id: False}
    assert [m.shipped for m in await alice.history("mallory")] == [True]


async def test_a_reader_waiting_for_room_is_released_when_the_connection_breaks() -> None:
    # The session alone: its peer reads nothing, so answers pile up until its reader
    # waits for room; then the connection breaks. Nothing will ever make room: the reader
    # must not wait on.
    accepted: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
    listener = await asyncio.start_server(
        lambda r, w: accepted.set_result(Connection(r, w)), "127.0.0.1", 0
    )
    _, client = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
    client.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    transport = client.transport
    assert isinstance(transport, asyncio.ReadTransport)
    transport.pause_reading()  # it reads nothing more
    connection = await accepted
    session = Session(
        connection, name="stuck", key="k", certificate="", addresses=[], outbox_size=1
    )
    answer = Users(id="1", users=[f"{n:04d}" + "x" * 28 for n in range(1000)])

    async def answer_forever() -> None:
        while True:
            await session.reply(answer)

    reader = asyncio.create_task(answer_forever())
    session.serving = reader
    await eventually(lambda: connection.pending > session.outbox_bytes)  # parked
    assert not reader.done()
    client.transport.abort()  # the peer's connection breaks
    with pytest.raises(p2pchat.ConnectionClosed):
        await asyncio.wait_for(reader, 5)
    listener.close()


async def test_a_session_whose_writer_died_is_dropped_and_its_name_freed(
    raw_clients: RawFactory,
) -> None:
    async with p2pchat.SignallingServer(port=0, outbox_size=4, rate_limit=None) as server:
        for n in range(40):  # long names: each list answer is large
            filler = await raw_clients(server.port)
            await filler.login(f"{n:02d}" + "x" * 30, 1)
        stuck = await raw_clients(server.port)
        stuck.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await stuck.login("stuck", 1)
        transport = stuck.writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()  # it reads nothing more
        requests = b"".join(encode(ListUsers(id=str(n))) for n in range(2000))
        stuck.writer.write(requests)  # answers pile up: socket, transport, outbox
        await let_the_loop_run(200)
        reset(stuck)  # the writer fails; the reader waits for room in the outbox
        await eventually(lambda: "stuck" not in server.online_users)
        again = await raw_clients(server.port)
        await again.login("stuck", 1, stuck.identity)
