"""A node's heartbeat in Redis: its id held by one process at a time, and kept alive from
a task and a connection of its own, whatever else the node is busy with.

``PREFIX:node:ID`` holds a token of this process, with a TTL of ``node_ttl``. ``take()``
sets it only if it is absent (``SET NX``, ``node_take.lua``): a process that finds it
held waits a ``node_ttl`` and a beat for a crashed predecessor's key to expire, and if it
is held all along refuses to start, the id being a live process's. Each beat
(``heartbeat.lua``) refreshes the key only while it holds this process's token. A key
gone (Redis restarted, or this node was taken for dead) is taken again and the node told
(``Trouble.FORGOTTEN``: it registers its users again); a key another process holds is
left alone (``Trouble.USURPED``: this node says it is unhealthy and takes no name).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from ..errors import StoreError
from ..shared.tasks import cancel_and_wait
from .redis_client import RedisClient

__all__ = ["Heartbeat", "Trouble"]

logger = logging.getLogger(__name__)


class Trouble(enum.Enum):
    UNREACHABLE = "unreachable"
    """A beat did not reach Redis."""
    FORGOTTEN = "forgotten"
    """Redis had lost this node's key: it is this process's again now."""
    USURPED = "usurped"
    """Another process holds this node's id."""


class Heartbeat:
    """This process's hold on its node id (see above)."""

    def __init__(
        self,
        client: RedisClient,
        node_id: str,
        *,
        interval: float,
        ttl: float,
        on_trouble: Callable[[Trouble], None],
    ) -> None:
        self.client = client
        self.node_id = node_id
        self.interval = interval
        self.ttl = ttl
        self.on_trouble = on_trouble
        self.token = secrets.token_hex(16)
        """This process's own: what its key holds."""
        self.last_beat = 0.0
        self.failed_beats = 0
        """Beats that did not reach Redis, or found the id held by another process."""
        self.usurped = False
        """The last beat found another process holding this node's id."""
        self._via: Any = None  # a connection of its own: it never waits behind others
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        """A beat went through within ``ttl``: the other nodes see this one alive."""
        return time.monotonic() - self.last_beat < self.ttl

    def _keys(self) -> list[str]:
        return [self.client.key("node", self.node_id), self.client.key("nodes")]

    def _args(self) -> list[Any]:
        return [self.node_id, int(self.ttl * 1000), self.token]

    async def take(self) -> None:
        """Take the node id for this process, waiting for a crashed predecessor's key to
        expire; StoreError if a live process holds it."""
        self._via = self.client.dedicated()
        deadline = time.monotonic() + self.ttl + self.interval
        while not int(
            await self.client.run("node_take", self._keys(), self._args(), via=self._via)
        ):
            if time.monotonic() > deadline:
                raise StoreError(f"node id {self.node_id} is in use by a live node: choose another")
            await asyncio.sleep(self.interval)
        self.last_beat = time.monotonic()

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_beating())

    async def close(self) -> None:
        """Stop beating (the key expires, unless the node's leaving drops it first)."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._via is not None:
            via, self._via = self._via, None
            with contextlib.suppress(Exception):
                await via.aclose()

    async def _keep_beating(self) -> None:
        """Beat every ``interval``, and never wait for anything but the beat."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
            except Exception:  # bad data from Redis must not stop the heartbeat
                logger.exception("node %s: heartbeat failed", self.node_id)

    async def beat(self) -> None:
        try:
            answer = int(
                await self.client.run("heartbeat", self._keys(), self._args(), via=self._via)
            )
        except StoreError as exc:
            if self.last_beat:  # once per outage
                logger.warning("node %s cannot reach Redis: %s", self.node_id, exc)
            self._failed()
            self.on_trouble(Trouble.UNREACHABLE)
            return
        if answer < 0:
            if not self.usurped:
                logger.error(
                    "node id %s is held by another process: this one takes no name until "
                    "it is free again (two processes were given one --node-id?)",
                    self.node_id,
                )
            self._failed()
            self.usurped = True
            self.on_trouble(Trouble.USURPED)
            return
        self.usurped = False
        self.last_beat = time.monotonic()
        if answer == 0:
            logger.warning("Redis forgot node %s: registering its users again", self.node_id)
            self.on_trouble(Trouble.FORGOTTEN)

    def _failed(self) -> None:
        self.failed_beats += 1
        self.last_beat = 0.0  # not healthy until a beat goes through again
