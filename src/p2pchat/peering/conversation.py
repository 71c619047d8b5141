"""One conversation: a direct (or relayed) connection with another user, on asyncio.

A thin adapter around the sans-I/O ``delivery.Delivery``: it feeds it what the connection,
the store and the application do, and carries out the effects it answers with. Three tasks
per conversation: one reads, one sends (the backlog, new messages a batch at a time, acks),
one watches that the other side is still there; store writes run beside them, a few
batches at once each way, completing in order. ``queues.py`` holds what waits in between.

The calls to ``send()`` that arrive while a batch is stored or written share the next one.
A batch goes on the wire once stored, never before: what our store lacks never reached
the other side (docs/operations.md, "Guarantees", says why the commit does not overlap
the wire).

What it promises: ``send()`` returns a message only once it is stored, and every message
handed to it is stored, whatever happens to the connection (then it is resent next time);
``wait_acknowledged()`` returns once the other side has stored it too; ``receive()``
returns each message received once, in order, and every message stored reaches it, even
if the conversation ends meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from ..errors import (
    ConnectionClosed,
    ConversationClosed,
    ProtocolError,
    RemoteProtocolError,
    StoreError,
)
from ..messages import FILE_FRAMES, MAX_ACK_IDS, GroupNote
from ..protocol import Ack, Bye, Error, Msg, Ping, Pong, WireMessage
from ..shared.connection import Connection, keep_alive
from ..store import Message, MessageStore
from .delivery import (
    Acknowledge,
    Deliver,
    Delivery,
    Effect,
    MarkShipped,
    Transmit,
    from_wire,
    to_wire,
)
from .queues import Inbox, Sending, resolve_stored
from .settings import ChatSettings

__all__ = ["ChatSettings", "Conversation"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

BATCH = 256
"""Messages stored in one transaction and written in one go."""
WRITES_IN_FLIGHT = 4
"""Batches being stored at once, each way (a slow disk gathers them into one commit)."""
CLOSE_GRACE = 1.0
"""How long ``close()`` lets what was sent be acknowledged before it says bye."""
RETIRE_GRACE = 10.0
"""How long a connection the talk moved off stays open for the other side to move too."""


class Conversation:
    """A direct connection with one other user.

    ``send()`` stores then sends; ``receive()`` (or ``async for``) yields the messages
    received, each exactly once. Either side may ``close()``; the other then sees
    ConversationClosed once it has read what arrived before.
    """

    def __init__(
        self,
        me: str,
        contact: str,
        connection: Connection,
        *,
        store: MessageStore,
        settings: ChatSettings,
        route: str = "direct",
        via: str = "",
    ) -> None:
        self.me = me
        self.peer = contact
        self.route = route
        """``direct`` for any direct TCP path, or ``relay`` when joined through the server
        (still end-to-end TLS)."""
        self.via = via or ("relayed" if route == "relay" else "dialled")
        """How it was made, as this side saw it: ``dialled`` (by the invitee), ``reversed``
        (the inviter dialled back), ``punched`` (both at once, through NATs) or ``relayed``."""
        self.close_reason = ""
        self.log = connection.log
        self._connection = connection
        self._store = store
        self._settings = settings
        self._delivery = Delivery(me, contact, max_message_size=settings.limits.max_message_size)
        self._inbox = Inbox(settings.limits.max_queue)
        self._queue: collections.deque[tuple[Message, Sending]] = collections.deque()
        self._stored: list[Message] = []  # stored elsewhere, to be sent here
        self._work = asyncio.Event()  # queued, or stored elsewhere: the send loop's wake-up
        self._room = asyncio.Event()  # taken from the queue (or closed): senders' wake-up
        self._progress = asyncio.Event()  # acknowledged (or closed): wait_acknowledged's
        self._closed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._writes: set[asyncio.Task[object]] = set()  # store writes that must finish
        self._storing = 0  # messages taken from the queue, being stored
        self._outgoing = 0  # batches of ours being stored
        self._ready: list[Message] = []  # ours, stored, to go on the wire (in order)
        self._incoming: collections.deque[asyncio.Task[list[Message]]] = collections.deque()
        self._acks: list[str] = []  # received and stored: to acknowledge
        self._moving = False  # the loops are being stopped to go on over another connection
        self._retiring: set[asyncio.Task[None]] = set()  # connections moved off, closing
        self._heard = asyncio.Event()  # something came on the connection (since a move)

    def __repr__(self) -> str:
        state = f"closed: {self.close_reason}" if self.closed else "open"
        return f"<Conversation {self.me} <-> {self.peer} {self.route} ({state})>"

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """Where the other side's connection comes from, as we see it (through a relay:
        the server's address)."""
        return self._connection.remote_address

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def start(self) -> None:
        """Start reading, sending (the backlog first) and watching."""
        self._tasks = [
            asyncio.create_task(self._receive_loop()),
            asyncio.create_task(self._send_loop()),
            asyncio.create_task(self._watch()),
        ]

    async def move(self, connection: Connection, route: str, via: str) -> None:
        """Go on over ``connection`` (proven to be the same contact's), as a new connection
        would: the loops on the old one stop, the delivery starts again from the store's
        backlog (resent messages are dropped by id on the other side, so each is received
        once, in order), and what was received and not handed over goes on. The old
        connection is not closed at once: the other side may still be reading it until it
        moves too (it closes it then); after ``RETIRE_GRACE`` it is closed anyway. Raises
        ConversationClosed if the conversation has ended (the caller closes
        ``connection``)."""
        if self.closed:
            raise ConversationClosed(
                f"conversation with {self.peer} is closed: {self.close_reason}"
            )
        self._moving = True
        try:
            current = asyncio.current_task()
            stopping = [task for task in self._tasks if task is not current]
            for task in stopping:
                task.cancel()
            await asyncio.gather(*stopping, return_exceptions=True)
        finally:
            self._moving = False
        if self.closed:  # ended meanwhile (a store failure): nothing moves
            await self._connection.close()
            raise ConversationClosed(
                f"conversation with {self.peer} is closed: {self.close_reason}"
            )
        old, self._connection = self._connection, connection
        self.log = connection.log
        self.route, self.via = route, via
        self._delivery = Delivery(
            self.me, self.peer, max_message_size=self._settings.limits.max_message_size
        )
        self._heard = asyncio.Event()
        self._progress.set()  # wait_acknowledged() looks again, at the new delivery
        retiring = asyncio.create_task(_retire(old, self._heard))
        self._retiring.add(retiring)
        retiring.add_done_callback(self._retiring.discard)
        self.log.info("conversation with %s moved to a %s connection (%s)", self.peer, route, via)
        # Answered once the other side reads this connection, that is, once it has moved
        # too: then the old one can go at once. (If it fails, the loops find out.)
        with contextlib.suppress(ConnectionClosed, ProtocolError):
            await connection.send(Ping(id="moved"))
        self.start()

    async def _watch(self) -> None:
        """End the conversation once the other side has been silent too long."""
        reason = await keep_alive(
            self._connection,
            interval=self._settings.limits.ping_interval,
            timeout=self._settings.limits.ping_timeout,
        )
        self._finish(f"no answer from {self.peer}: {reason}")
        self._connection.abort()

    # Sending.

    async def send(self, body: str) -> Message:
        """Store ``body`` as a message to the other user, then send it; return the message.

        Returns once the message is stored. If the connection drops, it stays unshipped and
        is resent next time: a message handed to send() is never lost, even if the caller
        stops waiting. Raises ConversationClosed (nothing stored) if the conversation was
        closed already.
        """
        self._settings.check_body(body)  # one call alone: no list, no generator (many tasks)
        self._check_open()
        message = Message.new(self.me, self.peer, body)
        await self._enqueue([message])
        return message

    async def send_many(self, bodies: Iterable[str]) -> list[Message]:
        """Like ``send()`` for several bodies at once, in order: one wait for all of
        them, as many transactions as they need (a burst from a bot, say)."""
        texts = list(bodies)
        for body in texts:
            self._settings.check_body(body)
        self._check_open()
        messages = [Message.new(self.me, self.peer, body) for body in texts]
        if not messages:
            return []
        return await self._enqueue(messages)

    def _check_open(self) -> None:
        if self.closed:
            raise ConversationClosed(
                f"conversation with {self.peer} is closed: {self.close_reason}"
            )

    async def _enqueue(self, messages: list[Message]) -> list[Message]:
        """Queue ``messages`` for the send loop, once there is room; return them once
        stored. The calls that arrive while a batch is stored or written share the next."""
        limit = self._settings.limits.max_queue
        while len(self._queue) >= limit and not self.closed:  # bounded: wait for the loop
            self._room.clear()
            await self._room.wait()
        sending = Sending(messages)
        self._queue.extend((message, sending) for message in messages)
        self._work.set()
        if self.closed:  # it closed while we waited for room: store it for next time
            self._store_queued()
        # Not shielded: a caller who stops waiting still has its messages stored and sent.
        return await sending.future

    async def send_frames(self, frames: Sequence[WireMessage]) -> None:
        """Send another part's frames (file transfers) on this conversation's connection,
        between the chat's own. Raises ConversationClosed if it has ended (or ends)."""
        if self.closed:
            raise ConversationClosed(
                f"conversation with {self.peer} is closed: {self.close_reason}"
            )
        connection = self._connection
        try:
            await connection.send_many(frames)
        except (ConnectionClosed, ProtocolError) as exc:
            if connection is self._connection:  # else the talk moved on: it goes on there
                self._finish(f"connection lost: {exc}")
            raise ConversationClosed(f"conversation with {self.peer} ended: {exc}") from exc

    def transmit(self, message: Message) -> None:
        """Send ``message``, stored (unshipped) already; sent once, after the backlog."""
        self._stored.append(message)
        self._work.set()

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

    async def wait_acknowledged(self) -> None:
        """Wait until the other side has acknowledged (stored) everything sent so far in
        this conversation, backlog included. Raises ConversationClosed if it ends first:
        what is not acknowledged stays unshipped and is resent next time."""
        while not self.closed and self._sending():
            self._progress.clear()
            await self._progress.wait()  # set by each acknowledgement, step, and the end
        if self._sending():
            missing = (
                len(self._queue)
                + self._storing
                + len(self._ready)
                + len(self._delivery.unacknowledged)
            )
            raise ConversationClosed(
                f"conversation with {self.peer} closed with {missing} messages "
                f"unacknowledged: {self.close_reason}"
            )

    def _sending(self) -> bool:
        """Something handed to send() is not acknowledged yet."""
        return bool(
            self._queue
            or self._stored
            or self._storing
            or self._ready
            or not self._delivery.all_acknowledged
        )

    # Receiving.

    async def receive(self) -> Message:
        """The next message from the other user. Raises ConversationClosed at the end,
        once every message received before has been returned. Safe to cancel: a message
        is taken only by the call that returns it."""
        message = await self._inbox.get()
        if message is None:
            raise ConversationClosed(
                f"conversation with {self.peer} is closed: {self.close_reason}"
            )
        return message

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            try:
                yield await self.receive()
            except ConversationClosed:
                return

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

    # Closing.

    def _finish(self, reason: str) -> None:
        """Mark closed, stop the tasks; what is queued is stored for next time."""
        if self.closed:
            return
        self.close_reason = reason
        self._closed.set()
        if not self._incoming:  # else once the last received batch is stored
            self._inbox.close()
        for event in (self._work, self._room, self._progress):
            event.set()
        self.log.info("conversation with %s ended: %s", self.peer, reason)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._store_queued()
        if self._settings.on_end is not None:
            self._settings.on_end(self)

    async def close(self, reason: str = "") -> None:
        """Leave the conversation: tell the other side, close the connection. Returns once
        every message handed to send() is stored. What was sent gets a moment
        (``CLOSE_GRACE``) to be acknowledged first; what is not stays unshipped."""
        if not self.closed:
            with contextlib.suppress(TimeoutError, ConversationClosed):
                async with asyncio.timeout(CLOSE_GRACE):
                    await self.wait_acknowledged()
            self._finish(reason or "closed")
            with contextlib.suppress(ConnectionClosed, ProtocolError):
                async with asyncio.timeout(1.0):
                    await self._connection.send(Bye(reason=reason))
        await self._connection.close()
        for retiring in list(self._retiring):
            retiring.cancel()
        await asyncio.gather(*self._tasks, *self._retiring, return_exceptions=True)
        if self._writes:
            await asyncio.wait(set(self._writes))

    async def wait_closed(self) -> None:
        """Wait until the conversation ends, whoever ends it."""
        await self._closed.wait()

    async def __aenter__(self) -> Conversation:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def _retire(connection: Connection, moved: asyncio.Event) -> None:
    """A connection the talk moved off: read (and drop) what still comes on it until the
    other side closes it or is heard on the new one (``moved``), for ``RETIRE_GRACE`` at
    most, then close it. What the other side sent on it and we drop is not acknowledged:
    it resends it on the new one."""

    async def drain() -> None:
        with contextlib.suppress(ConnectionClosed, ProtocolError):
            while True:
                await connection.recv_batch()

    draining = asyncio.create_task(drain())
    heard = asyncio.create_task(moved.wait())
    try:
        await asyncio.wait({draining, heard}, timeout=RETIRE_GRACE, return_when="FIRST_COMPLETED")
    finally:
        for task in (draining, heard):
            task.cancel()
        await asyncio.gather(draining, heard, return_exceptions=True)
        await connection.close()
