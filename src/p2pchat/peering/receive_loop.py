"""The receiving half of a ``Conversation`` (``ReceiveLoop``, a part of it): read a batch of
frames, check each (``delivery.py``), store what is new in the background, a few batches at
once, completing in order, and only then hand it over (the inbox; a group's messages,
once admitted by the groups, stored unread for their group) and acknowledge it. File
frames go to the file desk (``on_frame``); a ``bye`` or an ``error`` ends the talk once
what arrived before is stored and acknowledged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ConnectionClosed, ProtocolError, RemoteProtocolError
from ..messages import FILE_FRAMES, GroupNote
from ..protocol import Ack, Bye, Error, Msg, Ping, Pong
from ..store import Message, MessageStore
from .delivery import Acknowledge, Deliver, Delivery, Effect, from_wire
from .queues import Inbox
from .send_loop import WRITES_IN_FLIGHT
from .settings import ChatSettings

if TYPE_CHECKING:
    from ..shared.connection import Connection, ConnectionLogger

__all__ = ["ReceiveLoop"]

_T = TypeVar("_T")


class ReceiveLoop:
    """What a conversation receives (a part of ``Conversation``)."""

    if TYPE_CHECKING:  # the conversation's, set by ``Conversation.__init__``
        me: str
        peer: str
        log: ConnectionLogger
        _connection: Connection
        _store: MessageStore
        _settings: ChatSettings
        _delivery: Delivery
        _inbox: Inbox
        _incoming: collections.deque[asyncio.Task[list[Message]]]
        _acks: list[str]
        _work: asyncio.Event
        _heard: asyncio.Event
        _moving: bool

        @property
        def closed(self) -> bool: ...
        def _finish(self, reason: str) -> None: ...
        async def _run(self, effects: list[Effect]) -> None: ...
        async def _acknowledge(self, ids: list[str]) -> None: ...
        def _keep(self, write: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]: ...

    async def _receive_loop(self) -> None:
        reason = "closed by the other side"
        try:
            while True:
                await self._inbox.wait_for_room()  # a slow reader holds back the sender
                arrived: list[Message] = []
                grouped: list[tuple[Message, GroupNote]] = []
                acked: list[str] = []
                leaving: str | None = None
                batch = await self._connection.recv_batch()
                self._heard.set()
                for wire in batch:
                    if isinstance(wire, Msg) and wire.group is not None:
                        grouped.append((from_wire(wire, self.peer, self.me), wire.group))
                    elif isinstance(wire, Msg):
                        arrived.append(from_wire(wire, self.peer, self.me))
                    elif isinstance(wire, Ack):
                        acked.extend(wire.ids)
                    elif isinstance(wire, Ping):
                        await self._connection.send(Pong(id=wire.id))
                    elif isinstance(wire, Pong):
                        pass
                    elif isinstance(wire, FILE_FRAMES) and self._settings.on_frame is not None:
                        self._settings.on_frame(self, wire)
                    elif isinstance(wire, Bye):
                        leaving = f"{self.peer} left" + (f": {wire.reason}" if wire.reason else "")
                        break
                    elif isinstance(wire, Error):
                        leaving = f"{self.peer} reported an error: {wire.reason}"
                        break
                    else:
                        raise ProtocolError(f"unexpected {type(wire).__name__.lower()} in a chat")
                if arrived:
                    self._delivery.receive_messages(arrived)  # checks them: store them
                    self._store_incoming(arrived)
                    while len(self._incoming) >= WRITES_IN_FLIGHT:  # a slow disk slows us
                        await asyncio.wait({self._incoming[0]})
                if grouped:
                    await self._admit(grouped)
                if acked:
                    await self._run(self._delivery.receive_ack(acked))
                if leaving is not None:
                    if self._incoming:  # stored, handed over, acknowledged if still possible
                        await asyncio.wait(set(self._incoming))
                    if self._acks:
                        # If they are gone already: unacked, they resend, and we dedup.
                        with contextlib.suppress(ConnectionClosed, ProtocolError):
                            await self._acknowledge(self._acks)
                        self._acks = []
                    reason = leaving
                    return
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            if not isinstance(exc, RemoteProtocolError):
                await self._connection.fail(exc)
        except ConnectionClosed as exc:
            reason = f"connection lost: {exc}"
        finally:
            if not self._moving:  # else the talk goes on over another connection
                self._finish(reason)
                await self._connection.close()

    async def _admit(self, grouped: list[tuple[Message, GroupNote]]) -> None:
        """Group messages: checked like ours (who from, size), then judged by the groups
        (membership, signatures); those taken are stored unread for their group, the
        refused acknowledged and dropped, the others left for a resend."""
        self._delivery.receive_messages([m for m, _ in grouped])  # ProtocolError if bad
        admit = self._settings.admit_group
        if admit is None:
            return
        taken, refused, _ = await admit(self.peer, grouped)
        if taken:
            self._store_incoming(taken, group=True, also_ack=refused)
        elif refused:
            self._acks.extend(refused)
            self._work.set()

    def _store_incoming(
        self, arrived: list[Message], *, group: bool = False, also_ack: Sequence[str] = ()
    ) -> None:
        """Store a received batch in the background. Once stored, what is new goes to the
        inbox (group messages: stored unread, for their group), even if this conversation
        is closed meanwhile (the inbox closes only after it), and the batch is
        acknowledged by the send loop. Writes complete in order."""

        def stored(writing: asyncio.Task[list[Message]]) -> None:
            self._incoming.remove(writing)
            try:
                if writing.cancelled():
                    return
                if (error := writing.exception()) is not None:
                    self.log.error("conversation with %s: store failed: %s", self.peer, error)
                    self._finish(f"store failed: {error}")
                    return
                for effect in self._delivery.stored_incoming(arrived, writing.result()):
                    if isinstance(effect, Deliver) and group:
                        if self._settings.on_group_stored is not None:
                            self._settings.on_group_stored(effect.messages)
                    elif isinstance(effect, Deliver):
                        messages = list(effect.messages)
                        if self._settings.deliverable is not None:  # file offers go apart
                            messages = self._settings.deliverable(self.peer, messages)
                        self._inbox.put_all(messages)
                    elif isinstance(effect, Acknowledge):
                        self._acks.extend([*effect.ids, *also_ack])
                        self._work.set()
            finally:
                if self.closed and not self._incoming:
                    self._inbox.close()

        writing = self._keep(self._store.add_many(arrived, unread=group))
        self._incoming.append(writing)
        writing.add_done_callback(stored)
