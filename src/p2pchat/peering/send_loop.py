"""The sending half of a ``Conversation`` (``SendLoop``, a part of it): the backlog first,
then ours stored a batch at a time, up to ``WRITES_IN_FLIGHT`` batches at once, each on
the wire once stored, in order; the acks of what was received; and the effects the
delivery rules (``delivery.py``) answer with, carried out on the connection and the store.

A batch goes on the wire once stored, never before: what our store lacks never reached
the other side. Store writes run as tasks that the end of the talk does not stop
(``_keep``): ``close()`` waits for every one.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ConnectionClosed, ProtocolError, StoreError
from ..messages import MAX_ACK_IDS
from ..protocol import Ack, Msg
from ..store import Message, MessageStore
from .delivery import Acknowledge, Delivery, Effect, MarkShipped, Transmit, to_wire
from .queues import Sending, resolve_stored
from .settings import ChatSettings

if TYPE_CHECKING:
    from ..shared.connection import Connection, ConnectionLogger

__all__ = ["BATCH", "WRITES_IN_FLIGHT", "SendLoop"]

_T = TypeVar("_T")

BATCH = 256
"""Messages stored in one transaction and written in one go."""
WRITES_IN_FLIGHT = 4
"""Batches being stored at once, each way (a slow disk gathers them into one commit)."""


class SendLoop:
    """What a conversation sends, and its store writes (a part of ``Conversation``)."""

    if TYPE_CHECKING:  # the conversation's, set by ``Conversation.__init__``
        me: str
        peer: str
        log: ConnectionLogger
        _connection: Connection
        _store: MessageStore
        _settings: ChatSettings
        _delivery: Delivery
        _queue: collections.deque[tuple[Message, Sending]]
        _stored: list[Message]
        _work: asyncio.Event
        _room: asyncio.Event
        _progress: asyncio.Event
        _writes: set[asyncio.Task[object]]
        _storing: int
        _outgoing: int
        _ready: list[Message]
        _acks: list[str]
        _eager: bool

        @property
        def closed(self) -> bool: ...
        def _finish(self, reason: str) -> None: ...

    async def _send_loop(self) -> None:
        """Resend the backlog, then store and send new messages in order, and acknowledge
        what was received and stored. New messages are stored a batch at a time, up to
        ``WRITES_IN_FLIGHT`` batches at once; each goes on the wire once stored, in order.
        """
        try:
            backlog = await self._store.unshipped(self.me, self.peer)
            if backlog:
                self.log.info("resending %d unshipped messages to %s", len(backlog), self.peer)
            await self._run(self._delivery.resume(backlog))
            self._eager = True  # new messages may be stored as soon as a batch is full
            while True:
                while not (self._acks or self._stored or self._ready or self._may_store()):
                    self._work.clear()
                    await self._work.wait()
                if self._acks:
                    ids, self._acks = self._acks, []
                    await self._acknowledge(ids)
                if self._stored:  # stored elsewhere (a message for someone away, say)
                    stored, self._stored = self._stored, []
                    await self._run(self._delivery.stored_outgoing(stored))
                    self._progress.set()  # (shipped already: nothing more to wait for)
                if self._ready:
                    ready, self._ready = self._ready, []
                    await self._run(self._delivery.stored_outgoing(ready))
                    self._progress.set()
                while self._may_store():
                    self._store_batch()
        except (ConnectionClosed, ProtocolError) as exc:
            self._finish(f"connection lost: {exc}")

    def _may_store(self) -> bool:
        return bool(self._queue) and self._outgoing < WRITES_IN_FLIGHT

    def _store_batch(self) -> None:
        """Take a batch from the queue and store it in the background (``_keep``); once
        stored, it is ready for the wire (or, if the talk has ended, for the next one)."""
        batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
        self._room.set()  # room for senders
        messages = [message for message, _ in batch]
        self._delivery.submit(messages)  # says: store them first
        self._storing += len(messages)
        self._outgoing += 1

        def stored(writing: asyncio.Task[list[Message]]) -> None:
            self._storing -= len(messages)
            self._outgoing -= 1
            self._work.set()
            if writing.cancelled():
                return
            if (error := writing.exception()) is not None:
                self.log.error("cannot store messages to %s: %s", self.peer, error)
                self._finish(f"store failed: {error}")
                return
            if self.closed:  # stored after the end: not to be left behind
                self._hand_on(messages)
            else:
                self._ready.extend(messages)  # completions come in the order of the writes

        self._write(batch).add_done_callback(stored)

    def _store_queued(self) -> None:
        """The conversation has ended: store what is still queued, for the next talk."""
        if not self._queue:
            return
        batch = list(self._queue)
        self._queue.clear()
        messages = [message for message, _ in batch]
        self._write(batch).add_done_callback(lambda writing: self._hand_on(messages, writing))

    def _hand_on(self, messages: list[Message], writing: asyncio.Task[Any] | None = None) -> None:
        """Ours, stored after the end (unless ``writing`` failed): for the next talk."""
        failed = writing is not None and (writing.cancelled() or writing.exception() is not None)
        if not failed and self._settings.on_unsent is not None:
            self._settings.on_unsent(self.peer, messages)

    async def _acknowledge(self, ids: list[str]) -> None:
        """Acknowledge ``ids``, ``MAX_ACK_IDS`` per ack (all at once might not fit a frame)."""
        await self._connection.send_many(
            [Ack(ids=ids[start : start + MAX_ACK_IDS]) for start in range(0, len(ids), MAX_ACK_IDS)]
        )

    def _write(self, batch: list[tuple[Message, Sending]]) -> asyncio.Task[list[Message]]:
        """Store ``batch`` in the background; its senders learn the outcome."""
        writing = self._keep(self._store.add_many([m for m, _ in batch]))
        writing.add_done_callback(lambda task: resolve_stored(batch, task))
        return writing

    def _keep(self, write: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """Run store write ``write`` as a task that the end of the talk does not stop:
        ``close()`` waits for every one."""
        task = asyncio.create_task(write)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return task

    async def _run(self, effects: list[Effect]) -> None:
        """Carry out the effects that go to the connection or the store."""
        for effect in effects:
            if isinstance(effect, Transmit):
                for start in range(0, len(effect.messages), BATCH):
                    chunk = effect.messages[start : start + BATCH]
                    await self._connection.send_many(await self._wire(chunk))
            elif isinstance(effect, Acknowledge):
                await self._acknowledge(list(effect.ids))
            elif isinstance(effect, MarkShipped):
                # Not waited for: a lost mark means a resend the other side ignores, and
                # the store's reads see it (they wait for the writes queued before them).
                ids = list(effect.ids)
                self._keep(self._mark_shipped(ids))
                self._delivery.shipped(ids)
                self._progress.set()
            else:  # pragma: no cover - the adapter handles every effect it is given
                raise AssertionError(f"unexpected effect {effect!r}")

    async def _wire(self, messages: Sequence[Message]) -> list[Msg]:
        """``messages`` as they go on the wire; a group message with its roster."""
        note = self._settings.group_note
        return [
            to_wire(m, await note(m) if m.group is not None and note is not None else None)
            for m in messages
        ]

    async def _mark_shipped(self, ids: list[str]) -> None:
        """Mark ``ids`` shipped, then tell the application: both, or neither."""
        try:
            await self._store.mark_shipped(self.peer, ids)
        except StoreError as exc:  # they stay unshipped: resent next time, ignored there
            self.log.error("cannot mark messages to %s shipped: %s", self.peer, exc)
            return
        if self._settings.on_shipped is not None:
            self._settings.on_shipped(self.peer, ids)
