"""The one Redis client of a server: a bounded pool, a timeout on every call, the key
scheme, and the Lua scripts that make each multi-key change atomic.

Every Redis-backed part of one server (its user store, mailbox, invitations and the
cluster directory) shares one ``RedisClient``: one pool of at most ``max_connections``
connections (a caller waits up to ``timeout`` for one), plus the one connection that
pub/sub holds for itself. Every call gives up after ``timeout`` seconds; Redis errors and
timeouts become ``StoreError``, which a server answers with ``unavailable``.

Keys, all under ``prefix`` (default ``p2pchat``, so that one Redis can hold several
deployments, or several tests, apart)::

    p2pchat:names                      hash  casefolded name -> name as registered
    p2pchat:user:NAME                  hash  key, mailbox_key, mailbox_sig, first_seen,
                                             last_seen, online, addresses (JSON)
    p2pchat:users:online               zset  names the user store marks online
    p2pchat:session:NAME               hash  node, certificate, addresses, traversal,
                                             token (of that login): where NAME is logged
                                             in now (the directory)
    p2pchat:online                     zset  names logged in on any node (score 0: by name)
    p2pchat:nodes                      set   node ids that have registered
    p2pchat:node:ID                    str   alive marker, with a TTL the node refreshes
    p2pchat:node:ID:users              set   names logged in on that node
    p2pchat:inv:ID                     hash  sender, recipient, accepted (with a TTL)
    p2pchat:inv:sent:NAME              zset  unanswered invitations NAME sent (score: expiry)
    p2pchat:inv:recv:NAME              zset  unanswered invitations NAME received
    p2pchat:inv:user:NAME              zset  every invitation NAME is part of
    p2pchat:mail:RECIPIENT:items       hash  item id -> "SIZE:JSON" of the sealed item
    p2pchat:mail:RECIPIENT:order       zset  item ids by deposit sequence
    p2pchat:mail:RECIPIENT:bytes       str   sealed bytes kept for RECIPIENT
    p2pchat:mail:RECIPIENT:senders     hash  n:SENDER, b:SENDER: items and bytes of each
                                             sender kept there (its share)
    p2pchat:mail:RECIPIENT:from        hash  item id -> its sender
    p2pchat:mail:expiry                zset  "RECIPIENT\\nITEM" by expiry (epoch seconds)
    p2pchat:mail:seq                   str   the deposit sequence
    p2pchat:mail:totals                hash  items, bytes: everything kept
    channels: p2pchat:push:ID (pushes for users on node ID), p2pchat:presence (logins
    and logouts, for every node)

A single Redis (a primary, with replicas or Sentinel if you like); Redis Cluster is not
supported: the scripts touch keys they compute.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from importlib import resources
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from ..errors import StoreError
from ..shared.tasks import cancellation_kept

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.commands.core import AsyncScript
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - the extra is missing
    aioredis = None  # type: ignore[assignment]

__all__ = ["DEFAULT_PREFIX", "RedisClient", "redacted"]

logger = logging.getLogger(__name__)

DEFAULT_PREFIX: Final = "p2pchat"


def redacted(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class RedisClient:
    """One Redis connection pool, shared by the parts of one server that use it.

    ``start()`` and ``close()`` are counted: the pool opens with the first ``start()`` and
    closes with the last ``close()``, so each part can open and close what it uses.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        # Limits
        max_connections: int = 32,
        # Timeouts
        timeout: float = 5.0,
    ) -> None:
        if aioredis is None:  # pragma: no cover
            raise StoreError("Redis support needs redis-py: pip install 'p2pchat[redis]'")
        self.url = url
        self.prefix = prefix
        self.max_connections = max_connections
        self.timeout = timeout
        self._redis: aioredis.Redis | None = None
        self._users = 0
        self._texts: dict[str, str] = {}
        self._scripts: dict[str, AsyncScript] = {}

    def __repr__(self) -> str:
        return f"<RedisClient {redacted(self.url)} prefix={self.prefix!r}>"

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise StoreError("the Redis client is not started")
        return self._redis

    def key(self, *parts: str) -> str:
        """A key of the scheme above: ``key("user", "alice")`` is ``p2pchat:user:alice``."""
        return ":".join((self.prefix, *parts))

    async def start(self) -> None:
        self._users += 1
        if self._redis is not None:
            return
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.max_connections,
                timeout=self.timeout,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                decode_responses=True,
                # One retry on a connection that broke (a Redis restarted since it was
                # pooled); then the caller hears of it.
                retry=Retry(NoBackoff(), 1),
                health_check_interval=30,
            )
        except ValueError as exc:
            self._users -= 1
            raise StoreError(f"bad Redis URL {redacted(self.url)}: {exc}") from None
        self._redis = aioredis.Redis(connection_pool=pool)
        try:
            if not self._texts:
                self._texts = await asyncio.to_thread(_read_scripts)
            await self.call(self._redis.ping())
        except StoreError:
            await self._drop()
            raise

    async def close(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0:
            await self._drop()

    async def _drop(self) -> None:
        self._users = 0
        if self._redis is not None:
            client, self._redis = self._redis, None
            try:
                await client.aclose(close_connection_pool=True)
            except (RedisError, OSError) as exc:  # closing anyway
                logger.debug("closing the Redis client: %s", exc)

    def dedicated(self) -> aioredis.Redis:
        """A client that holds one connection of the pool for itself (for a heartbeat that
        must not wait behind everyone else's calls). Close it with ``aclose()``."""
        return self.redis.client()

    def pubsub(self) -> aioredis.client.PubSub:
        """A pub/sub object: it takes a connection of its own from the pool. (It hands
        out the confirmations of subscriptions too: ``type`` "subscribe".)"""
        return self.redis.pubsub()

    async def call(self, operation: Awaitable[Any]) -> Any:
        """Await one Redis operation within ``timeout``; its failure is a StoreError. (The
        client decodes answers to ``str``; callers say what type they expect.)

        A task cancelled during the call ends cancelled, even where redis-py lost the
        cancellation (Python 3.11: ``shared/tasks.py``); else a loop of calls, cancelled
        by its owner's close(), would go on for ever and that close() never return."""
        with cancellation_kept():
            try:
                async with asyncio.timeout(self.timeout):
                    return await operation
            except TimeoutError:
                raise StoreError(f"Redis did not answer within {self.timeout:g} s") from None
            except (RedisError, OSError) as exc:
                raise StoreError(f"Redis: {exc}") from exc

    def script(self, name: str) -> AsyncScript:
        """The Lua script ``lua/NAME.lua``: called by its SHA, loaded again if Redis forgot
        it (restarted); in a pipeline, loaded before the pipeline runs."""
        loaded = self._scripts.get(name)
        if loaded is None:
            loaded = self._scripts[name] = self.redis.register_script(self._texts[name])
        return loaded

    async def run(
        self,
        script: str,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        via: aioredis.Redis | None = None,
    ) -> Any:
        """Run the Lua script ``lua/SCRIPT.lua`` once, within ``timeout`` (``via`` a
        dedicated client, else the pool)."""
        return await self.call(self.script(script)(keys=list(keys), args=list(args), client=via))


def _read_scripts() -> dict[str, str]:
    """Every ``lua/*.lua`` of the package, by name (read off the event loop)."""
    folder = resources.files("p2pchat.cluster").joinpath("lua")
    return {
        entry.name.removesuffix(".lua"): entry.read_text()
        for entry in folder.iterdir()
        if entry.name.endswith(".lua")
    }
