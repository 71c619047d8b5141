"""Peers over real loopback sockets: invitations, conversations, delivery guarantees."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import stat
import typing
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import p2pchat
from p2pchat.protocol import PROTOCOL_VERSION, Ack, Error, Hello, Key, Msg, Proceed, StartTls, Whois

from .conftest import (
    GatedMessageStore,
    PeerFactory,
    RawClient,
    connect,
    eventually,
    hand_driven_invitee,
)

RawFactory = Callable[[int], Awaitable[RawClient]]


async def test_invite_accept_and_talk_both_ways(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    chat_a, chat_b = await connect(alice, bob)
    assert (chat_a.peer, chat_b.peer) == ("bob", "alice")
    sent = await chat_a.send("hi bob")
    got = await asyncio.wait_for(chat_b.receive(), 5)
    assert (got.id, got.sender, got.recipient, got.body) == (sent.id, "alice", "bob", "hi bob")
    await chat_b.send("hi alice")
    await chat_b.send("how are you?")
    assert [(await chat_a.receive()).body for _ in range(2)] == ["hi alice", "how are you?"]
    assert [m.body for m in await bob.history("alice")] == ["hi bob", "hi alice", "how are you?"]


async def test_send_many_stores_a_burst_in_order_and_a_caller_may_stop_waiting(
    make_peer: PeerFactory,
) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob", max_queue=10_000)
    chat_a, chat_b = await connect(alice, bob)
    sent = await chat_a.send_many(f"burst {n}" for n in range(1000))
    assert [m.body for m in sent] == [f"burst {n}" for n in range(1000)]
    assert [m.body for m in await alice.history("bob")] == [m.body for m in sent]
    given_up = asyncio.ensure_future(chat_a.send_many(["never waited for", "nor this"]))
    await asyncio.sleep(0)  # queued
    given_up.cancel()
    await chat_a.wait_acknowledged()  # stored and sent all the same
    got = [(await asyncio.wait_for(chat_b.receive(), 5)).body for _ in range(1002)]
    assert got == [m.body for m in sent] + ["never waited for", "nor this"]
    assert all(m.shipped for m in await alice.history("bob"))
    assert await chat_a.send_many([]) == []


async def test_closing_ends_the_conversation_on_both_sides(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    chat_a, chat_b = await connect(alice, bob)
    await chat_a.send("last words")
    await chat_a.close()
    received = [m.body async for m in chat_b]  # ends when alice has left
    assert received == ["last words"]
    assert "alice left" in chat_b.close_reason
    with pytest.raises(p2pchat.ConversationClosed):
        await chat_b.send("anyone?")
    assert alice.conversations == {}
    assert bob.conversations == {}


async def test_refuse(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    inviting = asyncio.create_task(alice.invite("bob"))
    invitation = await asyncio.wait_for(bob.next_invitation(), 5)
    await invitation.refuse("busy now")
    with pytest.raises(p2pchat.InviteRefused, match="bob refused the invitation: busy now"):
        await inviting
    with pytest.raises(p2pchat.InvitationGone):
        await invitation.accept()


async def test_invite_times_out_and_is_cancelled(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    with pytest.raises(p2pchat.InviteTimeout, match="bob did not answer"):
        await alice.invite("bob", timeout=0.2)
    invitation = await asyncio.wait_for(bob.next_invitation(), 5)
    await eventually(lambda: invitation.cancelled is not None)
    with pytest.raises(p2pchat.InvitationGone, match="cancelled"):
        await invitation.accept()


async def echo(invitation: p2pchat.Invitation, failures: list[Exception]) -> None:
    """The README's bot: one invitation's talk; whatever fails ends this talk only."""
    try:
        chat = await invitation.accept()
        async with chat:
            async for message in chat:  # ends when they leave
                await chat.send(f"you said: {message.body}")
    except p2pchat.P2PChatError as exc:  # InvitationGone: they gave up; PeerUnreachable...
        failures.append(exc)


async def test_a_bot_goes_on_after_an_invitation_whose_inviter_gave_up(
    make_peer: PeerFactory,
) -> None:
    bot = await make_peer("bot")
    alice = await make_peer("alice")
    carol = await make_peer("carol")
    with pytest.raises(p2pchat.InviteTimeout):
        await alice.invite("bot", timeout=0.2)  # alice gives up before the bot looks
    await eventually(lambda: not bot.pending_invitations())
    failures: list[Exception] = []
    talks: set[asyncio.Task[None]] = set()

    async def serve() -> None:
        while True:
            task = asyncio.create_task(echo(await bot.next_invitation(), failures))
            talks.add(task)
            task.add_done_callback(talks.discard)

    serving = asyncio.create_task(serve())
    try:
        chat = await carol.invite("bot", timeout=10)  # the next one is served all the same
        await chat.send("still there?")
        assert (await asyncio.wait_for(chat.receive(), 5)).body == "you said: still there?"
        await chat.close()
        assert [type(exc) for exc in failures] == [p2pchat.InvitationGone]
        assert "alice" in str(failures[0])
    finally:
        serving.cancel()
        for task in {serving, *talks}:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def test_every_error_is_exported_from_the_package() -> None:
    from p2pchat import errors

    classes = {name for name in errors.__all__ if name != "error_for_code"}
    assert classes <= set(p2pchat.__all__)
    for name in classes:
        assert issubclass(getattr(p2pchat, name), p2pchat.P2PChatError)
    named = {"ConnectionClosed", "ServerBusy", "ServerRefused", "RemoteProtocolError"}
    assert named | {"FrameTooLarge", "InvitationGone"} <= classes


async def test_three_conversations_at_once(make_peer: PeerFactory) -> None:
    hub = await make_peer("hub")
    others = [await make_peer(name) for name in ("ann", "ben", "cat")]
    pairs = [await connect(hub, other) for other in others]
    assert sorted(hub.conversations) == ["ann", "ben", "cat"]
    for (hub_side, _), other in zip(pairs, others, strict=True):
        await hub_side.send(f"hello {other.name}")
    for hub_side, other_side in pairs:
        await other_side.send(f"reply from {hub_side.peer}")
    for hub_side, other_side in pairs:
        assert (await asyncio.wait_for(other_side.receive(), 5)).body == f"hello {hub_side.peer}"
        assert (await asyncio.wait_for(hub_side.receive(), 5)).body == f"reply from {hub_side.peer}"
    # Meanwhile a new invitation still arrives and can be taken.
    dan = await make_peer("dan")
    await connect(dan, hub)
    assert sorted(hub.conversations) == ["ann", "ben", "cat", "dan"]


async def test_messages_to_an_offline_user_arrive_once_in_order_next_time(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, db_path: Callable[[str], Path]
) -> None:
    alice = await make_peer("alice", store=p2pchat.SqliteMessageStore(db_path("alice")))
    bob_key = p2pchat.Identity.load_or_create(db_path("bob").with_suffix(".key"))
    bob = await make_peer("bob", store=p2pchat.SqliteMessageStore(db_path("bob")), identity=bob_key)
    chat_a, chat_b = await connect(alice, bob)
    await chat_b.close()
    await bob.close()
    written = [await alice.send("bob", f"offline {n}") for n in range(20)]
    assert not any(m.shipped for m in await alice.history("bob"))
    # bob comes back (same store, same key file); they talk again; the backlog goes first.
    bob = await make_peer(
        "bob",
        store=p2pchat.SqliteMessageStore(db_path("bob")),
        identity=p2pchat.Identity.load(db_path("bob").with_suffix(".key")),
    )
    chat_a, chat_b = await connect(alice, bob)
    await chat_a.send("live")
    # Each comes once: by mail (collected at login) or resent in the talk, whichever first.
    received = await asyncio.wait_for(_take(bob, chat_b, 21), 10)
    assert sorted(m.body for _, m in received) == sorted([m.body for m in written] + ["live"])
    order = {m.id: n for n, m in enumerate(written)}
    for way in ("mail", "talk"):  # each way, in the order written
        ids = [order[m.id] for came, m in received if m.id in order and came == way]
        assert ids == sorted(ids)
    await eventually(lambda: _all_shipped(alice, "bob"))
    # A third meeting resends nothing and shows nothing twice.
    await chat_a.close()
    chat_a, chat_b = await connect(alice, bob)
    await chat_a.send("third time")
    assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "third time"
    bodies = [m.body for m in await bob.history("alice")]
    assert len(bodies) == len(set(bodies)) == 22


async def _take(
    peer: p2pchat.Peer, chat: p2pchat.Conversation, count: int
) -> list[tuple[str, p2pchat.Message]]:
    """``count`` messages, from the mail or the conversation, as they come (both are
    safe to cancel: nothing is lost by racing them)."""
    got: list[tuple[str, p2pchat.Message]] = []
    while len(got) < count:
        mail = asyncio.ensure_future(peer.next_message())
        talk = asyncio.ensure_future(chat.receive())
        _, pending = await asyncio.wait({mail, talk}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task, channel in ((mail, "mail"), (talk, "talk")):  # both may have finished
            if task.done() and not task.cancelled():
                got.append((channel, task.result()))
    return got


async def _all_shipped(peer: p2pchat.Peer, contact: str) -> bool:
    return all(m.shipped for m in await peer.history(contact) if m.sender == peer.name)


async def test_shipped_is_set_only_after_the_ack(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    alice = await make_peer("alice")
    # "bob" is driven by hand, so the test decides when the ack goes back.
    chat, direct = await hand_driven_invitee(alice, "bob", server.port, raw_clients)
    sent = await chat.send("please ack")
    msg = await direct.recv_until(Msg)
    assert msg.id == sent.id
    assert [m.shipped for m in await alice.history("bob")] == [False]
    shipped: asyncio.Queue[tuple[str, list[str]]] = asyncio.Queue()
    alice.on_shipped = lambda contact, ids: shipped.put_nowait((contact, ids))
    acknowledged = asyncio.create_task(chat.wait_acknowledged())
    await asyncio.sleep(0)
    assert not acknowledged.done()
    assert shipped.empty()
    await direct.send(Ack(ids=[msg.id]))
    await asyncio.wait_for(acknowledged, 5)
    assert [m.shipped for m in await alice.history("bob")] == [True]
    assert shipped.get_nowait() == ("bob", [msg.id])  # told once the store says shipped
    # Unacknowledged when the conversation ends: wait_acknowledged says so.
    await chat.send("never acked")
    await direct.close()
    with pytest.raises(p2pchat.ConversationClosed, match="1 messages unacknowledged"):
        await asyncio.wait_for(chat.wait_acknowledged(), 5)


async def test_an_ack_is_recorded_and_told_also_when_the_talk_ends_while_it_is_stored(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    store = GatedMessageStore("mark_shipped")  # alice's disk is slow to mark it shipped
    alice = await make_peer("alice", store=store)
    shipped: list[tuple[str, list[str]]] = []
    alice.on_shipped = lambda contact, ids: shipped.append((contact, ids))
    chat, direct = await hand_driven_invitee(alice, "bob", server.port, raw_clients)
    sent = await chat.send("acked as the talk ends")
    await direct.send(Ack(ids=[(await direct.recv_until(Msg)).id]))
    await asyncio.wait_for(store.entered.wait(), 5)  # the ack is being stored...
    closing = asyncio.create_task(chat.close())  # ...when alice leaves
    try:
        await asyncio.wait_for(chat.wait_closed(), 5)
    finally:
        store.gate.set()
    await asyncio.wait_for(closing, 5)
    # The ack came: the message is shipped and the application told (a page shows it
    # delivered), not one without the other.
    assert shipped == [("bob", [sent.id])]
    assert [m.shipped for m in await alice.history("bob")] == [True]


async def test_a_restarted_peer_keeps_its_history(
    make_peer: PeerFactory, db_path: Callable[[str], Path]
) -> None:
    alice = await make_peer("alice", store=p2pchat.SqliteMessageStore(db_path("alice")))
    bob = await make_peer("bob")
    chat_a, chat_b = await connect(alice, bob)
    await chat_a.send("one")
    await chat_b.send("two")
    assert (await asyncio.wait_for(chat_a.receive(), 5)).body == "two"
    await eventually(lambda: _all_shipped(alice, "bob"))
    await alice.close()
    again = p2pchat.Peer(
        "alice",
        server=alice.server_address,
        store=p2pchat.SqliteMessageStore(db_path("alice")),
        identity=alice.identity,
    )
    async with again:
        history = await again.history("bob")
    assert [(m.sender, m.body, m.shipped) for m in history] == [
        ("alice", "one", True),
        ("bob", "two", True),
    ]


async def test_peer_send_goes_live_when_a_conversation_is_open(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    _, chat_b = await connect(alice, bob)
    await alice.send("bob", "through the peer")
    assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "through the peer"


async def test_a_burst_of_messages_arrives_complete_and_in_order(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    chat_a, chat_b = await connect(alice, bob)
    await asyncio.gather(*(chat_a.send(f"n{n}") for n in range(500)))
    received = [(await asyncio.wait_for(chat_b.receive(), 5)).body for _ in range(500)]
    assert received == [f"n{n}" for n in range(500)]


async def test_a_too_large_message_is_refused_before_it_is_stored(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice", max_message_size=100)
    with pytest.raises(p2pchat.MessageTooLarge, match="101 bytes is over the limit of 100"):
        await alice.send("bob", "x" * 101)
    assert await alice.history("bob") == []


async def test_a_dial_in_with_a_stolen_invitation_and_another_key_is_refused(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    inviting = asyncio.create_task(alice.invite("bob"))
    invitation = await asyncio.wait_for(bob.next_invitation(), 5)
    # mallory learns the invitation id and dials alice first, as "bob", with her own key.
    mallory = p2pchat.Identity.generate()
    direct = await raw_clients(alice.listening[0][1])
    await direct.send(StartTls(invitation=invitation.id))
    assert isinstance(await direct.recv(), Proceed)
    anything = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anything.check_hostname, anything.verify_mode = False, ssl.CERT_NONE
    mallory.load_into(anything)
    with contextlib.suppress(p2pchat.ConnectionClosed):
        await direct.connection.start_tls(anything, server_side=False)
        await direct.send(Hello(version=PROTOCOL_VERSION, name="bob", invitation=invitation.id))
        await direct.send(Msg(id="evil", ts=0.0, body="hi alice, it's really me"))
    assert await direct.closed_by_other_side()  # alice's TLS refused mallory's certificate
    # ...and someone with a made-up invitation is refused before any TLS.
    stranger = await raw_clients(alice.listening[0][1])
    await stranger.send(StartTls(invitation="made-up"))
    assert (await stranger.recv_until(Error)).code == "invitation_gone"
    # The real invitee still gets through, and nothing of mallory's was read.
    chat_b = await invitation.accept()
    chat_a = await inviting
    await chat_a.send("only for bob")
    assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "only for bob"
    assert [m.body for m in await alice.history("bob")] == ["only for bob"]


async def test_an_inviter_unreachable_even_by_relay_is_reported_to_both_sides() -> None:
    async with p2pchat.SignallingServer(port=0, max_relays=0) as server:
        where = ("127.0.0.1", server.port)
        # nobody at alice's address, and she takes no part in reversal or hole punching
        alice = p2pchat.Peer("alice", server=where, advertise=[("127.0.0.1", 1)], traversal=False)
        async with alice, p2pchat.Peer("bob", server=where) as bob:
            inviting = asyncio.create_task(alice.invite("bob"))
            invitation = await asyncio.wait_for(bob.next_invitation(), 5)
            with pytest.raises(p2pchat.PeerUnreachable, match=r"cannot reach alice.*relay"):
                await invitation.accept()
            with pytest.raises(p2pchat.InviteRefused, match="cannot reach you"):
                await inviting


async def test_garbage_on_a_direct_connection_ends_only_that_conversation(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    carol = await make_peer("carol")
    chat_ab, chat_ba = await connect(alice, bob)
    chat_cd, direct = await hand_driven_invitee(carol, "dave", server.port, raw_clients)
    await direct.send_raw(b"\x00\x00\x00\x04nope")
    assert (await direct.recv_until(Error)).code == "protocol_error"
    await chat_cd.wait_closed()
    assert "protocol error" in chat_cd.close_reason
    await chat_ab.send("unaffected")
    assert (await asyncio.wait_for(chat_ba.receive(), 5)).body == "unaffected"


async def test_two_servers_and_five_peers_in_one_process() -> None:
    async with (
        p2pchat.SignallingServer(port=0) as one,
        p2pchat.SignallingServer(port=0) as two,
    ):
        peers = [
            p2pchat.Peer(f"p{n}", server=("127.0.0.1", (one, two)[n % 2].port)) for n in range(5)
        ]
        for peer in peers:
            await peer.start()
        try:
            assert one.online_users == ["p0", "p2", "p4"]
            assert two.online_users == ["p1", "p3"]
        finally:
            for peer in peers:
                await peer.close()


async def test_no_send_hangs_when_the_conversation_dies_under_load(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    alice = await make_peer("alice", max_queue=8)
    chat, direct = await hand_driven_invitee(alice, "bob", server.port, raw_clients)
    typing.cast(asyncio.Transport, direct.writer.transport).pause_reading()  # bob stops reading
    sends = [asyncio.ensure_future(chat.send("x" * 16_000)) for _ in range(2000)]
    await eventually(lambda: sum(s.done() for s in sends) > 16)  # the pipe is now full
    direct.writer.transport.abort()  # bob vanishes
    results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 10)
    assert chat.closed
    assert all(isinstance(r, p2pchat.Message | p2pchat.ConversationClosed) for r in results)
    stored = await alice.history("bob")
    assert not any(m.shipped for m in stored)  # nothing was acked, everything is kept


async def test_a_peer_restarted_on_its_store_keeps_its_name_history_and_backlog(
    server: p2pchat.SignallingServer, db_path: Callable[[str], Path]
) -> None:
    where = ("127.0.0.1", server.port)
    path = db_path("alice")
    bob_key = p2pchat.Identity.generate()
    # No identity given: alice's is made beside her store, and kept there.
    alice = p2pchat.Peer("alice", server=where, store=p2pchat.SqliteMessageStore(path))
    async with alice, p2pchat.Peer("bob", server=where, identity=bob_key) as bob:
        chat_a, chat_b = await connect(alice, bob)
        await chat_a.send("before the restart")
        assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "before the restart"
        await chat_a.wait_acknowledged()
        first = alice.fingerprint
    key_file = path.with_suffix(".key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = p2pchat.Peer("alice", server=where, store=p2pchat.SqliteMessageStore(path))
    async with again:  # the server would refuse a new key for "alice"
        assert again.fingerprint == first
        await again.send("bob", "while bob is away")  # unshipped, and in bob's mailbox
    # Restarted once more: unshipped until bob has it (his signed receipt says so).
    third = p2pchat.Peer("alice", server=where, store=p2pchat.SqliteMessageStore(path))
    async with third:
        assert [(m.body, m.shipped) for m in await third.history("bob")] == [
            ("before the restart", True),
            ("while bob is away", False),
        ]
        async with p2pchat.Peer("bob", server=where, identity=bob_key) as bob:
            assert (await asyncio.wait_for(bob.next_message(), 5)).body == "while bob is away"
            await eventually(lambda: _all_shipped(third, "bob"))


async def test_a_memory_peer_gets_an_ephemeral_identity(server: p2pchat.SignallingServer) -> None:
    first = p2pchat.Peer("eph", server=("127.0.0.1", server.port))
    second = p2pchat.Peer("eph2", server=("127.0.0.1", server.port))
    assert first.fingerprint != second.fingerprint  # known at once: nothing to load


async def test_a_request_cancelled_as_its_answer_arrives_leaves_the_link_up(
    make_peer: PeerFactory,
) -> None:
    alice = await make_peer("alice")
    link = alice._link()
    asking: asyncio.Task[object] | None = None

    def cancel_the_asker(_: object) -> None:  # runs as the answer is read
        assert asking is not None
        asking.cancel()

    asking = asyncio.create_task(
        link.request(Whois(id=link.next_id(), user="alice"), Key, on_answer=cancel_the_asker)
    )
    with pytest.raises(asyncio.CancelledError):
        await asking
    assert await alice.online() == ["alice"]  # the link's reader did not die of it
    assert alice.state == "connected"


async def test_an_id_squatted_by_another_sender_hides_nothing_and_acks_nothing(
    make_peer: PeerFactory,
) -> None:
    """Issue 18, finding 6: zed plants carol's next id first; carol's message still
    arrives, and bob acknowledges it because it is carol's that he stored."""
    bob, zed = await make_peer("bob"), await make_peer("zed")
    carol = await make_peer("carol")
    real = p2pchat.Message.new("carol", "bob", "the real one")
    chat_z, chat_bz = await connect(zed, bob)
    await chat_z._connection.send(Msg(id=real.id, ts=real.sent_at, body="squatted"))
    assert (await asyncio.wait_for(chat_bz.receive(), 5)).body == "squatted"
    await carol.store.add(real)  # unshipped: it goes first in the next talk
    shipped = asyncio.Event()
    carol.on_shipped = lambda contact, ids: shipped.set() if real.id in ids else None
    _, chat_bc = await connect(carol, bob)
    got = await asyncio.wait_for(chat_bc.receive(), 5)
    assert (got.id, got.sender, got.body) == (real.id, "carol", "the real one")
    await asyncio.wait_for(shipped.wait(), 5)
    assert [m.body for m in await bob.history("carol")] == ["the real one"]
    assert [m.body for m in await bob.history("zed")] == ["squatted"]
