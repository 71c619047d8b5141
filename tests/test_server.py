"""The signalling server over real loopback sockets."""

from __future__ import annotations

import asyncio
import struct
import typing
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import p2pchat
from p2pchat.protocol import (
    PROTOCOL_VERSION,
    Error,
    Hello,
    Invite,
    ListUsers,
    Msg,
    Presence,
    Users,
    encode,
)

from .conftest import GatedUserStore, PeerFactory, RawClient, connect, eventually

RawFactory = Callable[[int], Awaitable[RawClient]]


async def test_login_and_presence_pushed_to_others(
    server: p2pchat.SignallingServer, make_peer: PeerFactory
) -> None:
    alice = await make_peer("alice")
    events: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
    alice.on_presence = lambda user, online: events.put_nowait((user, online))
    bob = await make_peer("bob")
    assert await asyncio.wait_for(events.get(), 5) == ("bob", True)
    assert server.online_users == ["alice", "bob"]
    await bob.close()
    assert await asyncio.wait_for(events.get(), 5) == ("bob", False)
    assert await alice.online() == ["alice"]


async def test_list_shows_who_is_online(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    await make_peer("bob")
    await make_peer("carol")
    assert await alice.online() == ["alice", "bob", "carol"]


async def test_list_is_capped(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(port=0, max_list=2) as server:
        clients = [await raw_clients(server.port) for _ in range(3)]
        for n, client in enumerate(clients):
            await client.login(f"user{n}", 1)
        await clients[0].send(ListUsers(id="q"))
        users = await clients[0].recv_until(Users)
        assert (users.users, users.truncated) == (["user0", "user1"], True)


async def test_concurrent_logins_on_a_sqlite_store_each_get_welcome_first(
    tmp_path: Path,
) -> None:
    store = p2pchat.SqliteUserStore(tmp_path / "users.sqlite3")  # its writes really wait
    async with p2pchat.SignallingServer(port=0, store=store) as server:
        peers = [p2pchat.Peer(f"p{n}", server=("127.0.0.1", server.port)) for n in range(30)]
        await asyncio.gather(*(peer.start() for peer in peers))
        try:
            assert server.online_users == sorted(f"p{n}" for n in range(30))
            assert len(await peers[0].online()) == 30
        finally:
            await asyncio.gather(*(peer.close() for peer in peers))


async def test_a_taken_name_is_refused_and_the_first_login_keeps_working(
    make_peer: PeerFactory,
) -> None:
    alice = await make_peer("alice")
    with pytest.raises(p2pchat.NameTaken, match="logged in already"):
        await make_peer("alice", identity=alice.identity)  # her own key, a second time
    assert await alice.online() == ["alice"]


async def test_invite_unknown_and_offline_users(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    await bob.close()
    with pytest.raises(p2pchat.UserOffline, match="bob is not online"):
        await alice.invite("bob")
    with pytest.raises(p2pchat.UnknownUser, match="no user named zed"):
        await alice.invite("zed")
    with pytest.raises(p2pchat.ServerRefused, match="yourself"):
        await alice.invite("alice")


async def hostile_input_does_not_disturb_a_chat(
    make_peer: PeerFactory,
    raw: RawClient,
    attack: Callable[[RawClient], Awaitable[None]],
    code: str,
) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    chat_a, chat_b = await connect(alice, bob)
    await attack(raw)
    answer = await raw.recv_until(Error)
    assert answer.code == code
    assert await raw.closed_by_other_side()
    await chat_a.send("still here?")
    assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "still here?"
    assert sorted(await bob.online()) == ["alice", "bob"]


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        (lambda raw: raw.send_raw(b"\x00\x00\x00\x05garbage and more garbage"), "protocol_error"),
        (lambda raw: raw.send_raw(struct.pack(">I", 50_000_000)), "frame_too_large"),
        (lambda raw: raw.send_frame(b'{"type": "hello", "version": 1, "name": '), "protocol_error"),
        (lambda raw: raw.send_frame(b"[1,2,3]"), "protocol_error"),
        (lambda raw: raw.send_frame(b'{"type":"list","id":"\xff"}'), "protocol_error"),
        (lambda raw: raw.send(ListUsers(id="1")), "protocol_error"),  # before hello
    ],
    ids=["garbage", "oversized-length", "invalid-json", "not-an-object", "bad-utf8", "no-hello"],
)
async def test_hostile_bytes_before_login(
    server: p2pchat.SignallingServer,
    make_peer: PeerFactory,
    raw_clients: RawFactory,
    attack: Callable[[RawClient], Awaitable[None]],
    code: str,
) -> None:
    raw = await raw_clients(server.port)
    await hostile_input_does_not_disturb_a_chat(make_peer, raw, attack, code)


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        (lambda raw: raw.send_raw(b"\xde\xad\xbe\xef" * 4), "frame_too_large"),
        (lambda raw: raw.send_frame(b"{{{{"), "protocol_error"),
        (lambda raw: raw.send(Msg(id="1", ts=0.0, body="no chat content here")), "protocol_error"),
    ],
    ids=["garbage", "invalid-json", "wrong-message"],
)
async def test_hostile_bytes_after_login(
    server: p2pchat.SignallingServer,
    make_peer: PeerFactory,
    raw_clients: RawFactory,
    attack: Callable[[RawClient], Awaitable[None]],
    code: str,
) -> None:
    raw = await raw_clients(server.port)
    await raw.login("mallory", 1)
    await hostile_input_does_not_disturb_a_chat(make_peer, raw, attack, code)
    assert "mallory" not in server.online_users


