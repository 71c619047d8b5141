"""What waits between a conversation and its application, with no I/O of its own.

``Inbox``: messages received and stored, not yet taken by the application (bounded by
holding back the network, never by dropping what is stored). ``Sending``: the messages of
one ``send()`` or ``send_many()`` call, and the future its caller waits on until they are
stored.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable

from ..errors import ConversationClosed
from ..store import Message

__all__ = ["Inbox", "Sending", "resolve_stored"]


class Inbox:
    """Messages received and stored, not yet taken by the application.

    A stored message is never dropped: a stored batch goes in whole, and the bound
    (``limit``) holds back reading from the network instead (``wait_for_room()``). Taking
    is safe to cancel: a message leaves the inbox only in the step that returns it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: collections.deque[Message] = collections.deque()
        self._changed = asyncio.Event()
        self._closed = False

    def put_all(self, messages: Iterable[Message]) -> None:
        self._items.extend(messages)
        self._changed.set()

    def close(self) -> None:
        """Nothing more will arrive; what is here can still be taken."""
        self._closed = True
        self._changed.set()

    async def get(self) -> Message | None:
        """The oldest message, waiting for one; None once closed and empty."""
        while not self._items:
            if self._closed:
                return None
            self._changed.clear()
            await self._changed.wait()
        message = self._items.popleft()
        self._changed.set()  # there is room now
        return message

    async def wait_for_room(self) -> None:
        """Wait until the application has taken enough to hold another batch."""
        while len(self._items) >= self.limit and not self._closed:
            self._changed.clear()
            await self._changed.wait()


class Sending:
    """The messages of one ``send_many()`` call, and the future its caller waits on."""

    __slots__ = ("future", "messages", "waiting")

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        self.waiting = len(messages)  # not yet stored
        self.future: asyncio.Future[list[Message]] = asyncio.get_running_loop().create_future()

    def stored(self, error: BaseException | None) -> None:
        if self.future.done():  # failed already, or its caller stopped waiting
            return
        if error is not None:
            self.future.set_exception(error)
            return
        self.waiting -= 1
        if not self.waiting:
            self.future.set_result(self.messages)


def resolve_stored(
    batch: list[tuple[Message, Sending]], writing: asyncio.Task[list[Message]]
) -> None:
    """Tell the senders of ``batch`` whether their messages are stored."""
    error: BaseException | None = None
    if writing.cancelled():
        error = ConversationClosed("the conversation ended before the message was stored")
    elif writing.exception() is not None:
        error = writing.exception()
    for _, sending in batch:
        sending.stored(error)
