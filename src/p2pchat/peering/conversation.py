"""One conversation: a direct (or relayed) connection with another user, on asyncio.

A thin adapter around the sans-I/O ``delivery.Delivery``: it feeds it what the connection,
the store and the application do, and carries out the effects it answers with. Three tasks
per conversation: one reads, one sends (the backlog, new messages a batch at a time, acks),
one watches that the other side is still there; store writes run beside them, a few
batches at once each way, completing in order. ``queues.py`` holds what waits in between;
the loops are parts of ``Conversation`` in their own modules: ``send_loop.py`` (the
backlog, ours a batch at a time, acks, the delivery's effects) and ``receive_loop.py``
(reading, checking, storing and handing over theirs).

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
from collections.abc import AsyncIterator, Iterable, Sequence

from ..errors import ConnectionClosed, ConversationClosed, ProtocolError
from ..protocol import Bye, Ping, WireMessage
from ..shared.connection import Connection, keep_alive
from ..store import Message, MessageStore
from .delivery import Delivery
from .queues import Inbox, Sending
from .receive_loop import ReceiveLoop
from .send_loop import BATCH, SendLoop
from .settings import ChatSettings

__all__ = ["ChatSettings", "Conversation"]

logger = logging.getLogger(__name__)

CLOSE_GRACE = 1.0
"""How long ``close()`` lets what was sent be acknowledged before it says bye."""
RETIRE_GRACE = 10.0
"""How long a connection the talk moved off stays open for the other side to move too."""


class Conversation(ReceiveLoop, SendLoop):
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
        self._eager = False  # the send loop has resent the backlog: new ones may go
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
        self._eager = False  # until the next send loop has resent the backlog
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
        if self._eager and not self.closed and len(self._queue) >= BATCH and self._may_store():
            # A full batch goes to the store now, not once every task that is about to
            # call send() has queued its message: the store works while they do.
            self._store_batch()
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
