"""Messages for people who are away: sealed, left on the server, delivered once.

Real sockets on 127.0.0.1, real SQLite files for the server and the peers. Where a test
needs a dishonest server, the server is real and only its mailbox store is not: it
alters, replays, relabels or forges what it keeps, as a malicious operator could.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

import p2pchat
from p2pchat.frontends.demo import ScriptedProcess
from p2pchat.protocol import (
    Deposit,
    Error,
    Key,
    Ok,
    Whois,
    WireMessage,
)
from p2pchat.shared.identity import Identity, b64decode, b64encode
from p2pchat.shared.seal import _SEAL_INFO, SUITE, _fields, open_receipt, open_seal, receipt, seal
from p2pchat.store import MailboxItem

from .conftest import GatedMessageStore, Launch, RawClient, eventually, let_the_loop_run
from .test_faults import start_server, stored

RawFactory = Callable[[int], Awaitable[RawClient]]

WORKER = Path(__file__).with_name("chat_worker.py")


class Server:
    """A server on SQLite files that can be stopped and started again on them."""

    def __init__(self, directory: Path, **options: object) -> None:
        self.directory = directory
        self.options = options
        self.port = 0
        self.server: p2pchat.SignallingServer | None = None

    async def start(self, mailbox: p2pchat.Mailbox | None = None) -> p2pchat.SignallingServer:
        self.server = p2pchat.SignallingServer(
            port=self.port,
            store=p2pchat.SqliteUserStore(self.directory / "users.sqlite3"),
            mailbox=mailbox or p2pchat.SqliteMailbox(self.directory / "mailbox.sqlite3"),
            **self.options,  # type: ignore[arg-type]
        )
        await self.server.start()
        self.port = self.server.port
        return self.server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None

    def peer(self, name: str, **options: object) -> p2pchat.Peer:
        """A peer on its own SQLite file (its key beside it), as a program would run one."""
        store = p2pchat.SqliteMessageStore(self.directory / f"{name}.sqlite3")
        return p2pchat.Peer(
            name,
            server=("127.0.0.1", self.port),
            store=store,
            reconnect_delay=(0.05, 0.3),
            **options,  # type: ignore[arg-type]
        )


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    running = Server(tmp_path)
    await running.start()
    yield running
    await running.stop()


async def shipped(peer: p2pchat.Peer, contact: str) -> list[bool]:
    return [m.shipped for m in await peer.history(contact) if m.sender == peer.name]


async def all_shipped(peer: p2pchat.Peer, contact: str) -> bool:
    marks = await shipped(peer, contact)
    return bool(marks) and all(marks)


async def stored_count(peer: p2pchat.Peer, contact: str, n: int) -> bool:
    return len(await peer.history(contact)) == n


async def meet(server: Server) -> None:
    """Both log in once, so that each name is known to the server."""
    for name in ("alice", "bob"):
        async with server.peer(name):
            pass


async def test_five_messages_to_someone_away_arrive_in_order_once_and_come_back_shipped(
    server: Server,
) -> None:
    await meet(server)
    said = [f"message {n}" for n in range(5)]
    async with server.peer("alice") as alice:
        for body in said:
            await alice.send("bob", body)  # bob is away: sealed and left on the server
        assert await shipped(alice, "bob") == [False] * 5
    async with server.peer("bob") as bob:
        got = [(await asyncio.wait_for(bob.next_message(), 5)).body for _ in said]
        assert got == said
        assert [m.body for m in await bob.history("alice")] == said  # stored once each
    async with server.peer("alice") as alice:  # the receipt waited for her
        await eventually(lambda: all_shipped(alice, "bob"))
    async with server.peer("bob") as bob:  # nothing comes twice
        waiting = asyncio.create_task(bob.next_message())
        done, _ = await asyncio.wait({waiting}, timeout=0.5)
        assert not done
        waiting.cancel()


async def test_the_mail_survives_a_server_restart_between_deposit_and_collection(
    server: Server,
) -> None:
    await meet(server)
    async with server.peer("alice") as alice:
        for n in range(5):
            await alice.send("bob", f"kept {n}")
    await server.stop()
    await server.start()  # the same files, the same port
    async with server.peer("bob") as bob:
        got = [(await asyncio.wait_for(bob.next_message(), 5)).body for _ in range(5)]
        assert got == [f"kept {n}" for n in range(5)]
    await server.stop()
    await server.start()
    async with server.peer("alice") as alice:
        await eventually(lambda: all_shipped(alice, "bob"))


async def test_a_server_given_only_a_sqlite_user_store_keeps_mail_across_a_restart(
    tmp_path: Path,
) -> None:
    # A library user names the user store and nothing else: the mail goes beside it.
    users = tmp_path / "users.sqlite3"
    port = 0

    async def start() -> p2pchat.SignallingServer:
        server = p2pchat.SignallingServer(port=port, store=p2pchat.SqliteUserStore(users))
        await server.start()
        return server

    def peer(name: str) -> p2pchat.Peer:
        store = p2pchat.SqliteMessageStore(tmp_path / f"{name}.sqlite3")
        return p2pchat.Peer(name, server=("127.0.0.1", port), store=store)

    server = await start()
    port = server.port
    try:
        for name in ("alice", "bob"):
            async with peer(name):
                pass
        async with peer("alice") as alice:
            await alice.send("bob", "kept while the server restarts")
            await eventually(lambda: deposited(server))
    finally:
        await server.close()
    assert p2pchat.SqliteMailbox.beside(users).exists()
    server = await start()  # the same files, the same port
    try:
        async with peer("bob") as bob:
            got = await asyncio.wait_for(bob.next_message(), 5)
            assert got.body == "kept while the server restarts"
    finally:
        await server.close()


async def deposited(server: p2pchat.SignallingServer) -> bool:
    return await server.mail.mailbox.usage("bob") != (0, 0)


async def test_two_online_users_write_by_mail_without_a_talk(server: Server) -> None:
    async with server.peer("alice") as alice, server.peer("bob") as bob:
        delays = []
        for n in range(5):
            started = time.perf_counter()
            await alice.send("bob", f"ping {n}")
            assert (await asyncio.wait_for(bob.next_message(), 5)).body == f"ping {n}"
            await bob.send("alice", f"pong {n}")
            assert (await asyncio.wait_for(alice.next_message(), 5)).body == f"pong {n}"
            delays.append(time.perf_counter() - started)
        # A round trip each way on loopback: pushed, not polled (a poll would take
        # seconds). The median, so that one hiccup of a loaded machine fails nothing.
        assert statistics.median(delays) < 0.5, delays
        assert alice.conversations == bob.conversations == {}
        await eventually(lambda: all_shipped(alice, "bob"))


async def test_a_cancelled_next_message_hands_each_message_over_once(server: Server) -> None:
    # bob's disk is slow to mark a message read; his program gives up waiting meanwhile.
    store = GatedMessageStore("mark_read")
    async with (
        server.peer("alice") as alice,
        p2pchat.Peer("bob", server=("127.0.0.1", server.port), store=store) as bob,
    ):
        for n in range(2):
            await alice.send("bob", f"mail {n}")
        await eventually(lambda: stored_count(bob, "alice", 2))
        giving_up = asyncio.ensure_future(bob.next_message())
        await store.entered.wait()  # marking "mail 0" read, on the disk
        giving_up.cancel()
        first = await asyncio.wait_for(bob.next_message(), 5)  # the one given up on
        second = asyncio.ensure_future(bob.next_message())  # while "mail 0" is still marked
        await let_the_loop_run()
        store.gate.set()
        assert [first.body, (await asyncio.wait_for(second, 5)).body] == ["mail 0", "mail 1"]


async def test_the_server_keeps_no_readable_text(server: Server, tmp_path: Path) -> None:
    await meet(server)
    secret = "the eagle lands at dawn"
    async with server.peer("alice") as alice:
        await alice.send("bob", secret)
        assert server.server is not None
        mailbox = server.server.mail.mailbox
        await eventually(lambda: _kept(mailbox, "bob", 1))  # it is there, sealed
    await server.stop()  # the files as they are on disk
    files = await asyncio.to_thread(lambda: {p: p.read_bytes() for p in tmp_path.iterdir()})
    server_files = [p for p in files if p.name.startswith(("mailbox.", "users."))]
    assert len(server_files) >= 2
    for path in server_files:
        assert secret.encode() not in files[path], path
        assert b"eagle" not in files[path], path
    await server.start()


async def _kept(mailbox: p2pchat.Mailbox, recipient: str, items: int) -> bool:
    return (await mailbox.usage(recipient))[0] == items


async def test_an_unknown_recipient_is_refused_and_nothing_is_kept(server: Server) -> None:
    async with server.peer("alice") as alice:
        with pytest.raises(p2pchat.UnknownUser, match="no user named nobody"):
            await alice.send("nobody", "hello?")
        assert await alice.history("nobody") == []


async def test_a_mailbox_key_its_owner_did_not_sign_is_never_sealed_to(
    server: Server, raw_clients: RawFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The server refuses such a key at login (test_mail_bounds.py); a dishonest server
    # could still hand one out, so whoever seals checks the signature against the
    # identity key it knows. Here the server's store gives out someone else's.
    other = Identity.generate()
    client = await raw_clients(server.port)
    await client.login("mallory", 1)
    assert server.server is not None
    await server.server.store.set_mailbox_key("mallory", other.mailbox_key, other.mailbox_signature)
    caplog.set_level(logging.WARNING, logger="p2pchat.peering.postbox")
    async with server.peer("alice") as alice:
        await alice.send("mallory", "sealed to whom?")
        await eventually(lambda: "is not signed by them" in caplog.text)
        assert await shipped(alice, "mallory") == [False]  # it waits for a talk
        assert await server.server.mail.mailbox.usage("mallory") == (0, 0)


# A dishonest server.


class TamperingMailbox(p2pchat.MemoryMailbox):
    """A mailbox store that does what a malicious server could do with what it keeps."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how

    async def pending(
        self,
        recipient: str,
        *,
        now: float,
        limit: int,
        max_bytes: int,
        skip: Collection[str] = (),
    ) -> tuple[list[MailboxItem], bool]:
        skip = () if self.how == "replay" else skip  # a replaying server skips nothing
        items, more = await super().pending(
            recipient, now=now, limit=limit, max_bytes=max_bytes, skip=skip
        )
        if self.how == "alter":
            items = [_flip(i) if i.kind == "msg" else i for i in items]
        elif self.how == "relabel":
            items = [msgspec.structs.replace(i, sender="carol") for i in items]
        elif self.how == "replay":
            items = [i for i in items for _ in range(2)]  # each twice, and kept below
        return items, more

    async def remove(self, recipient: str, items: Iterable[str]) -> int:
        if self.how == "replay":
            return 0  # "settled", yet handed out again at every collect
        return await super().remove(recipient, items)


