"""A logged-in peer's requests: read one by one, paced, dispatched by type, each answered.

``RequestLoop.serve(session)`` reads the session's messages until ``bye`` or the end,
paces requests (``rate_limit``: a warning, then a disconnect), and hands each request to
the handler of its type. One sweep for all sessions (``start(sessions)``) keeps them
alive: a ping when one has been quiet for ``ping_interval``, a drop when it has been
silent ``ping_timeout`` more (a task per session would cost each its memory).
A refusal (``ServerRefused``) is answered as ``error{id, code}``;
a store that cannot be reached (Redis away) as ``error{id, unavailable}``; the session
goes on either way. How long each request took is counted by type (``stats.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import (
    ProtocolError,
    RateLimited,
    ServerRefused,
    ServerUnavailable,
    StoreError,
)
from ..protocol import REQUEST_TYPES, Bye, Error, Ping, Pong
from ..shared.tasks import cancel_and_wait
from .limits import TokenBucket
from .session import Session, Sessions
from .settings import DEFAULTS, ServerSettings
from .stats import ServerStats

__all__ = ["Handler", "RequestLoop"]

Handler = Callable[[Session, Any], Awaitable[None]]


class RequestLoop:
    """Serves the requests of each logged-in session of one server."""

    def __init__(
        self,
        handlers: dict[type[Any], Handler],
        *,
        stats: ServerStats,
        settings: ServerSettings = DEFAULTS,
    ) -> None:
        self.handlers = handlers
        self.stats = stats
        self.settings = settings
        """Its limits: ``rate_limit``, ``ping_interval``, ``ping_timeout``."""
        self._sweeper: asyncio.Task[None] | None = None

    def start(self, sessions: Sessions) -> None:
        """Keep ``sessions`` alive (and drop the silent ones) until ``close()``."""
        self._sweeper = asyncio.create_task(self._sweep(sessions))

    async def close(self) -> None:
        await cancel_and_wait(self._sweeper)
        self._sweeper = None

    async def _sweep(self, sessions: Sessions) -> None:
        """Now and then (a quarter of the shorter timeout, at most a second): ping each
        session quiet for ``ping_interval`` (once per quiet spell), drop each silent for
        ``ping_interval + ping_timeout`` (gone without a word: a cut cable)."""
        interval, timeout = self.settings.ping_interval, self.settings.ping_timeout
        period = max(0.02, min(1.0, interval / 4, timeout / 4))
        ids = itertools.count(1)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for session in list(sessions.by_name.values()):
                heard = session.connection.last_heard
                quiet = now - heard
                if quiet >= interval + timeout:
                    session.drop(f"{session.name}: nothing heard for {quiet:.0f} s; dropping it")
                elif quiet >= interval and session.pinged < heard:
                    session.pinged = now
                    session.push(Ping(id=f"k{next(ids)}"))

    async def serve(self, session: Session) -> None:
        """Until the peer says bye or goes; raises what ends the session otherwise. (One
        coroutine, with no other in between: each session waits here.)"""
        limit = self.settings.rate_limit
        bucket = TokenBucket(*limit) if limit else None
        warned = 0
        while True:
            message = await session.connection.recv()
            if bucket is not None and not bucket.take():
                warned += 1
                rate = bucket.rate
                if warned > 3:
                    raise RateLimited(f"still more than {rate:g} requests/s; disconnecting")
                request_id = getattr(message, "id", None)
                await session.reply(
                    Error(
                        id=request_id,
                        code=RateLimited.code,
                        reason=f"more than {rate:g} requests/s: slow down",
                    )
                )
                continue
            if isinstance(message, Bye):
                session.connection.log.info("left: %s", message.reason or "bye")
                return
            if isinstance(message, Pong):
                continue  # an answer to our keepalive: hearing it was the point
            handler = self.handlers.get(type(message))
            if handler is None or not isinstance(message, REQUEST_TYPES):
                raise ProtocolError(f"unexpected {type(message).__name__.lower()} message")
            started = time.perf_counter()
            try:
                await handler(session, message)
            except ServerRefused as exc:
                await session.reply(Error(id=message.id, code=exc.code, reason=str(exc)))
            except StoreError as exc:
                session.connection.log.warning("%s failed: %s", type(message).__name__, exc)
                await session.reply(
                    Error(
                        id=message.id,
                        code=ServerUnavailable.code,
                        reason="the server cannot reach its shared state now; try again",
                    )
                )
            self.stats.request(type(message).__name__.lower(), time.perf_counter() - started)
