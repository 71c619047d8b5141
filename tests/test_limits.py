"""Every limit, tripped on purpose, answered as specified."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import p2pchat
from p2pchat.peering.reach import Reach
from p2pchat.protocol import Error, Invite, ListUsers, Msg, Refused, Users
from p2pchat.serving.limits import AddressLimits
from p2pchat.serving.settings import ServerSettings

from .conftest import PeerFactory, RawClient, connect, eventually, hand_driven_invitee

RawFactory = Callable[[int], Awaitable[RawClient]]


async def test_a_flood_is_answered_with_an_error_then_a_disconnect(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(port=0, rate_limit=(10.0, 20)) as server:
        calm = await raw_clients(server.port)
        await calm.login("calm", 1)
        flood = await raw_clients(server.port)
        await flood.login("flood", 1)
        flood.writer.write(
            b"".join(p2pchat.protocol.encode(ListUsers(id=str(n))) for n in range(500))
        )
        answers = await read_until_closed(flood)
        users = [a for a in answers if isinstance(a, Users)]
        errors = [a for a in answers if isinstance(a, Error)]
        assert 20 <= len(users) < 100  # the burst and a trickle, far from the 500 asked
        assert errors[0].code == "rate_limited"
        assert "more than 10 requests/s: slow down" in errors[0].reason
        assert "disconnecting" in errors[-1].reason
        assert "flood" not in server.online_users
        await calm.send(ListUsers(id="still"))
        assert (await calm.recv_until(Users)).users == ["calm"]


async def read_until_closed(client: RawClient) -> list[object]:
    answers: list[object] = []
    with contextlib.suppress(p2pchat.ConnectionClosed):
        while True:
            answers.append(await client.recv())
    return answers


async def test_invitations_pending_per_user_are_bounded() -> None:
    # Per pair too (max_invitations_per_pair): raised here to reach the per-user bounds.
    async with p2pchat.SignallingServer(
        port=0, max_invitations=3, max_invitations_per_pair=3
    ) as server:
        where = ("127.0.0.1", server.port)
        async with (
            p2pchat.Peer("alice", server=where) as alice,
            p2pchat.Peer("bob", server=where) as bob,
            p2pchat.Peer("carol", server=where) as carol,
        ):
            waiting = [asyncio.create_task(alice.invite("bob", timeout=30)) for _ in range(3)]
            for _ in range(3):
                await asyncio.wait_for(bob.next_invitation(), 5)
            with pytest.raises(p2pchat.TooManyInvitations, match="you have 3 invitations pending"):
                await alice.invite("bob")
            with pytest.raises(p2pchat.TooManyInvitations, match="bob has 3 invitations pending"):
                await carol.invite("bob")
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)


async def test_unanswered_invitations_expire(make_peer: PeerFactory) -> None:
    async with p2pchat.SignallingServer(port=0, invitation_ttl=0.2) as server:
        where = ("127.0.0.1", server.port)
        async with (
            p2pchat.Peer("alice", server=where) as alice,
            p2pchat.Peer("bob", server=where) as bob,
        ):
            gone = asyncio.Event()
            bob.on_invitation_cancelled = lambda invitation: gone.set()
            inviting = asyncio.create_task(alice.invite("bob", timeout=30))
            invitation = await asyncio.wait_for(bob.next_invitation(), 5)
            await asyncio.wait_for(gone.wait(), 5)
            assert invitation.cancelled == "the invitation expired"
            with pytest.raises(p2pchat.InvitationGone, match="expired"):
                await invitation.accept()
            inviting.cancel()


async def test_a_message_over_the_size_limit_is_refused_on_both_ends(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    alice = await make_peer("alice", max_message_size=1000)
    with pytest.raises(p2pchat.MessageTooLarge, match="1001 bytes is over the limit of 1000"):
        await alice.send("bob", "é" * 500 + "x")  # counted in UTF-8 bytes
    # A peer that sends one anyway gets a protocol error and the conversation ends.
    chat, direct = await hand_driven_invitee(alice, "mallory", server.port, raw_clients)
    await direct.send(Msg(id="big", ts=0.0, body="x" * 1001))
    assert "over the limit of 1000" in (await direct.recv_until(Error)).reason
    await chat.wait_closed()
    assert await alice.history("mallory") == []


async def test_an_idle_conversation_whose_peer_is_gone_is_dropped(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    alice = await make_peer("alice", ping_interval=0.1, ping_timeout=0.1)
    chat, _ = await hand_driven_invitee(alice, "ghost", server.port, raw_clients)
    # ghost never answers a ping: as good as gone.
    await asyncio.wait_for(chat.wait_closed(), 5)
    assert "no answer from ghost" in chat.close_reason


async def test_a_live_conversation_answers_pings_and_stays(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice", ping_interval=0.2, ping_timeout=0.2)
    bob = await make_peer("bob", ping_interval=0.2, ping_timeout=0.2)
    chat_a, chat_b = await connect(alice, bob)
    # Quiet for many ping intervals: the pongs alone keep it up.
    closed = asyncio.create_task(chat_a.wait_closed())
    done, _ = await asyncio.wait({closed}, timeout=1.5)
    assert not done
    closed.cancel()
    await chat_a.send("still here")
    assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "still here"


async def test_a_peer_bounds_the_invitations_it_holds(make_peer: PeerFactory) -> None:
    bob = await make_peer("bob", max_invitations=2)
    fans = [await make_peer(f"fan{n}") for n in range(3)]
    inviting = [asyncio.create_task(fan.invite("bob", timeout=30)) for fan in fans]
    done, pending = await asyncio.wait(inviting, return_when=asyncio.FIRST_COMPLETED, timeout=10)
    assert len(done) == 1  # the third one, refused at once; two wait for an answer
    with pytest.raises(p2pchat.InviteRefused, match="too many pending invitations"):
        done.pop().result()
    assert len(bob.pending_invitations()) == 2
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def test_connections_beyond_the_limit_are_refused_and_peers_retry(
    raw_clients: RawFactory,
) -> None:
    async with p2pchat.SignallingServer(port=0, max_connections=3) as server:
        idle = [await raw_clients(server.port) for _ in range(3)]  # say nothing: hold a slot
        extra = await raw_clients(server.port)
        refusal = await extra.recv_until(Error)
        assert (refusal.code, refusal.reason) == (
            "server_busy",
            "too many connections; try again later",
        )
        with pytest.raises(p2pchat.ServerBusy):
            await p2pchat.Peer("alice", server=("127.0.0.1", server.port)).start()
        for client in idle:
            await client.close()
        await eventually(lambda: server.connection_count == 0)
        async with p2pchat.Peer("alice", server=("127.0.0.1", server.port)) as alice:
            assert await alice.online() == ["alice"]


async def test_connections_per_address_are_bounded(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(
        port=0, max_connections_per_address=2, trusted_networks=()
    ) as server:
        held = [await raw_clients(server.port) for _ in range(2)]
        await eventually(lambda: server.connection_count == 2)
        extra = await raw_clients(server.port)
        refusal = await extra.recv_until(Error)
        assert refusal.code == "too_many_connections"
        assert "too many connections from your address (127.0.0.1)" in refusal.reason
        with pytest.raises(p2pchat.TooManyConnections):
            await p2pchat.Peer("alice", server=("127.0.0.1", server.port)).start()
        await held[0].close()
        await eventually(lambda: server.connection_count == 1)
        async with p2pchat.Peer("alice", server=("127.0.0.1", server.port)) as alice:
            assert await alice.online() == ["alice"]


async def test_new_names_per_address_are_bounded(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(
        port=0, registration_rate=(1 / 3600, 2), trusted_networks=()
    ) as server:
        where = ("127.0.0.1", server.port)
        known = p2pchat.Identity.generate()
        async with p2pchat.Peer("one", server=where, identity=known):
            pass
        async with p2pchat.Peer("two", server=where):
            pass
        with pytest.raises(p2pchat.RateLimited, match=r"too many new names from 127\.0\.0\.1"):
            await p2pchat.Peer("three", server=where).start()
        async with p2pchat.Peer("one", server=where, identity=known) as one:  # not new
            assert await one.online() == ["one"]


async def test_new_names_stay_bounded_when_logins_come_at_once(tmp_path: Path) -> None:
    # On a store on disk, the check and the write are apart in time: 30 logins at once
    # must not all pass the check before any of them has written its new name.
    async with p2pchat.SignallingServer(
        port=0,
        store=p2pchat.SqliteUserStore(tmp_path / "users.sqlite3"),
        registration_rate=(1 / 3600, 2),
        trusted_networks=(),
    ) as server:
        where = ("127.0.0.1", server.port)

        async def log_in(n: int) -> bool:
            try:
                async with p2pchat.Peer(f"new{n}", server=where):
                    return True
            except p2pchat.RateLimited:
                return False

        assert sum(await asyncio.gather(*(log_in(n) for n in range(30)))) == 2


async def test_loopback_is_trusted_by_default(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(
        port=0, max_connections_per_address=1, registration_rate=(1 / 3600, 1)
    ) as server:
        clients = [await raw_clients(server.port) for _ in range(3)]
        for n, client in enumerate(clients):
            await client.login(f"user{n}", 1)  # three connections, three new names


async def test_a_relayed_conversation_is_paced_and_ends_at_its_lifetime() -> None:
    rate = 64 * 1024
    async with p2pchat.SignallingServer(port=0, relay_rate=rate, relay_lifetime=30.0) as server:
        where = ("127.0.0.1", server.port)
        alice = p2pchat.Peer("alice", server=where, advertise=[("127.0.0.1", 9)], traversal=False)
        async with alice, p2pchat.Peer("bob", server=where) as bob:
            chat_a, chat_b = await connect(alice, bob)
            assert chat_a.route == "relay"
            started = time.monotonic()
            for _ in range(12):  # 12 x 16 KB: about three times what one second allows
                await chat_a.send("x" * 16000)
            await asyncio.wait_for(chat_a.wait_acknowledged(), 20)
            # The first second's worth passes at once; the rest at the relay's rate.
            assert time.monotonic() - started >= (12 * 16000 - rate) / rate * 0.9
    async with p2pchat.SignallingServer(port=0, relay_lifetime=0.3) as server:
        where = ("127.0.0.1", server.port)
        alice = p2pchat.Peer("alice", server=where, advertise=[("127.0.0.1", 9)], traversal=False)
        async with alice, p2pchat.Peer("bob", server=where) as bob:
            chat_a, chat_b = await connect(alice, bob)
            await asyncio.wait_for(chat_b.wait_closed(), 5)
            await eventually(lambda: server.relays.active == 0)


async def test_a_relay_that_passes_nothing_ends_but_a_quiet_talk_keeps_its_own() -> None:
    keys = {name: p2pchat.Identity.generate() for name in ("alice", "bob")}
    away = [("127.0.0.1", 9)]  # alice cannot be dialled: the two meet in the relay

    def peer(name: str, port: int, interval: float, timeout: float) -> p2pchat.Peer:
        return p2pchat.Peer(
            name,
            server=("127.0.0.1", port),
            identity=keys[name],
            advertise=away if name == "alice" else None,
            traversal=name != "alice",  # no call back either: the relay it is
            ping_interval=interval,
            ping_timeout=timeout,
        )

    async def silent(server: p2pchat.SignallingServer) -> None:
        async with (
            peer("alice", server.port, 60, 60) as alice,
            peer("bob", server.port, 60, 60) as bob,
        ):
            chat_a, chat_b = await connect(alice, bob)
            assert chat_a.route == "relay"
            await asyncio.wait_for(chat_b.wait_closed(), 5)
            await eventually(lambda: server.relays.active == 0)

    async def quiet(server: p2pchat.SignallingServer) -> None:
        async with (
            peer("alice", server.port, 0.5, 1.0) as alice,
            peer("bob", server.port, 0.5, 1.0) as bob,
        ):
            _, chat_b = await connect(alice, bob)
            pinged = asyncio.ensure_future(chat_b.wait_closed())
            done, _ = await asyncio.wait({pinged}, timeout=4.5)  # 1.5 times relay_idle
            assert not done, chat_b.close_reason
            assert server.relays.active == 1
            pinged.cancel()

    # Two peers that say nothing and do not ping hold a slot: it ends after relay_idle.
    async with p2pchat.SignallingServer(port=0, relay_idle=0.5) as server:
        await silent(server)
    # A quiet talk pings within relay_idle (a ping at most every 1.5 s, within 3 s): its
    # relay stays. (Each side gives an answer 1 s: a loaded machine is slow, and a talk
    # dropped for a late pong would prove nothing about the relay.)
    async with p2pchat.SignallingServer(port=0, relay_idle=3.0) as server:
        await quiet(server)


async def test_dial_ins_not_yet_proven_are_bounded(
    make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    alice = await make_peer("alice", max_handshakes=2)
    bob = await make_peer("bob")
    port = alice.listening[0][1]
    idle = [await raw_clients(port) for _ in range(2)]  # connect, say nothing
    extra = await raw_clients(port)
    assert await extra.closed_by_other_side(timeout=2)  # at once, not after hello_timeout
    for client in idle:
        await client.close()
    await eventually(lambda: alice._dialler().dialling_in == 0)
    _chat_a, chat_b = await connect(alice, bob)
    assert chat_b.route == "direct"


async def test_an_invitee_does_not_dial_privileged_ports(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, raw_clients: RawFactory
) -> None:
    bob = await make_peer("bob", hello_timeout=1)
    alice = await raw_clients(server.port)
    await alice.login("alice", 22)  # "dial me at the machine's ssh port"
    await alice.send(Invite(id="1", user="bob"))
    invitation = await asyncio.wait_for(bob.next_invitation(), 5)
    with pytest.raises(p2pchat.PeerUnreachable, match=r"127\.0\.0\.1:22: privileged port"):
        await invitation.accept()
    refused = await alice.recv_until(Refused)
    assert refused.reason.startswith("cannot reach you")
    assert "22" not in refused.reason  # nothing of what bob tried is told to alice


def test_a_relay_is_joined_only_where_a_hostile_server_cannot_turn_it_against_us() -> None:
    reach = Reach(
        "bob",
        p2pchat.Identity.generate(),
        server=lambda: ("203.0.113.9", 5535),
        servers=[("203.0.113.9", 5535), ("node-b.example", 5535)],
        server_ssl=None,
        link=lambda: None,  # type: ignore[arg-type,return-value]
        opened=None,  # type: ignore[arg-type]
    )
    assert reach._relay_node(None) == ("203.0.113.9", 5535)  # where we are
    assert reach._relay_node(("node-b.example", 5535)) == ("node-b.example", 5535)  # ours
    assert reach._relay_node(("198.51.100.7", 5535)) == ("198.51.100.7", 5535)  # another node
    for named in [
        ("localhost", 6379),  # a name that is not one of our servers
        ("127.0.0.1", 6379),
        ("::ffff:127.0.0.1", 6379),
        ("::ffff:0.0.0.0", 6379),
        ("198.51.100.7", 22),
        ("169.254.169.254", 8080),
    ]:
        with pytest.raises(p2pchat.PeerUnreachable, match="the relay at"):
            reach._relay_node(named)


@pytest.mark.parametrize(
    ("host", "port", "why"),
    [
        ("127.0.0.1", 22, "privileged port"),
        ("localhost", 4000, "not an IP address"),
        ("127.1", 4000, "not an IP address"),
        ("0x7f000001", 4000, "not an IP address"),
        ("::ffff:127.0.0.1", 4000, "an address of this machine, from a remote server"),
        ("127.0.0.1", 4000, "an address of this machine, from a remote server"),
        ("0.0.0.0", 4000, "not a host address"),
        ("224.0.0.1", 4000, "not a host address"),
        ("169.254.169.254", 8080, "link-local"),
    ],
)
def test_an_invitee_dials_only_what_a_hostile_inviter_cannot_turn_against_it(
    host: str, port: int, why: str
) -> None:
    reach = Reach(
        "bob",
        p2pchat.Identity.generate(),
        server=lambda: ("203.0.113.9", 5535),  # remote: our loopback is not for its users
        server_ssl=None,
        link=lambda: None,  # type: ignore[arg-type,return-value]
        opened=None,  # type: ignore[arg-type]
    )
    assert why in (reach.refuse_to_dial(host, port) or "")
    assert reach.refuse_to_dial("198.51.100.4", 4000) is None


def test_registration_records_are_never_forgotten_while_they_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past PRUNE_AT addresses the oldest record was forgotten, and with it what its
    address had used: it could register names afresh. Now a record that still counts
    stays; while every record counts, new addresses share one."""
    monkeypatch.setattr(AddressLimits, "PRUNE_AT", 4)
    now = [0.0]
    settings = ServerSettings(registration_rate=(1 / 3600, 1), trusted_networks=())
    limits = AddressLimits(settings, clock=lambda: now[0])
    for n in range(4):
        assert limits.reserve_registration(f"192.0.2.{n}")  # each uses its one name
    assert limits.reserve_registration("198.51.100.1")  # the table is full: the shared one
    assert not limits.reserve_registration("198.51.100.2")  # ... which is used up now
    assert not limits.reserve_registration("192.0.2.0")  # remembered: no fresh allowance
    now[0] = 3600.0  # an hour on: every record is full again, and may be forgotten
    assert limits.reserve_registration("198.51.100.3")
    assert limits.reserve_registration("192.0.2.0")
