"""The delivery rules of one conversation, with no I/O: no sockets, no tasks, no store.

``Delivery`` is fed what happened (messages submitted by the application, writes the
store has finished, messages and acknowledgements received, the connection opened) and
answers with what to do now, as small effect objects, in the order to do them:

``StoreOutgoing``
    write these messages, unshipped, before anything else happens to them;
``Transmit``
    put these stored messages on the wire (or in the mailbox), in this order;
``StoreIncoming``
    write these received messages (the store ignores an id it has);
``Deliver``
    hand these to the application: stored, and not seen before;
``Acknowledge``
    tell the other side these are stored (never before they are);
``MarkShipped``
    the other side has stored these of ours: set their ``shipped`` flag.

The rules it keeps: a message is stored before it is sent (so that what a sender's store
lacks never reached anyone: docs/operations.md says why the sender's commit does not
overlap the wire); what was left unshipped last time (the backlog) is sent first, in
order, then new messages in the order they were stored, each once per connection; a
received message is stored before it is acknowledged and handed over once; an
acknowledgement counts only for messages sent here. The asyncio
``Conversation`` (and the mailbox) run these effects; this object decides them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from ..errors import ProtocolError
from ..messages import MAX_TIME, MESSAGE_ID_PATTERN, GroupNote, Msg
from ..store import Message

__all__ = [
    "Acknowledge",
    "Deliver",
    "Delivery",
    "Effect",
    "MarkShipped",
    "StoreIncoming",
    "StoreOutgoing",
    "Transmit",
    "from_wire",
    "to_wire",
]


@dataclass(frozen=True, slots=True)
class StoreOutgoing:
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Transmit:
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class StoreIncoming:
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Deliver:
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Acknowledge:
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MarkShipped:
    ids: tuple[str, ...]


_MESSAGE_ID: Final = re.compile(MESSAGE_ID_PATTERN)

Effect = StoreOutgoing | Transmit | StoreIncoming | Deliver | Acknowledge | MarkShipped


class Delivery:
    """Exactly-once delivery between ``me`` and ``contact`` over one connection.

    A new connection gets a new ``Delivery``: ``resume(backlog)`` with the messages the store
    still holds unshipped for ``contact`` starts it; messages stored before that wait
    behind the backlog.
    """

    def __init__(self, me: str, contact: str, *, max_message_size: int | None = None) -> None:
        self.me = me
        self.contact = contact
        self.max_message_size = max_message_size
        self._resumed = False
        self._held: list[Message] = []  # stored before resume(): sent after the backlog
        self._unacked: dict[str, Message] = {}  # sent on this connection, not acknowledged

    # Sending.

    def submit(self, messages: Sequence[Message]) -> list[Effect]:
        """The application wants these sent: they are stored first."""
        for message in messages:
            if (message.sender, message.recipient) != (self.me, self.contact):
                raise ValueError(f"{message.id} is not a message from {self.me} to {self.contact}")
        return [StoreOutgoing(tuple(messages))] if messages else []

    def stored_outgoing(self, messages: Iterable[Message]) -> list[Effect]:
        """These are stored (unshipped): send them, unless the backlog has not gone yet."""
        if not self._resumed:
            self._held.extend(messages)
            return []
        return self._transmit(messages)

    def resume(self, backlog: Sequence[Message]) -> list[Effect]:
        """The connection is open and ``backlog`` (unshipped, oldest first) was read from
        the store: send it, then whatever was stored meanwhile."""
        if self._resumed:
            raise RuntimeError("resume() once per connection")
        self._resumed = True
        held, self._held = self._held, []
        return self._transmit([*backlog, *held])

    def _transmit(self, messages: Iterable[Message]) -> list[Effect]:
        fresh = []
        for message in messages:
            if message.id not in self._unacked and not message.shipped:
                self._unacked[message.id] = message
                fresh.append(message)
        return [Transmit(tuple(fresh))] if fresh else []

    def receive_ack(self, ids: Iterable[str]) -> list[Effect]:
        """The other side says it stored these: ours among them are now shipped."""
        known = tuple(dict.fromkeys(i for i in ids if i in self._unacked))
        return [MarkShipped(known)] if known else []

    def shipped(self, ids: Iterable[str]) -> None:
        """The store has marked these shipped."""
        for message_id in ids:
            self._unacked.pop(message_id, None)

    @property
    def unacknowledged(self) -> list[Message]:
        """Sent on this connection and not yet acknowledged, in the order sent."""
        return list(self._unacked.values())

    @property
    def all_acknowledged(self) -> bool:
        return not self._unacked and not self._held

    # Receiving.

    def receive_messages(self, messages: Sequence[Message]) -> list[Effect]:
        """Messages from ``contact`` arrived on the conversation: check who they are from
        and their size (their ids and times were checked by the wire's types as they were
        decoded), then store them. Raises ProtocolError for the first that breaks a rule."""
        pair = (self.contact, self.me)
        for message in messages:
            if (message.sender, message.recipient) != pair:
                raise ProtocolError(f"message {message.id} is not from {pair[0]} to {pair[1]}")
            self._check_size(message)
        unique = tuple({m.id: m for m in messages}.values())
        return [StoreIncoming(unique)] if unique else []

    def check_incoming(self, message: Message) -> None:
        """Raise ProtocolError unless ``message`` is from ``contact`` to ``me``, within the
        size limit, with an id of the wire's form and a finite time within bounds (what
        the wire decoder checks, for messages that came another way: a mail letter)."""
        if (message.sender, message.recipient) != (self.contact, self.me):
            raise ProtocolError(f"message {message.id} is not from {self.contact} to {self.me}")
        if _MESSAGE_ID.match(message.id) is None:
            raise ProtocolError(f"message id {message.id[:80]!r} is not of the wire's form")
        if not 0.0 <= message.sent_at <= MAX_TIME:  # False for NaN too
            raise ProtocolError(f"message {message.id} has an impossible time {message.sent_at!r}")
        self._check_size(message)

    def _check_size(self, message: Message) -> None:
        if self.max_message_size is not None:
            size = len(message.body.encode("utf-8", "surrogatepass"))
            if size > self.max_message_size:
                raise ProtocolError(
                    f"message of {size} bytes is over the limit of {self.max_message_size} bytes"
                )

    def stored_incoming(self, batch: Sequence[Message], new: Sequence[Message]) -> list[Effect]:
        """``batch`` is stored; ``new`` are those the store did not have before. Hand the
        new ones over, then acknowledge the whole batch (duplicates too: the other side
        resends until it hears an acknowledgement)."""
        effects: list[Effect] = []
        if new:
            effects.append(Deliver(tuple(new)))
        if batch:
            effects.append(Acknowledge(tuple(m.id for m in batch)))
        return effects


def to_wire(message: Message, group: GroupNote | None = None) -> Msg:
    """``message`` as it goes on a conversation's connection (a group message with the
    ``group`` note it carries)."""
    return Msg(id=message.id, ts=message.sent_at, body=message.body, group=group)


def from_wire(wire: Msg, sender: str, recipient: str) -> Message:
    """A message received on a conversation's connection, as it is stored."""
    return Message(
        id=wire.id,
        sender=sender,
        recipient=recipient,
        body=wire.body,
        sent_at=wire.ts,
        shipped=True,
    )
