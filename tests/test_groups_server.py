"""What the server keeps of a group: nothing it could read. Its SQLite files and the
Redis of several nodes hold sealed items only: no group name, id or member list, and
no message text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import p2pchat
from p2pchat.cluster.redis_client import RedisClient

from .conftest import NodeFactory, PeerMaker, eventually, require
from .redisserver import redis_available
from .test_groups import OPEN
from .test_mailbox import Server

NAME = "moonlit-orchard"
TEXT = "the eagle lands at noon"


def _server_files(directory: Path) -> bytes:
    """Every byte of the server's SQLite files (main, WAL, shared memory)."""
    return b"".join(
        path.read_bytes()
        for path in directory.iterdir()
        if path.name.startswith(("users", "mailbox"))
    )


def _secrets(group: p2pchat.Group) -> list[bytes]:
    members = ",".join(f'"{m}"' for m in group.members)
    return [NAME.encode(), TEXT.encode(), group.id.encode(), members.encode()]


async def test_the_servers_files_hold_no_group(tmp_path: Path) -> None:
    hub = Server(tmp_path, **OPEN)
    await hub.start()
    try:
        async with hub.peer("dave"):
            pass  # known, then away: what is for him waits on the server
        async with hub.peer("alice") as alice, hub.peer("bob") as bob:
            group = await alice.create_group(NAME, ["bob", "dave"])
            await group.send(TEXT)
            bobs = await bob.next_group()
            assert (await bobs.receive()).notice == "change"
            assert (await bobs.receive()).body == TEXT
            server = hub.server
            assert server is not None

            async def waiting_for_dave() -> bool:
                return (await server.mail.mailbox.usage("dave"))[0] == 2

            await eventually(waiting_for_dave)
            kept = await asyncio.to_thread(_server_files, tmp_path)
            assert b"dave" in kept  # the files are the ones that hold the mail
            for secret in _secrets(group):
                assert secret not in kept, secret
    finally:
        await hub.stop()


async def test_redis_of_several_nodes_holds_no_group(
    node: NodeFactory, peer: PeerMaker, redis_url: str, redis_prefix: str
) -> None:
    require("redis-server", redis_available(), "install it (apt-get install redis-server)")
    a = await node("A", **OPEN)
    b = await node("B", **OPEN)
    dave = await peer("dave", b)
    await dave.close()
    alice = await peer("alice", a)
    bob = await peer("bob", b)
    group = await alice.create_group(NAME, ["bob", "dave"])
    await group.send(TEXT)
    bobs = await bob.next_group()
    assert (await bobs.receive()).notice == "change"
    assert (await bobs.receive()).body == TEXT
    raw = RedisClient(redis_url, prefix=redis_prefix)
    await raw.start()
    try:
        redis = raw.redis

        async def everything() -> bytes:
            out: list[str] = []
            async for key in redis.scan_iter(match=f"{redis_prefix}*"):
                out.append(str(key))
                kind = await redis.type(key)
                if kind == "string":
                    out.append(str(await redis.get(key)))
                elif kind == "hash":
                    out.extend(map(str, (await redis.hgetall(key)).items()))
                elif kind == "list":
                    out.extend(map(str, await redis.lrange(key, 0, -1)))
                elif kind == "set":
                    out.extend(map(str, await redis.smembers(key)))
                elif kind == "zset":
                    out.extend(map(str, await redis.zrange(key, 0, -1)))
                elif kind == "stream":
                    out.append(str(await redis.xrange(key)))
            return "\n".join(out).encode()

        async def waiting_for_dave() -> bool:
            return b"dave" in await everything() and len(await everything()) > 2000

        await eventually(waiting_for_dave)
        kept = await everything()
        for secret in _secrets(group):
            assert secret not in kept, secret
    finally:
        await raw.close()