def _flip(item: MailboxItem) -> MailboxItem:
    at = len(item.sealed) // 2
    changed = "A" if item.sealed[at] != "A" else "B"
    return msgspec.structs.replace(item, sealed=item.sealed[:at] + changed + item.sealed[at + 1 :])


async def tampering(server: Server, how: str) -> TamperingMailbox:
    await server.stop()
    mailbox = TamperingMailbox(how)
    await server.start(mailbox)
    return mailbox


@pytest.mark.parametrize("how", ["alter", "relabel"])
async def test_an_altered_or_relabelled_item_is_refused_and_logged(
    server: Server, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    await tampering(server, how)
    await meet(server)
    async with server.peer("carol"):
        pass  # carol exists: the server could pin alice's words on her
    async with server.peer("alice") as alice:
        await alice.send("bob", "what the server would like to change")
    with caplog.at_level(logging.WARNING, logger="p2pchat"):
        async with server.peer("bob") as bob:
            await eventually(lambda: "refused a mail item" in caplog.text)
            assert await bob.history("alice") == []
            assert await bob.history("carol") == []
    async with server.peer("alice") as alice:
        assert await shipped(alice, "bob") == [False]  # no receipt: kept for the next talk


async def test_a_replayed_item_is_shown_once(server: Server) -> None:
    await tampering(server, "replay")
    await meet(server)
    async with server.peer("alice") as alice:
        await alice.send("bob", "once only")
    for _ in range(2):  # collected again at each login, and twice each time
        async with server.peer("bob") as bob:
            await eventually(lambda: stored_count(bob, "alice", 1))
    async with server.peer("bob") as bob:
        assert (await asyncio.wait_for(bob.next_message(), 5)).body == "once only"
        waiting = asyncio.create_task(bob.next_message())
        done, _ = await asyncio.wait({waiting}, timeout=0.5)
        assert not done
        waiting.cancel()


async def test_a_forged_receipt_leaves_the_message_unshipped(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    await meet(server)
    async with server.peer("alice") as alice:
        message = await alice.send("bob", "not read yet")
    # The server makes up a receipt "from bob" (it has no key of bob's to sign with).
    running = server.server
    assert running is not None
    forged = receipt(p2pchat.Identity.generate(), "bob", "alice", [message.id])
    now = time.time()
    await running.mail.mailbox.deposit(
        MailboxItem(
            recipient="alice",
            item="r-forged",
            kind="receipt",
            sender="bob",
            sealed=forged,
            at=now,
            expires=now + 60,
        ),
        max_items=None,
        max_bytes=None,
    )
    with caplog.at_level(logging.WARNING, logger="p2pchat"):
        async with server.peer("alice") as alice:
            await eventually(lambda: "refused a receipt" in caplog.text)
            assert await shipped(alice, "bob") == [False]


# Crashes.


async def test_the_recipient_killed_while_collecting_loses_nothing_and_repeats_nothing(
    launch: Launch, tmp_path: Path
) -> None:
    _, port = await start_server(launch, tmp_path / "server.sqlite3")
    count = 150  # beyond the server's burst of deposits: paced, in order
    bodies = [f"m{n:04d}" for n in range(count)]

    async def bob_worker() -> ScriptedProcess:
        process = await launch(
            "bob",
            [sys.executable, str(WORKER), "receiver", "bob", "alice", str(port), str(tmp_path)],
        )
        await process.expect("ready")
        return process

    bob = await bob_worker()  # once, so that bob is known
    bob.process.send_signal(signal.SIGTERM)
    await bob.process.wait()
    alice = p2pchat.Peer(
        "alice",
        server=("127.0.0.1", port),
        store=p2pchat.SqliteMessageStore(tmp_path / "alice.sqlite3"),
    )
    async with alice:
        for body in bodies:
            await alice.send("bob", body)
        bob = await bob_worker()
        await bob.expect(r"got m0\d[1-9]\d", timeout=30)  # mid-collection
        bob.process.send_signal(signal.SIGKILL)
        await bob.process.wait()
        bob = await bob_worker()
        await eventually(lambda: all_shipped(alice, "bob"), timeout=30)
    received = await stored(tmp_path / "bob.sqlite3", "bob", "alice")
    assert [m.body for m in received] == bodies  # each once, in order


# Limits: each refused by the server with its own error, and the peer's copy kept.


async def depositor(
    raw_clients: RawFactory, server: p2pchat.SignallingServer
) -> tuple[RawClient, Callable[[str, int], Awaitable[WireMessage]]]:
    """bob (known, away) and a hand-driven alice who deposits what the test says."""
    bob = await raw_clients(server.port)
    await bob.login("bob", 1)
    await bob.close()
    alice = await raw_clients(server.port)
    await alice.login("alice", 1)
    ids = iter(range(1_000_000))

    async def deposit(recipient: str, size: int) -> WireMessage:
        n = next(ids)
        await alice.send(Deposit(id=f"d{n}", recipient=recipient, item=f"i{n}", sealed="A" * size))
        answer: WireMessage = await alice.recv_until((Ok, Error))
        return answer

    return alice, deposit


async def test_items_and_bytes_per_recipient_are_bounded(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(port=0, mailbox_items=3, mailbox_bytes=5000) as server:
        _, deposit = await depositor(raw_clients, server)
        assert [type(await deposit("bob", 1000)) for _ in range(3)] == [Ok, Ok, Ok]
        refused = await deposit("bob", 10)
        assert isinstance(refused, Error)
        assert (refused.code, refused.reason) == (
            "mailbox_full",
            "bob's mailbox holds 3 items, its limit",
        )
        await server.mail.mailbox.remove("bob", ["i0", "i1"])  # bob has read two
        assert isinstance(await deposit("bob", 2000), Ok)
        refused = await deposit("bob", 2500)  # 1000 + 2000 + 2500 > 5000
        assert isinstance(refused, Error)
        assert refused.code == "mailbox_full"
        assert "bytes" in refused.reason


async def test_an_item_over_the_size_limit_is_refused(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(port=0, mail_item_size=1000) as server:
        _, deposit = await depositor(raw_clients, server)
        refused = await deposit("bob", 1001)
        assert isinstance(refused, Error)
        assert (refused.code, refused.reason) == (
            "item_too_large",
            "a sealed item of 1001 bytes is over the limit of 1000",
        )
        assert isinstance(await deposit("bob", 1000), Ok)


async def test_deposits_per_second_are_bounded(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(port=0, deposit_rate=(1.0, 3)) as server:
        _, deposit = await depositor(raw_clients, server)
        answers = [await deposit("bob", 10) for _ in range(4)]
        assert [type(a) for a in answers] == [Ok, Ok, Ok, Error]
        assert "more than 1 deposits/s" in answers[3].reason  # type: ignore[union-attr]
        assert (await server.mail.mailbox.usage("bob"))[0] == 3


async def test_a_deposit_for_an_unknown_user_is_refused(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(port=0) as server:
        _, deposit = await depositor(raw_clients, server)
        refused = await deposit("nobody", 10)
        assert isinstance(refused, Error)
        assert (refused.code, refused.reason) == (
            "unknown_user",
            "no user named nobody has ever logged in",
        )


async def test_a_peer_paces_its_deposits_and_keeps_what_does_not_fit(tmp_path: Path) -> None:
    async with p2pchat.SignallingServer(
        port=0, deposit_rate=(5.0, 2), mailbox_items=4, mail_item_size=2000
    ) as server:
        where = ("127.0.0.1", server.port)
        async with p2pchat.Peer("bob", server=where):
            pass
        async with p2pchat.Peer("alice", server=where) as alice:
            big = await alice.send("bob", "b" * 3000)  # sealed, over 2000: never deposited
            for n in range(5):
                await alice.send("bob", f"m{n}")  # 2 at once, then paced by the server
            await eventually(lambda: _usage(server, "bob", 4), timeout=10)  # then full
            assert await shipped(alice, "bob") == [False] * 6  # all kept for a talk
            assert big.id not in {i.item for i in await _items(server, "bob")}


async def _none_undeposited(peer: p2pchat.Peer) -> bool:
    return not await peer.store.undeposited(peer.name)


async def _usage(server: p2pchat.SignallingServer, user: str, count: int) -> bool:
    return (await server.mail.mailbox.usage(user))[0] == count


async def _items(server: p2pchat.SignallingServer, user: str) -> list[MailboxItem]:
    page, _ = await server.mail.mailbox.pending(user, now=0.0, limit=100, max_bytes=1 << 30)
    return page


async def test_expired_items_are_dropped_and_stay_unshipped(tmp_path: Path) -> None:
    clock = [1000.0]  # the server's clock, moved by the test
    async with p2pchat.SignallingServer(port=0, mail_ttl=60.0, clock=lambda: clock[0]) as server:
        where = ("127.0.0.1", server.port)
        identity = p2pchat.Identity.generate()
        async with p2pchat.Peer("bob", server=where, identity=identity):
            pass
        async with p2pchat.Peer("alice", server=where) as alice:
            await alice.send("bob", "too late")
            await eventually(lambda: _usage(server, "bob", 1))
            clock[0] += 61  # a minute later: past its time
            assert await server.mail.mailbox.expire(clock[0]) == 1  # what the sweep does
            async with p2pchat.Peer("bob", server=where, identity=identity) as bob:
                collected = asyncio.create_task(bob.next_message())
                done, _ = await asyncio.wait({collected}, timeout=0.5)
                assert not done  # nothing came
                collected.cancel()
            assert await shipped(alice, "bob") == [False]  # kept for the next talk


async def test_mail_signed_by_a_changed_key_waits_until_the_key_is_trusted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # alice's name was bound to a key bob remembers; she lost it, and the operator let her
    # register again: bob's peer must not accept her new key silently, nor drop her mail.
    async with p2pchat.SignallingServer(port=0) as server:
        where = ("127.0.0.1", server.port)
        bob_key, old_key = p2pchat.Identity.generate(), p2pchat.Identity.generate()
        kept = p2pchat.MemoryMessageStore()  # bob's store, across his sessions

        def bob_peer() -> p2pchat.Peer:
            return p2pchat.Peer("bob", server=where, identity=bob_key, store=kept)

        async with bob_peer() as bob:
            await bob.trust_key("alice", old_key.key)
        new_key = p2pchat.Identity.generate()
        async with p2pchat.Peer("alice", server=where, identity=new_key) as alice:
            await alice.send("bob", "it is really me, with a new key")
        with caplog.at_level(logging.WARNING, logger="p2pchat"):
            async with bob_peer() as bob:
                await eventually(lambda: "keeps mail from alice unopened" in caplog.text)
                assert await bob.history("alice") == []
                assert (await server.mail.mailbox.usage("bob"))[0] == 1  # kept
                await bob.trust_key("alice", new_key.key)  # bob checked her fingerprint
        async with bob_peer() as bob:
            message = await asyncio.wait_for(bob.next_message(), 5)
            assert message.body == "it is really me, with a new key"


# One bad item fails alone (issue 18, finding 1).


async def deposit_letter(sender: p2pchat.Peer, recipient: str, message: p2pchat.Message) -> None:
    """Seal ``message`` as ``sender`` signs it, whatever it holds (a hostile sender's
    letter: a NaN time, say), and leave it for ``recipient``."""
    link = sender._link()
    key = await link.request(Whois(id=link.next_id(), user=recipient), Key)
    assert key.mailbox_key is not None
    sealed = seal(sender.identity, message, key.mailbox_key)
    await link.request(
        Deposit(id=link.next_id(), recipient=recipient, item=message.id, sealed=sealed), Ok
    )


def letter(body: str, *, ts: float, sender: str = "alice") -> p2pchat.Message:
    return msgspec.structs.replace(p2pchat.Message.new(sender, "bob", body), sent_at=ts)


@pytest.mark.parametrize("ts", [float("nan"), float("inf"), -1.0, 1e300])
async def test_a_letter_with_an_impossible_time_is_refused_alone_and_not_sent_again(
    server: Server, ts: float, caplog: pytest.LogCaptureFixture
) -> None:
    await meet(server)
    async with server.peer("carol") as carol:
        await carol.send("bob", "from carol, before")
    async with server.peer("alice") as alice:
        await deposit_letter(alice, "bob", letter("poison", ts=ts))
        await alice.send("bob", "from alice, after")
    with caplog.at_level(logging.WARNING, logger="p2pchat"):
        async with server.peer("bob") as bob:
            got = {(await asyncio.wait_for(bob.next_message(), 5)).body for _ in range(2)}
            assert got == {"from carol, before", "from alice, after"}
            await eventually(lambda: "refused" in caplog.text)
            assert server.server is not None
            # Settled: it does not come back at every login (no receipt: not stored).
            await eventually(lambda: _usage(server.server, "bob", 0))
            assert [m.body for m in await bob.history("alice")] == ["from alice, after"]
    async with server.peer("alice") as alice:  # the good one came back shipped
        await eventually(lambda: all_shipped(alice, "bob"))


class FailingStore(p2pchat.SqliteMessageStore):
    """A store whose disk refuses any write holding a message with ``body``."""

    def __init__(self, path: Path, body: str) -> None:
        super().__init__(path)
        self.body = body

    async def add_many(
        self, messages: Sequence[p2pchat.Message], *, unread: bool = False
    ) -> list[p2pchat.Message]:
        if any(m.body == self.body for m in messages):
            raise p2pchat.StoreError("disk I/O error")
        return await super().add_many(messages, unread=unread)


async def test_a_store_write_that_fails_for_one_item_does_not_stop_the_others(
    server: Server,
) -> None:
    await meet(server)
    async with server.peer("alice") as alice:
        for body in ("one", "cannot be written", "three"):
            await alice.send("bob", body)
    bob = p2pchat.Peer(
        "bob",
        server=("127.0.0.1", server.port),
        store=FailingStore(server.directory / "bob.sqlite3", "cannot be written"),
        reconnect_delay=(0.05, 0.3),
    )
    async with bob:
        got = [(await asyncio.wait_for(bob.next_message(), 5)).body for _ in range(2)]
        assert got == ["one", "three"]
        assert server.server is not None  # the one not stored waits on the server
        await eventually(lambda: _usage(server.server, "bob", 1))
    async with server.peer("bob") as bob:  # the disk is fine again: it arrives
        assert (await asyncio.wait_for(bob.next_message(), 5)).body == "cannot be written"
    async with server.peer("alice") as alice:
        await eventually(lambda: all_shipped(alice, "bob"))


@pytest.mark.parametrize(
    "field",
    ["sender", "recipient", "id", "ts", "signature", "body-type", "ids"],
)
def test_letters_and_receipts_with_a_bad_field_do_not_open(field: str) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    good = {
        "sender": "alice",
        "recipient": "bob",
        "id": "m1",
        "ts": 1.0,
        "body": "hi",
        "signature": "AAAA",
    }
    bad = {
        "sender": ("sender", "Bad Name!"),
        "recipient": ("recipient", "x" * 40),
        "id": ("id", "has space"),
        "ts": ("ts", float("nan")),
        "signature": ("signature", "not base64!"),
        "body-type": ("body", 12),
        "ids": ("ids", ["ok", "bad id"]),
    }[field]
    if field == "ids":
        signed = {"recipient": "bob", "sender": "alice", "ids": bad[1], "signature": "AAAA"}
        with pytest.raises(p2pchat.SealError, match="is not one"):
            open_receipt(
                "alice",
                recipient="bob",
                sealed=b64encode(msgspec.msgpack.encode(signed)),
                recipient_key=bob.key,
            )
        return
    raw = {**good, bad[0]: bad[1]}
    public = X25519PublicKey.from_public_bytes(b64decode(bob.mailbox_key))
    info = _fields(_SEAL_INFO, "bob", "m1")
    sealed = b64encode(SUITE.encrypt(msgspec.msgpack.encode(raw), public, info=info))
    with pytest.raises(p2pchat.SealError, match="does not open"):
        open_seal(bob, "bob", item="m1", sender="alice", sealed=sealed, sender_key=alice.key)


# Names checked before anything is stored or sent (issue 18, finding 10).


async def test_an_invalid_name_is_refused_before_anything_is_stored_or_sent(
    server: Server,
) -> None:
    async with server.peer("alice") as alice:
        states: list[str] = []
        alice.on_state = states.append
        with pytest.raises(p2pchat.InvalidName):
            await alice.send("Bad Name!", "hello")
        with pytest.raises(p2pchat.InvalidName):
            await alice.invite("bad name!")
        with pytest.raises(p2pchat.InvalidName):
            await alice.whois("bad name!")
        assert await alice.correspondents() == []
        assert await alice.online() == ["alice"]  # the session never dropped
        assert states == []


async def test_a_stored_item_the_server_refuses_is_set_aside_not_retried(
    server: Server,
) -> None:
    await meet(server)
    store = p2pchat.SqliteMessageStore(server.directory / "alice.sqlite3")
    await store.start()
    # As an older p2pchat stored them: to a name outside the rule, and to herself (the
    # server refuses to fill one's own mailbox). Then one that can go.
    await store.add(p2pchat.Message.new("alice", "Bad Name!", "never sent"))
    await store.add(p2pchat.Message.new("alice", "alice", "refused by the server"))
    await store.add(p2pchat.Message.new("alice", "bob", "goes"))
    await store.close()
    for _ in range(2):  # and again after a restart
        async with server.peer("alice") as alice:
            states: list[str] = []
            alice.on_state = states.append
            assert server.server is not None
            await eventually(lambda: _usage(server.server, "bob", 1))
            assert await alice.online() == ["alice"]
            assert states == []  # no session was dropped on the way
    async with server.peer("bob") as bob:
        assert (await asyncio.wait_for(bob.next_message(), 5)).body == "goes"


# Many sends at once to someone away (issue 18, finding 15).


async def test_many_sends_at_once_to_someone_away_are_all_stored(server: Server) -> None:
    await meet(server)
    async with server.peer("alice") as alice:
        bodies = [f"m{n:03d}" for n in range(200)]
        sent = await asyncio.gather(*(alice.send("bob", body) for body in bodies))
        assert sorted(m.body for m in sent) == bodies
        assert len(await alice.history("bob")) == 200
        with pytest.raises(p2pchat.UnknownUser):  # what the caller got wrong still raises
            await alice.send("nobody", "hello?")
        assert server.server is not None
        await eventually(lambda: _none_undeposited(alice), timeout=30)
        items, _ = await server.server.mail.mailbox.usage("bob")
        assert items < 200  # sealed a batch to a letter: the deposit rate counts letters
    async with server.peer("bob") as bob:
        got = [(await asyncio.wait_for(bob.next_message(), 5)).body for _ in bodies]
        assert sorted(got) == bodies
