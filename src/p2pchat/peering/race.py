"""A race between ways of making one connection: the first to succeed wins, the others are
stopped and whatever they made is dropped.

Ways can join the race while it runs (``start``), so that a slower, costlier one (the
relay) starts only once the cheaper ones have failed or have had their time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from ..shared.connection import Connection

__all__ = ["Race", "Won"]

Won = tuple[Connection, str]
"""A connection, and how it was made (``dialled``, ``reversed``, ``punched``, ``relayed``)."""


class Race:
    """Tasks that each try to make a connection."""

    def __init__(self) -> None:
        self._ways: dict[asyncio.Task[Won], str] = {}
        self._waiting: set[asyncio.Task[Won]] = set()  # not looked at yet
        self.winner: asyncio.Task[Won] | None = None
        self.failures: list[str] = []
        """``way: why`` for each way that failed, in the order they failed."""
        self.errors: list[BaseException] = []

    @property
    def running(self) -> bool:
        """Some way started has not finished yet."""
        return bool(self._waiting)

    def start(self, way: str, attempt: Coroutine[Any, Any, Won]) -> None:
        task = asyncio.create_task(attempt)
        self._ways[task] = way
        self._waiting.add(task)

    async def wait(self, timeout: float | None) -> Won | None:
        """The first success, once there is one; None if every way started has failed, or
        after ``timeout`` seconds (None: no limit)."""
        if self.winner is not None:
            return self.winner.result()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._waiting:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return None
            done, _ = await asyncio.wait(
                self._waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                return None
            for task in sorted(done, key=list(self._ways).index):  # in the order started
                self._waiting.discard(task)
                if task.cancelled():
                    self.failures.append(f"{self._ways[task]}: stopped")
                elif (error := task.exception()) is not None:
                    self.failures.append(f"{self._ways[task]}: {error}")
                    self.errors.append(error)
                elif self.winner is None:
                    self.winner = task
            if self.winner is not None:
                return self.winner.result()
        return None

    async def close(self) -> None:
        """Stop every way but the winner, and drop what they made. If we are cancelled
        meanwhile, they still end and are dropped, and we stay cancelled."""
        losers = [task for task in self._ways if task is not self.winner]
        for task in losers:
            task.cancel()
            task.add_done_callback(_drop_connection)
        if losers:
            await asyncio.wait(losers)


def _drop_connection(task: asyncio.Task[Won]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result()[0].abort()
