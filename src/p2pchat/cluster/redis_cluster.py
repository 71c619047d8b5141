"""Several server nodes sharing one Redis: who is logged in where, pushes between nodes,
node heartbeats and the clean-up after a node dies; and the pending invitations.

``RedisCluster`` implements ``cluster.Cluster``:

- **Names.** ``claim`` is one Lua script: a name is taken by one node at a time, across
  all of them; taking it and publishing the presence news are one atomic step, and so are
  letting it go and publishing that, so every node sees a user's logins and logouts in
  the order they happened, wherever they happened.
- **Pushes** and presence news go over Redis **pub/sub** (``redis_pubsub.py``). Pushes
  made while Redis is unreachable are lost (a mail item then waits for the next collect);
  presence news missed meanwhile is caught up once pub/sub is back.
- **Heartbeats** (``redis_heartbeat.py``): one process at a time holds a node id, and
  refreshes ``PREFIX:node:ID`` (TTL ``node_ttl``) every ``heartbeat_interval`` from a
  task and a connection of its own, which wait for nothing else.
- **The dead.** Every ``heartbeat_interval`` another task checks the other nodes; when a
  node's key has expired, the first to notice runs ``reap.lua``, which logs that node's
  users out and publishes their logouts, exactly once (it removes the node from
  ``PREFIX:nodes`` in the same step). What those users left (their invitations) is then
  settled in the background, ``SETTLERS`` at a time. A claim that finds the name held by
  a dead node reaps it at once and settles that one user's leftovers before taking the
  name, so a user who reconnects elsewhere is not kept waiting for all the others'.
- **Redis lost.** Calls fail (StoreError, answered ``unavailable``), pub/sub reconnects
  with backoff, and as soon as a heartbeat goes through again and finds that Redis forgot
  this node (restarted without persistence) or after any outage, the node registers again
  every user it holds and lets go of those it no longer holds (checking each against
  what it holds as it goes: logins and logouts do not wait for it).

The pending invitations are in ``redis_invitations.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

import msgspec

from ..errors import P2PChatError, StoreError
from ..protocol import WireMessage
from .base import Entry, Node
from .redis_client import RedisClient
from .redis_heartbeat import Heartbeat, Trouble
from .redis_invitations import RedisInvitations
from .redis_pubsub import NodeChannels
from .redis_store import RedisMailbox, RedisUserStore

__all__ = ["RedisCluster", "redis_backends"]

logger = logging.getLogger(__name__)

SETTLERS = 8
"""What users of dead nodes left is settled this many at a time (so are resyncs)."""


_addresses = msgspec.json.Decoder(list[tuple[str, int]])


class RedisCluster:
    """The directory of a deployment of several nodes, in Redis (see above)."""

    def __init__(
        self,
        client: RedisClient,
        node_id: str,
        *,
        # Timeouts
        heartbeat_interval: float = 1.0,
        node_ttl: float = 5.0,
    ) -> None:
        if node_ttl <= heartbeat_interval:
            raise ValueError("node_ttl must be longer than heartbeat_interval")
        self.client = client
        self.node_id = node_id
        self.heartbeat_interval = heartbeat_interval
        self.node_ttl = node_ttl
        self._node: Node | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.heartbeat = Heartbeat(
            client, node_id, interval=heartbeat_interval, ttl=node_ttl, on_trouble=self._trouble
        )
        self.channels = NodeChannels(
            client, node_id, lambda: self.node, on_comeback=self._resync_later
        )
        self._to_settle: asyncio.Queue[str] = asyncio.Queue()  # users of dead nodes
        self._resync_due = False
        self._reap_after = 0.0
        self.reaped_nodes = 0
        """Dead nodes this node cleaned up after (for tests and logs)."""
        self.resyncs = 0
        """Times this node registered again what it holds."""

    def __repr__(self) -> str:
        return f"<RedisCluster node={self.node_id} {self.client!r}>"

    def attach(self, node: Node) -> None:
        self._node = node

    @property
    def node(self) -> Node:
        if self._node is None:
            raise RuntimeError("the cluster is not attached to a server")
        return self._node

    @property
    def healthy(self) -> bool:
        return self.heartbeat.alive and self.channels.subscribed.is_set()

    @property
    def failed_beats(self) -> int:
        """Heartbeats that did not reach Redis (or found the id held by another process)."""
        return self.heartbeat.failed_beats

    # Lifecycle.

    async def start(self) -> None:
        """Take the node id (waiting for a crashed predecessor's heartbeat to expire;
        StoreError if a live process holds it), clear what a former process with this id
        left, subscribe, and start beating."""
        await self.client.start()
        try:
            await self.heartbeat.take()
            self._tasks = [asyncio.create_task(self._settle_loop()) for _ in range(SETTLERS)]
            await self._reap(self.node_id, mode="former")
            await self.channels.start()
            self.heartbeat.start()
            self._tasks.append(asyncio.create_task(self._keep_up()))
        except BaseException:
            await self.channels.close()
            await self._stop_tasks()
            await self.heartbeat.close()
            await self.client.close()
            raise
        logger.info("node %s joined the cluster at %r", self.node_id, self.client)

    async def close(self) -> None:
        """Leave: what is still queued is published, this node's users are let go."""
        await self.channels.close()
        if left := self._to_settle.qsize():
            logger.info("node %s leaves %d dead nodes' users to their TTLs", self.node_id, left)
        await self._stop_tasks()
        await self.heartbeat.close()
        try:
            await self._reap(self.node_id, mode="leave", settle=False)
        except StoreError as exc:
            logger.warning("node %s left without telling Redis: %s", self.node_id, exc)
        await self.client.close()

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # Names.

    def _session_keys(self, name: str) -> list[str]:
        c = self.client
        return [c.key("session", name), c.key("online"), c.key("node", self.node_id, "users")]

    async def claim(self, entry: Entry) -> bool:
        if self.heartbeat.usurped:
            raise StoreError(f"node id {self.node_id} is held by another process")
        return await self._take(entry) in (1, 2)

    async def _take(self, entry: Entry, *, refresh: bool = False) -> int:
        """claim.lua's answer, once a dead holder is cleaned up after: 1 taken, 2 held
        already by this login, 3 (``refresh``) held by another login of this node, 0
        held by a live node."""
        for _ in range(2):
            answer = await self._claim(entry, refresh)
            code = int(answer[0])
            if code != -1:
                return code
            # Its node is dead: log its users out, settle what this one left (the rest in
            # the background), then try again.
            if entry.name in await self._reap(str(answer[1]), keep=entry.name):
                await self._settle(entry.name)
        return 0

    async def _claim(self, entry: Entry, refresh: bool) -> Any:
        return await self.client.run(
            "claim",
            self._session_keys(entry.name),
            [
                self.client.prefix,
                entry.name,
                self.node_id,
                entry.certificate,
                msgspec.json.encode(entry.addresses).decode(),
                self.client.key("presence"),
                "1" if entry.traversal else "0",
                entry.token,
                "1" if refresh else "0",
            ],
        )

    async def release(self, name: str, token: str) -> None:
        await self.client.run(
            "release",
            self._session_keys(name),
            [name, self.node_id, self.client.key("presence"), token],
        )

    async def lookup(self, name: str) -> Entry | None:
        fields: dict[str, str] = await self.client.call(
            self.client.redis.hgetall(self.client.key("session", name))
        )
        if not fields:
            return None
        try:
            return Entry(
                name=name,
                node=fields["node"],
                certificate=fields.get("certificate", ""),
                addresses=_addresses.decode(fields.get("addresses", "[]")),
                traversal=fields.get("traversal") == "1",
            )
        except (KeyError, msgspec.DecodeError) as exc:
            logger.error("the Redis session of %s cannot be read (%s); ignoring it", name, exc)
            return None

    async def online(self, limit: int) -> tuple[list[str], int]:
        pipe = self.client.redis.pipeline(transaction=False)
        pipe.zrange(self.client.key("online"), 0, max(limit, 1) - 1)
        pipe.zcard(self.client.key("online"))
        names, total = await self.client.call(pipe.execute())
        return (list(names) if limit > 0 else []), int(total)

    # Pushes.

    def push(self, name: str, message: WireMessage) -> None:
        if not self.node.deliver(name, message):  # if logged in here, delivered
            self.channels.send(name, message)

    # Upkeep: registering again what Redis lost, and the dead.

    def _resync_later(self) -> None:
        self._resync_due = True

    def _trouble(self, trouble: Trouble) -> None:
        """What the heartbeat found wrong."""
        if trouble is Trouble.USURPED:
            return  # nothing is registered as this node while another process holds it
        self._resync_due = True  # check what Redis holds for us
        if trouble is Trouble.UNREACHABLE:
            self._reap_after = time.monotonic() + self.node_ttl  # others need time too

    async def _keep_up(self) -> None:
        """Every ``heartbeat_interval``: a resync when due, and the dead cleaned up after.
        (Never in the heartbeat's way: that beats on its own.)"""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if not self.heartbeat.alive or self.heartbeat.usurped:
                continue
            try:
                if self._resync_due and self.channels.subscribed.is_set():
                    await self._resync()
                if time.monotonic() >= self._reap_after:
                    await self._reap_dead()
            except StoreError as exc:
                logger.info("node %s: upkeep put off: %s", self.node_id, exc)
                self._resync_due = True
            except Exception:  # bad data from Redis must not stop the upkeep
                logger.exception("node %s: upkeep failed", self.node_id)

    async def _resync(self) -> None:
        """Make Redis hold exactly this node's users again.

        Each user is checked against what this node holds as it goes, before and after
        its round trip: one who logs out (or in again) meanwhile is neither registered
        back (a ghost every node would refuse) nor let go by mistake."""
        c = self.client
        self._resync_due = False  # trouble from now on calls for another
        recorded: set[str] = set(
            await c.call(c.redis.smembers(c.key("node", self.node_id, "users")))
        )
        held = {entry.name: entry for entry in self.node.held()}
        await _bounded(
            [self._drop_stale(name) for name in recorded - held.keys()]
            + [self._register(entry) for entry in held.values()]
        )
        self.resyncs += 1
        logger.info("node %s registered its %d users again", self.node_id, len(held))

    async def _drop_stale(self, name: str) -> None:
        """Let go of a name Redis says this node holds, and it does not (a logout Redis
        did not hear of), unless a login of it is under way here (a step of ``_resync``)."""
        c = self.client
        holder, token = await c.call(c.redis.hmget(c.key("session", name), "node", "token"))
        if holder != self.node_id or not self.node.holds(name, token or ""):
            await self.release(name, token or "")

    async def _register(self, entry: Entry) -> None:
        """Register again one login this node holds (a step of ``_resync``)."""
        node, name = self.node, entry.name
        if not node.holds(name, entry.token):
            return  # gone meanwhile: its own logout lets it go
        code = await self._take(entry, refresh=True)
        if code == 3 and node.holds(name, entry.token):
            # Redis kept an older login of ours (its last writes lost): this one replaces it.
            code = await self._take(entry)
        if code == 0:
            if node.holds(name, entry.token):
                node.evict(name, f"{name} is logged in on another node now")
        elif not node.holds(name, entry.token):
            await self.release(name, entry.token)  # left while being registered

    async def _reap_dead(self) -> None:
        c = self.client
        dead = await c.run("dead_nodes", [c.key("nodes")], [c.prefix, self.node_id])
        for node in dead:
            await self._reap(str(node))

    async def _reap(
        self,
        node: str,
        *,
        mode: str = "dead",
        settle: bool = True,
        keep: str | None = None,
    ) -> list[str]:
        """Log out the users of ``node`` (``reap.lua``'s ``mode``: dead, exactly once
        across the cluster; or this node's own: what a former process left, or leaving)
        and queue what they left to be settled (but ``keep``'s: the caller settles it).
        Returns the names logged out."""
        c = self.client
        names = await c.run(
            "reap",
            [c.key("node", node), c.key("nodes"), c.key("node", node, "users"), c.key("online")],
            [c.prefix, node, c.key("presence"), mode, self.heartbeat.token],
        )
        if not names:
            return []
        names = [str(name) for name in names]
        if mode == "dead":
            self.reaped_nodes += 1
            logger.warning("node %s is gone: %d of its users logged out", node, len(names))
        if settle:
            for name in names:
                if name != keep:
                    self._to_settle.put_nowait(name)
        return names

    async def _settle_loop(self) -> None:
        """One of the ``SETTLERS``: settles what users of dead nodes left, one at a time."""
        while True:
            name = await self._to_settle.get()
            try:
                await self._settle(name)
            except Exception:  # one user's leftovers must not stop the others'
                logger.exception("settling what %s left failed", name)
            finally:
                self._to_settle.task_done()

    async def _settle(self, name: str) -> None:
        try:
            await self.node.reaped(name)
        except (P2PChatError, OSError) as exc:
            logger.warning("what %s left behind stays until it expires: %s", name, exc)