async def test_a_connection_that_never_says_hello_is_closed(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(port=0, hello_timeout=0.2) as server:
        raw = await raw_clients(server.port)
        error = await raw.recv_until(Error)
        assert error.code == "timeout"
        assert await raw.closed_by_other_side()


async def test_a_wrong_protocol_version_is_refused(
    server: p2pchat.SignallingServer, raw_clients: RawFactory
) -> None:
    raw = await raw_clients(server.port)
    await raw.send(Hello(version=PROTOCOL_VERSION + 1, name="future"))
    error = await raw.recv_until(Error)
    assert error.code == "unsupported_version"


async def test_errors_answer_the_request_that_caused_them(
    server: p2pchat.SignallingServer, raw_clients: RawFactory
) -> None:
    raw = await raw_clients(server.port)
    await raw.login("mallory", 1)
    await raw.send(Invite(id="req-42", user="nobody"))
    error = await raw.recv_until(Error)
    assert (error.id, error.code) == ("req-42", "unknown_user")


async def test_a_client_that_stops_reading_stalls_nobody_and_is_dropped(
    raw_clients: RawFactory,
) -> None:
    async with p2pchat.SignallingServer(port=0, outbox_size=8, rate_limit=None) as server:
        for n in range(30):  # long names make each answer to "list" about 1 KiB
            await (await raw_clients(server.port)).login(f"{n:02d}" + "x" * 30, 1)
        busy = await raw_clients(server.port)
        await busy.login("busy", 1)
        lazy = await raw_clients(server.port)
        await lazy.login("lazy", 1)
        typing.cast(asyncio.Transport, lazy.writer.transport).pause_reading()
        lazy.writer.write(b"".join(encode(ListUsers(id=str(n))) for n in range(20_000)))
        # lazy's own answers back up into its outbox; the server stops reading lazy only.
        for _ in range(20):
            assert "lazy" in await busy_list(busy)
        # News about others never waits for a full outbox: lazy is dropped instead.
        await (await raw_clients(server.port)).login("newcomer", 1)
        await eventually(lambda: "lazy" not in server.online_users, timeout=10)
        assert "busy" in await busy_list(busy)


async def busy_list(client: RawClient) -> list[str]:
    await client.send(ListUsers(id="final"))
    while True:
        answer = await client.recv()
        if isinstance(answer, Users) and answer.id == "final":
            return answer.users
        assert isinstance(answer, Users | Presence)


async def test_server_users_survive_a_restart_on_sqlite(
    tmp_path: Path, raw_clients: RawFactory
) -> None:
    path = tmp_path / "server.sqlite3"
    async with p2pchat.SignallingServer(port=0, store=p2pchat.SqliteUserStore(path)) as server:
        raw = await raw_clients(server.port)
        await raw.login("alice", 1)
    store = p2pchat.SqliteUserStore(path)
    async with p2pchat.SignallingServer(port=0, store=store) as server:
        raw = await raw_clients(server.port)
        await raw.login("bob", 1)
        await raw.send(Invite(id="1", user="alice"))
        error = await raw.recv_until(Error)
        assert error.code == "user_offline"  # known from before the restart, not online
        alice = await store.get("alice")
        assert alice is not None
        assert not alice.online


def test_advertised_addresses_are_checked_and_the_observed_host_comes_first() -> None:
    from p2pchat.serving.session import dial_addresses

    remote = ("203.0.113.7", 50000)
    advertised = [
        ("192.168.1.5", 4000),  # its LAN address: fine
        ("0.0.0.0", 4001),  # wildcard: made the observed host
        ("127.0.0.1", 6379),  # "dial my loopback": a remote peer's victims' own machine
        ("::1", 4002),
        ("224.0.0.1", 4003),  # multicast
        ("203.0.113.7", 0),  # port 0
        ("localhost", 4004),  # names could resolve to anything
        ("127.1", 4005),  # loopback in forms the standard one does not show
        ("0x7f000001", 4006),
        ("::ffff:127.0.0.1", 4007),
        ("::ffff:192.168.1.6", 4008),  # fine: the IPv4 it maps
    ]
    assert dial_addresses(advertised, remote) == [
        ("203.0.113.7", 4001),
        ("192.168.1.5", 4000),
        ("::ffff:192.168.1.6", 4008),
    ]
    # A peer on the server's own machine may advertise loopback.
    assert dial_addresses([("127.0.0.1", 4000)], ("127.0.0.1", 1)) == [("127.0.0.1", 4000)]


def test_a_wildcard_stands_for_the_observed_host_only_in_its_own_family() -> None:
    from p2pchat.serving.session import dial_addresses

    both = [("0.0.0.0", 4000), ("::", 4000)]
    assert dial_addresses(both, ("203.0.113.7", 1)) == [("203.0.113.7", 4000)]
    assert dial_addresses(both, ("2001:db8::7", 1)) == [("2001:db8::7", 4000)]
    assert dial_addresses([("", 4000)], ("2001:db8::7", 1)) == [("2001:db8::7", 4000)]


async def test_presence_news_does_not_wait_for_the_disk() -> None:
    store = GatedUserStore("set_online")  # the disk is slow to record logins
    async with p2pchat.SignallingServer(port=0, store=store) as server:
        where = ("127.0.0.1", server.port)
        store.gate.set()
        async with p2pchat.Peer("alice", server=where) as alice:
            await eventually(lambda: store.calls["set_online"] == 1)
            store.gate.clear()
            news: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
            alice.on_presence = lambda user, online: news.put_nowait((user, online))
            async with p2pchat.Peer("bob", server=where):
                assert await asyncio.wait_for(news.get(), 5) == ("bob", True)
                assert await alice.online() == ["alice", "bob"]
                assert store.calls["set_online"] == 1  # bob's is still being written
            assert await asyncio.wait_for(news.get(), 5) == ("bob", False)
            store.gate.set()
        record = await store.get("bob")  # the server wrote all it had queued on closing
        assert record is not None
        assert not record.online


def test_invitation_bounds_count_each_direction_and_pair() -> None:
    from p2pchat.stores.invitations import InvitationBook

    book = InvitationBook(max_sent=3, max_received=3, max_per_pair=2)
    first = book.add("carol", "victim")
    book.add("carol", "victim")
    with pytest.raises(p2pchat.TooManyInvitations, match="2 invitations pending to victim"):
        book.check("carol", "victim")
    book.check("victim", "carol")  # the other way is not affected
    book.check("dave", "victim")
    book.add("dave", "victim")
    with pytest.raises(p2pchat.TooManyInvitations, match="victim has 3 invitations pending"):
        book.check("erin", "victim")
    book.accept(first)  # answered: no longer counts
    book.check("erin", "victim")
    assert len(book) == 3
    book.remove(first)
    assert [i.sender for i in book.of_user("victim")].count("carol") == 1


async def test_beyond_a_few_users_presence_goes_to_watchers_only() -> None:
    async with p2pchat.SignallingServer(port=0, presence_broadcast=2) as server:
        where = ("127.0.0.1", server.port)
        news: dict[str, asyncio.Queue[tuple[str, bool]]] = {}

        async def log_in(name: str) -> p2pchat.Peer:
            peer = p2pchat.Peer(name, server=where)
            news[name] = asyncio.Queue()
            peer.on_presence = lambda user, online: news[name].put_nowait((user, online))
            await peer.start()
            return peer

        alice, bob = await log_in("alice"), await log_in("bob")
        assert await asyncio.wait_for(news["alice"].get(), 5) == ("bob", True)  # 2: all hear
        await alice.watch(["dave"])
        carol = await log_in("carol")  # the third: beyond 2, only watchers hear
        dave = await log_in("dave")
        assert await asyncio.wait_for(news["alice"].get(), 5) == ("dave", True)  # she watches
        await dave.close()
        assert await asyncio.wait_for(news["alice"].get(), 5) == ("dave", False)
        assert news["alice"].empty()  # nothing of carol
        assert news["bob"].empty()  # nothing of carol or dave: he watches nobody
        assert await bob.online() == ["alice", "bob", "carol"]  # ls still tells all
        # Those one has messages with are watched without asking.
        await carol.send("bob", "for bob, by mail")
        erin = await log_in("erin")  # beyond the bound: only watchers hear
        await erin.close()
        await bob.close()
        assert await asyncio.wait_for(news["carol"].get(), 5) == ("bob", False)
        assert news["carol"].empty()  # nothing of erin
        for peer in (alice, carol):
            await peer.close()
