"""What only the Redis stores have to prove: several processes (here: several clients)
share them atomically, garbage in Redis is survived, a cancelled call ends cancelled,
and rediss:// (TLS) works."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import p2pchat
from p2pchat.cluster.redis_client import RedisClient, redacted
from p2pchat.cluster.redis_store import RedisMailbox, RedisUserStore

from .conftest import require, server_certificate
from .redisserver import RedisServer, redis_available


@pytest.fixture
async def client(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisClient]:
    client = RedisClient(redis_url, prefix=redis_prefix)
    await client.start()
    yield client
    await client.close()


async def test_first_logins_racing_on_two_nodes_bind_one_key(
    redis_url: str, redis_prefix: str
) -> None:
    nodes = [RedisUserStore(redis_url, prefix=redis_prefix) for _ in range(2)]  # two clients
    for node in nodes:
        await node.start()
    try:
        pairs = zip(nodes * 10, ["Alice", "alice"] * 10, strict=True)
        answers = await asyncio.gather(
            *(node.bind_key(name, f"key-{n}", now=1.0) for n, (node, name) in enumerate(pairs))
        )
        bindings = [b for b in answers if b is not None]
        assert len(bindings) == len(answers)
        assert len({b.key for b in bindings}) == 1  # one key won, everyone sees it
        assert sum(b.created for b in bindings) == 1
        assert {b.name for b in bindings} == {bindings[0].name}
    finally:
        for node in nodes:
            await node.close()


async def test_garbage_in_redis_is_logged_and_skipped(
    client: RedisClient, caplog: pytest.LogCaptureFixture
) -> None:
    users, mailbox = RedisUserStore(client), RedisMailbox(client)
    await users.start()
    await mailbox.start()
    try:
        await users.set_online("alice", [("127.0.0.1", 4000)], now=1.0)
        await client.call(client.redis.hset(client.key("user", "alice"), "addresses", "{not json"))
        assert await users.get("alice") is None  # unreadable: as if unknown, no crash
        await client.call(client.redis.hset(client.key("user", "bob"), "first_seen", "soon"))
        assert await users.get("bob") is None
        item = p2pchat.MailboxItem(
            recipient="bob", item="i1", kind="msg", sender="alice", sealed="x", at=1, expires=9e9
        )
        await mailbox.deposit(item, max_items=None, max_bytes=None)
        await mailbox.deposit(
            p2pchat.MailboxItem(
                recipient="bob", item="i2", kind="msg", sender="al", sealed="y", at=2, expires=9e9
            ),
            max_items=None,
            max_bytes=None,
        )
        await client.call(client.redis.hset(client.key("mail", "bob", "items"), "i1", "3:[1,2"))
        page, more = await mailbox.pending("bob", now=0.0, limit=10, max_bytes=1000)
        assert ([i.item for i in page], more) == (["i2"], False)
        assert await mailbox.remove("bob", ["i1", "i2"]) == 2  # garbage can still be dropped
    finally:
        await mailbox.close()
        await users.close()
    assert "unreadable" in caplog.text


async def test_a_call_cancelled_at_any_moment_of_its_round_trip_ends_cancelled(
    client: RedisClient,
) -> None:
    """Cancelled one loop iteration further into the round trip each time, until it had
    ended before the cancellation, a call ends cancelled every time. Python 3.11's
    ``asyncio.wait_for``, which redis-py writes each command through, lost the
    cancellations that came as the write completed (1 to 3 iterations in): the call
    returned its answer instead, and a heartbeat cancelled so beat on for ever."""

    async def ping() -> object:
        return await client.call(client.redis.ping())

    lost: list[int] = []
    for steps in range(10_000):
        task = asyncio.create_task(ping())
        for _ in range(steps):
            await asyncio.sleep(0)  # one iteration of the loop further
        if not task.cancel():  # ended already: every moment of a round trip was tried
            assert await task is True
            break
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if not task.cancelled():
            lost.append(steps)
    else:
        pytest.fail("a PING did not end within 10,000 loop iterations")
    assert steps > 1
    assert lost == [], f"cancelled after these many iterations, the call went on: {lost}"


async def test_an_unreachable_redis_is_a_store_error_without_the_password() -> None:
    url = "redis://:secret-password@127.0.0.1:1/0"
    client = RedisClient(url, timeout=1.0)
    with pytest.raises(p2pchat.StoreError) as failed:
        await client.start()
    assert "secret-password" not in str(failed.value)
    assert redacted(url) == "redis://:***@127.0.0.1:1/0"


async def test_rediss_a_redis_over_tls(tmp_path: Path) -> None:
    require("redis-server", redis_available(), "install it (apt-get install redis-server)")
    certificate = server_certificate(tmp_path)
    redis = RedisServer(tmp_path / "tls-redis", tls=certificate)
    await redis.astart()
    try:
        assert redis.url.startswith("rediss://")
        store = RedisUserStore(redis.url)
        await store.start()
        try:
            await store.set_online("alice", [], now=1.0)
            assert await store.online() == ["alice"]
        finally:
            await store.close()
    finally:
        await redis.kill()
