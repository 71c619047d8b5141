"""What lets one node hold many peers, and what it must not cost: a returning user who
publishes the mailbox key and signature stored already is not checked again (every other
is, and every login proves its key); what a node keeps for ``list`` costs the same with
many online as with few; a server connection still waits for room to write and wakes
when it is made."""

from __future__ import annotations

import asyncio
import secrets
import socket
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import p2pchat
from p2pchat.cluster.base import SortedNames
from p2pchat.protocol import (
    PROTOCOL_VERSION,
    Auth,
    Challenge,
    Error,
    Hello,
    ListUsers,
    Users,
    Welcome,
    encode,
)
from p2pchat.shared.identity import (
    Identity,
    b64encode,
    login_challenge_payload,
    mailbox_key_payload,
)

from .conftest import RawClient, eventually

RawFactory = Callable[[int], Awaitable[RawClient]]


async def log_in(
    raw_clients: RawFactory, port: int, identity: Identity, mailbox: tuple[str, str]
) -> Welcome | Error:
    """Log in as mallory with ``identity``, publishing ``mailbox`` (key, signature)."""
    client = await raw_clients(port)
    await client.send(
        Hello(
            version=PROTOCOL_VERSION,
            name="mallory",
            certificate=b64encode(identity.certificate),
            mailbox_key=mailbox[0],
            mailbox_sig=mailbox[1],
        )
    )
    challenge = await client.recv()
    assert isinstance(challenge, Challenge)
    payload = login_challenge_payload(challenge.nonce, "mallory", identity.key)
    await client.send(Auth(signature=identity.sign(payload)))
    answer = await client.recv()
    assert isinstance(answer, Welcome | Error), answer
    await client.close()
    return answer


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_returning_users_changed_mailbox_signature_is_checked_again(
    raw_clients: RawFactory, tmp_path: Path, kind: str
) -> None:
    mallory = Identity.generate()
    published = (mallory.mailbox_key, mallory.mailbox_signature)
    fresh = b64encode(secrets.token_bytes(32))
    signed = (fresh, mallory.sign(mailbox_key_payload(fresh)))
    store = p2pchat.SqliteUserStore(tmp_path / "users.sqlite3") if kind == "sqlite" else None
    async with p2pchat.SignallingServer(port=0, store=store) as server:

        async def stored() -> tuple[str | None, str | None]:
            user = await server.store.get("mallory")
            assert user is not None
            return user.mailbox_key, user.mailbox_sig

        assert isinstance(await log_in(raw_clients, server.port, mallory, published), Welcome)
        # Back with the very key and signature published: welcome, nothing written.
        assert isinstance(await log_in(raw_clients, server.port, mallory, published), Welcome)
        assert await stored() == published
        # The same key with another signature (of something else): checked, refused.
        forged = (published[0], mallory.sign(b"not the mailbox key"))
        refused = await log_in(raw_clients, server.port, mallory, forged)
        assert isinstance(refused, Error)
        assert refused.code == "authentication_failed"
        assert "mailbox key" in refused.reason
        assert await stored() == published
        # Another key with the signature of the published one: refused too.
        swapped = (fresh, published[1])
        assert isinstance(await log_in(raw_clients, server.port, mallory, swapped), Error)
        assert await stored() == published
        # Another key, signed: published anew.
        assert isinstance(await log_in(raw_clients, server.port, mallory, signed), Welcome)
        assert await stored() == signed


async def test_a_login_still_proves_its_key_when_the_mailbox_is_known(
    raw_clients: RawFactory,
) -> None:
    """Skipping the mailbox check never skips the proof: another key, publishing the
    mailbox key and signature stored for mallory, is refused."""
    mallory, impostor = Identity.generate(), Identity.generate()
    published = (mallory.mailbox_key, mallory.mailbox_signature)
    async with p2pchat.SignallingServer(port=0) as server:
        assert isinstance(await log_in(raw_clients, server.port, mallory, published), Welcome)
        refused = await log_in(raw_clients, server.port, impostor, published)
        assert isinstance(refused, Error)
        assert refused.code == "authentication_failed"
        assert "registered to another key" in refused.reason


async def test_a_name_from_before_identities_is_bound_only_by_a_login_that_is_welcomed(
    tmp_path: Path, raw_clients: RawFactory
) -> None:
    # A user row with no key yet (users schema 1) is bound to the first key that logs in,
    # as a new name is: a login refused for its mailbox key leaves it unbound.
    path = tmp_path / "users.sqlite3"
    store = p2pchat.SqliteUserStore(path)
    await store.start()
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO users (name, first_seen, last_seen) VALUES ('mallory', 1, 1)")
    owner = Identity.generate()
    forged = (b64encode(secrets.token_bytes(32)), owner.sign(b"not the mailbox key"))
    async with p2pchat.SignallingServer(port=0, store=p2pchat.SqliteUserStore(path)) as server:
        refused = await log_in(raw_clients, server.port, owner, forged)
        assert isinstance(refused, Error)
        assert "mailbox key" in refused.reason
        user = await server.store.get("mallory")
        assert user is not None
        assert user.key is None  # no trace of the refused login
        fresh = b64encode(secrets.token_bytes(32))
        mailbox = (fresh, owner.sign(mailbox_key_payload(fresh)))
        assert isinstance(await log_in(raw_clients, server.port, owner, mailbox), Welcome)
        user = await server.store.get("mallory")
        assert user is not None
        assert (user.key, user.mailbox_key) == (owner.key, fresh)


@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 60)), max_size=400),
    st.integers(0, 70),
)
def test_sorted_names_keep_order_through_adds_and_removes(
    steps: list[tuple[bool, int]], limit: int
) -> None:
    names, expected = SortedNames(chunk=2), set[str]()
    for adding, number in steps:
        name = f"u{number:02d}"
        if adding and name not in expected:
            names.add(name)
            expected.add(name)
        elif not adding:
            names.discard(name)
            expected.discard(name)
        assert len(names) == len(expected)
    assert names.first(limit) == sorted(expected)[:limit]
    assert names.first(len(expected) + 1) == sorted(expected)


async def test_answers_held_for_a_peer_that_stopped_reading_flow_once_it_reads_again(
    raw_clients: RawFactory,
) -> None:
    """The server's reader of a peer waits for room while the peer reads nothing, and
    goes on once it reads: every answer comes, in order."""
    async with p2pchat.SignallingServer(port=0, outbox_size=4, rate_limit=None) as server:
        for n in range(80):  # long names: each list answer is large (3 KB)
            filler = await raw_clients(server.port)
            await filler.login(f"{n:02d}" + "x" * 30, 1)
        slow = await raw_clients(server.port)
        sock = slow.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await slow.login("slow", 1)
        transport = slow.writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()
        slow.writer.write(b"".join(encode(ListUsers(id=str(n))) for n in range(2000)))
        session = server.sessions.get("slow")
        assert session is not None
        # Beyond the transport's high-water mark (64 KiB): writing is paused, the reader waits.
        await eventually(lambda: session.connection.pending > 65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)  # room, at once
        transport.resume_reading()
        answers = [await slow.recv() for _ in range(2000)]
        assert [a.id for a in answers if isinstance(a, Users)] == [str(n) for n in range(2000)]
        assert "slow" in server.online_users