async def _bounded(steps: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``steps``, ``SETTLERS`` at a time; raise the first StoreError, once all ended."""
    gate = asyncio.Semaphore(SETTLERS)

    async def step(work: Coroutine[Any, Any, None]) -> None:
        async with gate:
            await work

    ended = await asyncio.gather(*(step(work) for work in steps), return_exceptions=True)
    for outcome in ended:
        if isinstance(outcome, BaseException):
            raise outcome


def redis_backends(
    url: str,
    *,
    prefix: str,
    node_id: str,
    max_connections: int,
    timeout: float,
    heartbeat_interval: float,
    node_ttl: float,
    max_invitations: int,
    max_invitations_per_pair: int,
) -> tuple[RedisClient, RedisUserStore, RedisMailbox, RedisInvitations, RedisCluster]:
    """Everything a server node keeps in the Redis at ``url``, sharing one client."""
    client = RedisClient(url, prefix=prefix, max_connections=max_connections, timeout=timeout)
    invitations = RedisInvitations(
        client,
        max_sent=max_invitations,
        max_received=max_invitations,
        max_per_pair=max_invitations_per_pair,
    )
    cluster = RedisCluster(
        client, node_id, heartbeat_interval=heartbeat_interval, node_ttl=node_ttl
    )
    return client, RedisUserStore(client), RedisMailbox(client), invitations, cluster
