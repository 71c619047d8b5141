"""A node's pub/sub in Redis: pushes out to the users of other nodes, and in, pushes for
its own users and everyone's presence news.

One channel per node (``PREFIX:push:NODE``) and one for presence news
(``PREFIX:presence``). ``route.lua`` looks up the node holding a user and publishes to it
in one step. Pub/sub rather than Streams: a push is news for a live connection, worth
nothing once that connection is gone; what must not be lost (mail, invitations, users) is
kept in Redis keys, and a peer collects its mail at each login. Streams would add consumer
groups, acknowledgements and trimming for a dead node's stream that nobody could read.

**Pub/sub lost** (Redis restarted, or the connection killed while Redis stays up): what
was published meanwhile is lost. redis-py would reconnect and subscribe again without a
word; here a reconnection ends the subscription instead, and the node subscribes again
itself, then catches up: it tells its sessions the presence changes it missed (the
directory's online users against those it knew of: who went offline, who came online),
and asks its cluster to check what Redis holds for it (``on_comeback``: a resync). Pushes
lost meanwhile stay lost: an invitation waits for its timeout, and a mail item in the
mailbox for the recipient's next collect, at their next login (the protocol has no way
to ask a peer to collect now).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ..errors import ProtocolError, StoreError
from ..messages import UserName
from ..protocol import Presence, WireMessage, decode_body, encode
from ..shared.tasks import cancellation_kept
from .base import Node
from .redis_client import RedisClient

__all__ = ["PUSH_QUEUE", "NodeChannels"]

logger = logging.getLogger(__name__)

PUSH_QUEUE = 65536
"""Pushes waiting to be published; beyond, further ones are dropped (and logged)."""
PUSH_BATCH = 256


class _News(msgspec.Struct, frozen=True):
    node: str
    user: UserName
    online: bool


_news = msgspec.json.Decoder(_News)


class NodeChannels:
    """The pub/sub of one node (see above)."""

    def __init__(
        self,
        client: RedisClient,
        node_id: str,
        node: Callable[[], Node],
        *,
        on_comeback: Callable[[], None],
    ) -> None:
        self.client = client
        self.node_id = node_id
        self._node = node
        self.on_comeback = on_comeback
        self.subscribed = asyncio.Event()
        self.comebacks = 0
        """Times this node subscribed again after losing pub/sub, and caught up."""
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(PUSH_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._dropped = 0
        self._news: list[Presence] = []  # presence news received, not yet passed on
        self._online: set[str] = set()  # who is online, as the news has told this node

    async def start(self) -> None:
        """Subscribe (within the client's timeout) and start publishing."""
        self._tasks = [
            asyncio.create_task(self._listen()),
            asyncio.create_task(self._send_pushes()),
        ]
        async with asyncio.timeout(self.client.timeout):
            await self.subscribed.wait()  # pushes for our users reach us from now on

    async def close(self) -> None:
        """What is still queued is published (for up to 2 s), then everything stops."""
        if self.subscribed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.subscribed.clear()

    # Out.

    def send(self, name: str, message: WireMessage) -> None:
        """Publish ``message`` to ``name``'s node, in order, never waiting."""
        try:
            self._queue.put_nowait((name, f"{name}\n{encode(message)[4:].decode()}"))
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped in (1, 100) or self._dropped % 10_000 == 0:
                logger.error("Redis is not keeping up: %d pushes dropped", self._dropped)

    async def _send_pushes(self) -> None:
        """Publish queued pushes in order, a pipeline of them at a time."""
        c = self.client
        while True:
            batch = [await self._queue.get()]
            while len(batch) < PUSH_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            route = c.script("route")
            pipe = c.redis.pipeline(transaction=False)
            for name, payload in batch:
                await route(keys=[c.key("session", name)], args=[c.prefix, payload], client=pipe)
            try:
                await c.call(pipe.execute())
            except StoreError as exc:
                logger.warning("%d pushes lost: %s", len(batch), exc)
            finally:
                for _ in batch:
                    self._queue.task_done()

    # In.

    async def _listen(self) -> None:
        """Receive pushes for this node's users and presence news, subscribing again
        (and catching up) whenever pub/sub is lost, forever."""
        c = self.client
        channels = (c.key("push", self.node_id), c.key("presence"))
        delay = 0.1
        joined = False  # the first subscription is the node's join; later ones comebacks
        while True:
            pubsub = c.pubsub()
            try:
                await c.call(self._subscribe(pubsub, channels))
                await self._catch_up(comeback=joined)
                joined = True
                self.subscribed.set()
                delay = 0.1
                while True:
                    with cancellation_kept():  # its health checks write (shared/tasks.py)
                        message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._received(str(message["channel"]), str(message["data"]))
            except Exception as exc:  # redis-py's errors too, unwrapped while reading
                level = logging.WARNING if delay == 0.1 else logging.DEBUG
                logger.log(level, "node %s: Redis pub/sub lost: %s", self.node_id, exc)
            finally:
                self.subscribed.clear()
                # Through a typed name: redis-py types aclose() only from 8.2 on, and a call
                # of the untyped one would fail mypy --strict with the older releases.
                close: Callable[[], Awaitable[object]] = pubsub.aclose
                with contextlib.suppress(Exception):
                    await close()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 2.0)

    async def _subscribe(self, pubsub: Any, channels: tuple[str, ...]) -> None:
        """Subscribe, and return once Redis has confirmed every channel: what is
        published from then on reaches this node."""
        await pubsub.subscribe(*channels)
        confirmed = 0
        while confirmed < len(channels):
            message = await pubsub.get_message(timeout=self.client.timeout)
            if message is None:
                raise StoreError("Redis did not confirm the subscription")
            if message.get("type") == "subscribe":
                confirmed += 1
            elif message.get("type") == "message":  # on a channel confirmed already
                self._received(str(message["channel"]), str(message["data"]))
        # From now on a reconnection (which redis-py would make quietly, subscribing
        # again) ends this subscription: what was published meanwhile must be caught up.
        pubsub.connection.register_connect_callback(self._reconnected)

    def _reconnected(self, connection: Any) -> None:
        raise StoreError("pub/sub reconnected: what was published meanwhile is lost")

    async def _catch_up(self, *, comeback: bool) -> None:
        """Learn who is online from the directory; after a loss, tell the sessions here
        what changed meanwhile, and have what Redis holds for this node checked."""
        c = self.client
        online = set(await c.call(c.redis.zrange(c.key("online"), 0, -1)))
        self._pass_news()  # what was read before goes first
        if comeback:
            news = [Presence(user=n, online=False) for n in sorted(self._online - online)]
            news += [Presence(user=n, online=True) for n in sorted(online - self._online)]
            self._node().broadcast(news)
            self.comebacks += 1
            self.on_comeback()
            logger.warning(
                "node %s: Redis pub/sub is back; %d presence changes caught up",
                self.node_id,
                len(news),
            )
        self._online = online

    def _received(self, channel: str, data: str) -> None:
        """One pub/sub message: bad ones are logged and dropped, never raised.

        Presence news is passed on in bursts (all that was read at once, encoded once per
        burst); anything else first lets the news before it go, so that order holds."""
        if channel == self.client.key("presence"):
            try:
                news = _news.decode(data)
            except msgspec.DecodeError as exc:
                logger.error("bad presence news from Redis (%s): %.80r", exc, data)
                return
            if news.online:
                self._online.add(news.user)
            else:
                self._online.discard(news.user)
            if not self._news:
                asyncio.get_running_loop().call_soon(self._pass_news)
            self._news.append(Presence(user=news.user, online=news.online))
            return
        self._pass_news()
        name, _, body = data.partition("\n")
        try:
            message = decode_body(body.encode())
        except ProtocolError as exc:
            logger.error("bad push from Redis for %.40r: %s", name, exc)
            return
        if not self._node().deliver(name, message):
            logger.debug("push for %s, no longer here: dropped", name)

    def _pass_news(self) -> None:
        news, self._news = self._news, []
        self._node().broadcast(news)
