"""What one user can take of another's mail: the server's bounds against a hostile sender.

Regressions for issue 18 (server side): a sender's share of a mailbox, receipts paced like
deposits, rates kept by user beyond the session (and across nodes), and mail pushes that
never disconnect a reader that keeps reading. Each test failed before its fix.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import pytest

import p2pchat
from p2pchat.protocol import (
    PROTOCOL_VERSION,
    Auth,
    Challenge,
    Collect,
    Deposit,
    Error,
    Hello,
    Mail,
    Ok,
    Ping,
    Pong,
    Receipt,
    Settle,
    Welcome,
    WireMessage,
)
from p2pchat.serving.rates import LocalRates
from p2pchat.shared.identity import (
    Identity,
    b64encode,
    login_challenge_payload,
    mailbox_key_payload,
)

from .conftest import POLL_INTERVAL, NodeFactory, RawClient, eventually

RawFactory = Callable[[int], Awaitable[RawClient]]

_ids = itertools.count()


class Writer:
    """A hand-driven user who deposits (or sends receipts) as the test says."""

    def __init__(self, client: RawClient, name: str, identity: Identity) -> None:
        self.client = client
        self.name = name
        self.identity = identity

    @classmethod
    async def login(
        cls, raw_clients: RawFactory, port: int, name: str, identity: Identity | None = None
    ) -> Writer:
        client = await raw_clients(port)
        identity = identity or Identity.generate()
        await client.login(name, 1, identity)
        return cls(client, name, identity)

    async def again(self, raw_clients: RawFactory, port: int) -> Writer:
        """Log out, and in again (on the server at ``port``) with the same key: once the
        logout is through, which another connection cannot know before (name_taken)."""
        await self.client.close()
        deadline = time.monotonic() + 10
        while True:
            client = await raw_clients(port)
            try:
                await client.login(self.name, 1, self.identity)
            except AssertionError:
                await client.close()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(POLL_INTERVAL)
            else:
                return Writer(client, self.name, self.identity)

    async def deposit(self, recipient: str, size: int = 10) -> WireMessage:
        n = next(_ids)
        await self.client.send(
            Deposit(id=f"d{n}", recipient=recipient, item=f"i{n}", sealed="A" * size)
        )
        answer: WireMessage = await self.client.recv_until((Ok, Error))
        return answer

    async def receipt(self, recipient: str) -> WireMessage:
        n = next(_ids)
        await self.client.send(
            Receipt(id=f"r{n}", recipient=recipient, item=f"r-{n}", sealed="B" * 100)
        )
        answer: WireMessage = await self.client.recv_until((Ok, Error))
        return answer


async def known(raw_clients: RawFactory, port: int, *names: str) -> None:
    """These users have logged in once (so that mail can be left for them)."""
    for name in names:
        client = await raw_clients(port)
        await client.login(name, 1)
        await client.close()


def codes(answers: list[WireMessage]) -> list[str]:
    return ["ok" if isinstance(a, Ok) else a.code if isinstance(a, Error) else "?" for a in answers]


# Finding 3: one sender filled a user's whole mailbox.


async def test_one_sender_cannot_fill_a_mailbox_for_everyone_else(
    raw_clients: RawFactory,
) -> None:
    """With the default bounds, within the deposit rate: mallory gets her share (2 MiB of
    bob's 8 MiB), then mailbox_full; carol can still write to bob."""
    async with p2pchat.SignallingServer(port=0) as server:
        await known(raw_clients, server.port, "bob")
        mallory = await Writer.login(raw_clients, server.port, "mallory")
        carol = await Writer.login(raw_clients, server.port, "carol")
        answers = [await mallory.deposit("bob", 32_000) for _ in range(70)]
        assert codes(answers) == ["ok"] * 65 + ["mailbox_full"] * 5  # 65 x 32,000 < 2 MiB
        assert isinstance(answers[-1], Error)
        assert "mallory's share of bob's mailbox holds 2080000 bytes" in answers[-1].reason
        assert isinstance(await carol.deposit("bob", 32_000), Ok)


async def test_a_senders_share_is_counted_in_items_too(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(
        port=0, mailbox_items=10, mailbox_items_per_sender=3
    ) as server:
        await known(raw_clients, server.port, "bob")
        mallory = await Writer.login(raw_clients, server.port, "mallory")
        carol = await Writer.login(raw_clients, server.port, "carol")
        assert codes([await mallory.deposit("bob") for _ in range(4)]) == ["ok"] * 3 + [
            "mailbox_full"
        ]
        assert codes([await carol.deposit("bob") for _ in range(3)]) == ["ok"] * 3
        assert codes([await mallory.receipt("bob")]) == ["mailbox_full"]  # receipts too


async def test_a_senders_share_holds_in_redis_across_nodes(
    node: NodeFactory, raw_clients: RawFactory
) -> None:
    a, b = await node("A", mailbox_items_per_sender=2), await node("B", mailbox_items_per_sender=2)
    await known(raw_clients, a.port, "bob")
    on_a = await Writer.login(raw_clients, a.port, "mallory")
    assert codes([await on_a.deposit("bob") for _ in range(2)]) == ["ok", "ok"]
    on_b = await on_a.again(raw_clients, b.port)
    assert codes([await on_b.deposit("bob")]) == ["mailbox_full"]
    carol = await Writer.login(raw_clients, b.port, "carol")
    assert codes([await carol.deposit("bob")]) == ["ok"]


# Finding 4: receipts escaped the deposit rate.


async def test_receipts_are_paced_like_deposits(raw_clients: RawFactory) -> None:
    """A burst of 150 receipts: the first 100 are kept (receipt_rate 10/s, burst 100),
    the others refused; deposits keep their own allowance."""
    async with p2pchat.SignallingServer(port=0, mailbox_items_per_sender=None) as server:
        await known(raw_clients, server.port, "bob")
        mallory = await Writer.login(raw_clients, server.port, "mallory")
        started = time.monotonic()
        answers = codes([await mallory.receipt("bob") for _ in range(150)])
        took = time.monotonic() - started
        assert answers[:100] == ["ok"] * 100
        assert set(answers) == {"ok", "rate_limited"}
        # Beyond the burst, only the tokens that came back meanwhile (10/s).
        assert answers.count("ok") <= 100 + 10 * took + 1
        assert (await server.mail.mailbox.usage("bob"))[0] == answers.count("ok")
        assert codes([await mallory.deposit("bob")]) == ["ok"]


# Finding 5: the deposit rate started afresh at each login.


async def test_the_deposit_rate_outlives_the_session(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(port=0, deposit_rate=(0.01, 5)) as server:
        await known(raw_clients, server.port, "bob")
        mallory = await Writer.login(raw_clients, server.port, "mallory")
        assert codes([await mallory.deposit("bob") for _ in range(6)]) == ["ok"] * 5 + [
            "rate_limited"
        ]
        mallory = await mallory.again(raw_clients, server.port)  # a quick re-login
        assert codes([await mallory.deposit("bob")]) == ["rate_limited"]
        carol = await Writer.login(raw_clients, server.port, "carol")  # per user
        assert codes([await carol.deposit("bob")]) == ["ok"]


async def test_the_receipt_rate_outlives_the_session(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(port=0, receipt_rate=(0.01, 2)) as server:
        await known(raw_clients, server.port, "bob")
        mallory = await Writer.login(raw_clients, server.port, "mallory")
        assert codes([await mallory.receipt("bob") for _ in range(3)]) == [
            "ok",
            "ok",
            "rate_limited",
        ]
        mallory = await mallory.again(raw_clients, server.port)
        assert codes([await mallory.receipt("bob")]) == ["rate_limited"]


async def test_the_deposit_rate_holds_across_nodes(
    node: NodeFactory, raw_clients: RawFactory
) -> None:
    a, b = await node("A", deposit_rate=(0.01, 3)), await node("B", deposit_rate=(0.01, 3))
    await known(raw_clients, a.port, "bob")
    mallory = await Writer.login(raw_clients, a.port, "mallory")
    assert codes([await mallory.deposit("bob") for _ in range(4)]) == ["ok"] * 3 + ["rate_limited"]
    mallory = await mallory.again(raw_clients, a.port)  # the same node
    assert codes([await mallory.deposit("bob")]) == ["rate_limited"]
    mallory = await mallory.again(raw_clients, b.port)  # another node
    assert codes([await mallory.deposit("bob")]) == ["rate_limited"]
    carol = await Writer.login(raw_clients, b.port, "carol")
    assert codes([await carol.deposit("bob")]) == ["ok"]


async def test_rates_forget_only_what_is_full_again() -> None:
    now = [0.0]
    rates = LocalRates(clock=lambda: now[0])
    for n in range(5000):
        assert await rates.take("deposit", f"u{n}", (1.0, 2))
    assert len(rates) == 5000  # none is full again yet: none is forgotten
    assert await rates.take("deposit", "u0", (1.0, 2))
    assert not await rates.take("deposit", "u0", (1.0, 2))  # u0 is still remembered
    # Pruned at 4096 (nothing was full), next at twice that: then the full ones go.
    now[0] = 10.0  # every bucket is full again
    for n in range(8192 - 5000 + 1):
        assert await rates.take("deposit", f"v{n}", (1.0, 2))
    assert len(rates) == 8192 - 5000 + 1  # the v's only: each u was full again


# Finding 2: a burst of mail disconnected a reader that kept reading.


async def _pushed_or_collected(bob: RawClient, expected: set[str]) -> set[str]:
    """Read bob's pushes until every expected item came, pushed or (after a notice that
    more waits) collected, page by page, as a peer does (each page settled before the
    next); fails if the server drops bob on the way."""
    got: set[str] = set()
    collecting = False
    while got < expected:
        message = await bob.recv(timeout=10)
        if not isinstance(message, Mail):
            continue
        got.update(item.item for item in message.items)
        if message.id is not None:  # a page collected
            if message.items:
                await bob.send(Settle(id="s", items=[item.item for item in message.items]))
            collecting = message.more
            if collecting:
                await bob.send(Collect(id="c"))
        elif message.more and not collecting:  # more waits: collect it
            collecting = True
            await bob.send(Collect(id="c"))
    return got


async def test_a_burst_of_mail_never_drops_a_reader_that_keeps_reading(
    raw_clients: RawFactory,
) -> None:
    """16 items of 32 KiB (512 KiB, twice the outbox) from 8 senders arrive at once for
    bob, who is online and reads; he stays connected and gets them all, pushed or
    collected."""
    senders = 8
    async with p2pchat.SignallingServer(port=0) as server:
        bob = await raw_clients(server.port)
        await bob.login("bob", 1)
        writers = [await Writer.login(raw_clients, server.port, f"w{n}") for n in range(senders)]
        items = {f"x{n}" for n in range(16)}
        batches: list[list[WireMessage | bytes]] = [[] for _ in writers]
        for n in range(16):
            batches[n % senders].append(
                Deposit(id=f"d{n}", recipient="bob", item=f"x{n}", sealed="A" * 32_000)
            )
        await asyncio.gather(
            *(w.client.connection.send_many(b) for w, b in zip(writers, batches, strict=True))
        )
        got = await _pushed_or_collected(bob, items)
        assert got == items
        await bob.send(Ping(id="still here"))
        assert isinstance(await bob.recv_until(Pong), Pong)
        assert "bob" in server.online_users


async def test_a_peer_told_that_more_mail_waits_collects_it() -> None:
    """Mail too big for bob's outbox is not pushed: bob is told that more waits, and his
    peer collects it then, without a new login."""
    async with p2pchat.SignallingServer(port=0, outbox_size=64) as server:  # 16 KiB
        where = ("127.0.0.1", server.port)
        async with (
            p2pchat.Peer("bob", server=where) as bob,
            p2pchat.Peer("alice", server=where) as alice,
        ):
            bodies = [f"{n} " + "x" * 10_000 for n in range(3)]  # over half the outbox
            for body in bodies:
                await alice.send("bob", body)
            got = [(await asyncio.wait_for(bob.next_message(), 10)).body for _ in bodies]
            assert got == bodies


# Finding 12: docs/protocol.md said the server checks a mailbox key's signature at login.


@pytest.mark.parametrize("bad", ["someone else's", "not a key"])
async def test_a_login_with_a_mailbox_key_its_key_did_not_sign_is_refused(
    raw_clients: RawFactory, bad: str
) -> None:
    mallory, other = Identity.generate(), Identity.generate()
    if bad == "not a key":  # signed, but 16 bytes
        mailbox_key = b64encode(b"\x01" * 16)
        signature = mallory.sign(mailbox_key_payload(mailbox_key))
    else:
        mailbox_key, signature = other.mailbox_key, other.mailbox_signature
    async with p2pchat.SignallingServer(port=0) as server:
        client = await raw_clients(server.port)
        await client.send(
            Hello(
                version=PROTOCOL_VERSION,
                name="mallory",
                certificate=b64encode(mallory.certificate),
                mailbox_key=mailbox_key,
                mailbox_sig=signature,
            )
        )
        challenge = await client.recv()
        assert isinstance(challenge, Challenge)
        payload = login_challenge_payload(challenge.nonce, "mallory", mallory.key)
        await client.send(Auth(signature=mallory.sign(payload)))
        refused = await client.recv()
        assert isinstance(refused, Error)
        assert refused.code == "authentication_failed"
        assert "mailbox key" in refused.reason
        assert await server.store.get("mallory") is None  # nothing bound, nothing kept
        # Its own, signed by it: welcome.
        good = await raw_clients(server.port)
        await good.send(
            Hello(
                version=PROTOCOL_VERSION,
                name="mallory",
                certificate=b64encode(mallory.certificate),
                mailbox_key=mallory.mailbox_key,
                mailbox_sig=mallory.mailbox_signature,
            )
        )
        challenge = await good.recv()
        assert isinstance(challenge, Challenge)
        payload = login_challenge_payload(challenge.nonce, "mallory", mallory.key)
        await good.send(Auth(signature=mallory.sign(payload)))
        assert isinstance(await good.recv(), Welcome)


async def test_a_peer_paces_its_receipts_and_every_sender_hears_back() -> None:
    """Receipts are paced now: bob, collecting mail from three senders at a receipt rate
    of one at once, waits for his turn and sends every receipt."""
    async with p2pchat.SignallingServer(port=0, receipt_rate=(2.0, 1)) as server:
        where = ("127.0.0.1", server.port)
        async with p2pchat.Peer("bob", server=where) as bob:
            bob_identity = bob.identity
        senders = [p2pchat.Peer(name, server=where) for name in ("alice", "carol", "dave")]
        for sender in senders:
            await sender.start()
        try:
            for sender in senders:
                await sender.send("bob", f"from {sender.name}")
            async with p2pchat.Peer("bob", server=where, identity=bob_identity) as bob:
                for _ in senders:
                    await asyncio.wait_for(bob.next_message(), 10)

                async def all_heard() -> bool:
                    for sender in senders:
                        if [m.shipped for m in await sender.history("bob")] != [True]:
                            return False
                    return True

                await eventually(all_heard, timeout=10)
        finally:
            for sender in senders:
                await sender.close()
