"""A logged-in peer's requests: read one by one, paced, dispatched by type, each answered.

``RequestLoop.serve(session)`` reads the session's messages until ``bye`` or the end,
keeps the connection alive (pings when quiet, a drop when silent too long), paces
requests (``rate_limit``: a warning, then a disconnect), and hands each request to the
handler of its type. A refusal (``ServerRefused``) is answered as ``error{id, code}``;
a store that cannot be reached (Redis away) as ``error{id, unavailable}``; the session
goes on either way. How long each request took is counted by type (``stats.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .connection import keep_alive
from .errors import (
    ConnectionClosed,
    ProtocolError,
    RateLimited,
    ServerRefused,
    ServerUnavailable,
    StoreError,
)
from .limits import TokenBucket
from .protocol import REQUEST_TYPES, Bye, Error, Pong
from .session import Session
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
        # Limits
        rate_limit: tuple[float, int] | None = (20.0, 200),
        # Timeouts
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
    ) -> None:
        self.handlers = handlers
        self.stats = stats
        self.rate_limit = rate_limit
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout

    async def serve(self, session: Session) -> None:
        """Until the peer says bye or goes; raises what ends the session otherwise."""
        watchdog = asyncio.create_task(self._watch(session))
        try:
            await self._read_requests(session)
        finally:
            watchdog.cancel()

    async def _watch(self, session: Session) -> None:
        """Drop the session once the peer has been silent too long (gone without a word)."""
        with contextlib.suppress(ConnectionClosed):
            reason = await keep_alive(
                session.connection,
                interval=self.ping_interval,
                timeout=self.ping_timeout,
                send=session.reply,
            )
            session.drop(f"{session.name}: {reason}; dropping it")

    async def _read_requests(self, session: Session) -> None:
        bucket = TokenBucket(*self.rate_limit) if self.rate_limit else None
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
