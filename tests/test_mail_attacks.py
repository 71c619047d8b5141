"""Attacks on the mailbox (a hostile stranger who knows only the victim's name)."""

from __future__ import annotations

import asyncio
import itertools

import p2pchat
from p2pchat.protocol import Deposit, Error, Ok
from p2pchat.shared.identity import Identity

from .conftest import RawClient, eventually

_ids = itertools.count()


async def _fill_mailbox_of(port: int, owner: str, puppets: int = 10, each: int = 100) -> None:
    """``puppets`` throwaway accounts fill ``owner``'s mailbox (1000 items by default),
    within every per-sender bound (share 250, deposit burst 100, requests burst 200)."""
    clients = []
    try:
        for n in range(puppets):
            client = await RawClient.open(port)
            clients.append(client)
            await client.login(f"puppet{n}", 1)

        async def fill(client: RawClient) -> None:
            batch = [
                Deposit(id=f"d{i}", recipient=owner, item=f"p{next(_ids)}", sealed="A" * 10)
                for i in range(each)
            ]
            await client.connection.send_many(batch)
            for _ in range(each):
                answer = await client.recv_until((Ok, Error))
                assert isinstance(answer, Ok), answer

        await asyncio.gather(*(fill(c) for c in clients))
    finally:
        for client in clients:
            await client.close()


async def test_a_sender_whose_receipts_bounce_blocks_all_mail_of_the_victim(
    server: p2pchat.SignallingServer,
) -> None:
    """mallory writes bob three long letters while bob is away, then lets his own mailbox
    be full (ten throwaway accounts fill it; or he simply stays away with a full box).
    bob stores mallory's letters, but his receipts to mallory are refused (mailbox_full),
    so he does not settle them; every `collect` then answers the same first page, and
    alice's letter behind it (and all mail pushed later) never reaches bob."""
    where = ("127.0.0.1", server.port)
    async with p2pchat.Peer("bob", server=where) as bob:
        bob_identity = bob.identity
    async with p2pchat.Peer("mallory", server=where) as mallory:
        for n in range(3):
            await mallory.send("bob", f"{n} " + "m" * 15_000)

        async def deposited() -> bool:
            return (await server.mail.mailbox.usage("bob"))[0] == 3

        await eventually(deposited, timeout=10)
    await _fill_mailbox_of(server.port, "mallory")
    async with p2pchat.Peer("alice", server=where) as alice:
        await alice.send("bob", "hello bob, it is alice")

        async def alice_deposited() -> bool:
            return (await server.mail.mailbox.usage("bob"))[0] == 4

        await eventually(alice_deposited, timeout=10)
    async with p2pchat.Peer("bob", server=where, identity=bob_identity) as bob:
        senders = []
        async with asyncio.timeout(15):
            while "alice" not in senders:
                senders.append((await bob.next_message()).sender)
        assert senders.count("mallory") == 3


async def test_a_letter_nested_too_deeply_kills_the_victims_mail_for_good(
    server: p2pchat.SignallingServer,
) -> None:
    """A stranger who knows only bob's name seals to bob's (public) mailbox key a letter
    whose MessagePack holds an extra field nested 1000 deep. Opening it raises
    RecursionError, which `open_seal` does not turn into a SealError: it escapes
    `_receive` and kills the postbox's worker. The item is never settled, so it is first
    in every collect: no mail reaches bob again, at this login or any later one."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    from p2pchat.protocol import Key, Whois
    from p2pchat.shared.identity import b64decode, b64encode
    from p2pchat.shared.seal import _SEAL_INFO, SUITE, _fields

    where = ("127.0.0.1", server.port)
    async with p2pchat.Peer("bob", server=where) as bob:
        bob_identity = bob.identity
    mallory = await RawClient.open(server.port)
    try:
        await mallory.login("mallory", 1, Identity.generate())
        await mallory.send(Whois(id="w", user="bob"))
        key = await mallory.recv_until(Key)
        assert key.mailbox_key is not None
        public = X25519PublicKey.from_public_bytes(b64decode(key.mailbox_key))
        item = "m-1"
        plain = b"\x81\xa1x" + b"\x91" * 5000 + b"\xc0"  # {"x": [[[[...nil]]]]}
        sealed = SUITE.encrypt(plain, public, info=_fields(_SEAL_INFO, "bob", item))
        await mallory.send(Deposit(id="d", recipient="bob", item=item, sealed=b64encode(sealed)))
        assert isinstance(await mallory.recv_until((Ok, Error)), Ok)
    finally:
        await mallory.close()
    async with p2pchat.Peer("alice", server=where) as alice:
        await alice.send("bob", "hello bob, it is alice")

        async def deposited() -> bool:
            return (await server.mail.mailbox.usage("bob"))[0] == 2

        await eventually(deposited, timeout=10)
    async with p2pchat.Peer("bob", server=where, identity=bob_identity) as bob:
        message = await asyncio.wait_for(bob.next_message(), 10)
        assert (message.sender, message.body) == ("alice", "hello bob, it is alice")


async def test_more_mail_told_during_the_login_collect_is_never_collected() -> None:
    """While bob's peer is still taking in its login's `collect` (here: its store is slow),
    a deposit too big to push makes the server tell bob `mail{items: [], more: true}` and
    push no more until he collects. The postbox, not done collecting, keeps only the
    (empty) items of that push and drops `more`: nothing collects again, and alice's
    letter (and all mail after it) waits until bob's next login."""
    from .conftest import GatedMessageStore

    async with p2pchat.SignallingServer(port=0, outbox_size=64) as server:  # 16 KiB
        where = ("127.0.0.1", server.port)
        async with p2pchat.Peer("bob", server=where) as bob:
            bob_identity = bob.identity
        async with p2pchat.Peer("carol", server=where) as carol:
            await carol.send("bob", "an old letter from carol")

            async def carols() -> bool:
                return (await server.mail.mailbox.usage("bob"))[0] == 1

            await eventually(carols, timeout=10)
        store = GatedMessageStore("add_many")
        bob = p2pchat.Peer("bob", server=where, identity=bob_identity, store=store)
        told_more = asyncio.Event()
        pushed = bob._postbox.pushed

        def spy(mail: p2pchat.protocol.Mail) -> None:
            if mail.more:
                told_more.set()
            pushed(mail)

        bob._postbox.pushed = spy  # type: ignore[method-assign]
        async with p2pchat.Peer("alice", server=where) as alice:
            await bob.start()
            try:
                await asyncio.wait_for(store.entered.wait(), 10)  # carol's letter, being stored
                await alice.send("bob", "hello bob, " + "x" * 10_000)  # over half the outbox
                await asyncio.wait_for(told_more.wait(), 10)
                store.gate.set()
                bodies: set[str] = set()
                async with asyncio.timeout(10):
                    while len(bodies) < 2:
                        bodies.add((await bob.next_message()).sender)
            finally:
                await bob.close()
