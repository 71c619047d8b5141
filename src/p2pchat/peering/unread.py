"""Handing stored, unread messages to the application, each once, also across restarts:
what the mailbox (``next_message()``) and every group (``Group.receive()``) share.

A message is marked read in the store before it is returned; a caller cancelled while
that mark is written does not lose it: the next call returns it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..store import Message, MessageStore

__all__ = ["UnreadReader"]


class UnreadReader:
    """The unread messages of ``user``: one-to-one ones, or (``group``) one group's."""

    def __init__(
        self,
        store: MessageStore,
        user: str,
        *,
        group: str | None = None,
        pass_over: Callable[[Message], bool] | None = None,
    ) -> None:
        self.store = store
        self.user = user
        self.group = group
        self._pass_over = pass_over  # those are marked read and not returned
        self._arrived = asyncio.Event()
        self._taking = asyncio.Lock()
        self._taken: Message | None = None  # marked read, but its taker was cancelled
        self._marking: asyncio.Future[None] | None = None  # that mark, until it is written

    def arrived(self) -> None:
        """Something new is stored: wake a waiting ``next()``."""
        self._arrived.set()

    async def next(self, *, give_up: asyncio.Event | None = None) -> Message | None:
        """The oldest unread message, marked read; waits for one. With ``give_up``: None
        once it is set and nothing is left."""
        async with self._taking:
            if (taken := self._taken) is not None:
                self._taken = None
                return taken
            if self._marking is not None:  # a cancelled call's mark: read only after it
                await asyncio.shield(self._marking)
                self._marking = None
            while (message := await self._next_unread()) is None:
                if give_up is not None and give_up.is_set():
                    return None
                self._arrived.clear()
                await self._arrived.wait()
            self._marking = asyncio.ensure_future(
                self.store.mark_read(message.sender, [message.id])
            )
            try:
                await asyncio.shield(self._marking)
            except asyncio.CancelledError:
                self._taken = message  # being marked, not returned: the next call returns it
                raise
            self._marking = None
            return message

    async def _next_unread(self) -> Message | None:
        while (message := await self.store.next_unread(self.user, group=self.group)) is not None:
            if self._pass_over is None or not self._pass_over(message):
                return message
            await self.store.mark_read(message.sender, [message.id])
        return None
