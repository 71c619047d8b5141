"""The peer's message store in memory: the library's default, and the tests'.

It answers what the SQLite store answers, searches included (a scan with the same rules,
``search.py``), so that a program can start with it and move to a file unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from ..store import Message
from .search import parse

__all__ = ["MemoryMessageStore"]


def order(message: Message) -> tuple[float, str, str]:
    """Where a message stands in a history: by (sent_at, id), the sender last (an id is
    unique only per sender)."""
    return (message.sent_at, message.id, message.sender)


class MemoryMessageStore:
    """MessageStore in a dict that keeps insertion order; gone when the process ends."""

    identity_file = None

    def __init__(self) -> None:
        self._messages: dict[tuple[str, str], Message] = {}  # by (sender, id)
        self._by_id: dict[str, tuple[str, str]] = {}  # id -> the first key holding it
        self._also: dict[str, list[tuple[str, str]]] = {}  # id -> other keys (squatted ids)
        self._keys: dict[tuple[str, str], str] = {}
        self._unread: dict[tuple[str, str], None] = {}  # keys, in the order received
        self._deposited: set[str] = set()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def add(self, message: Message) -> bool:
        return bool(await self.add_many([message]))

    async def add_many(self, messages: Sequence[Message], *, unread: bool = False) -> list[Message]:
        added = []
        for message in messages:
            key = (message.sender, message.id)
            if key not in self._messages:
                self._messages[key] = message
                if self._by_id.setdefault(message.id, key) is not key:
                    self._also.setdefault(message.id, []).append(key)
                added.append(message)
                if unread:
                    self._unread[key] = None
        return added

    async def next_unread(self, user: str) -> Message | None:
        for key in self._unread:
            if (message := self._messages[key]).recipient == user:
                return message
        return None

    async def mark_read(self, sender: str, ids: Iterable[str]) -> None:
        for message_id in ids:
            self._unread.pop((sender, message_id), None)

    async def mark_deposited(self, ids: Iterable[str]) -> None:
        self._deposited.update(ids)

    async def undeposited(self, sender: str) -> list[Message]:
        return [
            m
            for m in self._messages.values()
            if m.sender == sender and not m.shipped and m.id not in self._deposited
        ]

    async def mark_shipped(self, recipient: str, ids: Iterable[str]) -> None:
        for message_id in ids:
            if (first := self._by_id.get(message_id)) is None:
                continue
            for key in (first, *self._also.get(message_id, ())):
                message = self._messages[key]
                if not message.shipped and message.recipient == recipient:
                    self._messages[key] = msgspec.structs.replace(message, shipped=True)

    async def unshipped(self, sender: str, recipient: str) -> list[Message]:
        return [
            m
            for m in self._messages.values()
            if not m.shipped and m.sender == sender and m.recipient == recipient
        ]

    async def history(
        self,
        user: str,
        contact: str,
        *,
        before: Message | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        pair = {(user, contact), (contact, user)}
        found = sorted(
            (m for m in self._messages.values() if (m.sender, m.recipient) in pair), key=order
        )
        if before is not None:
            edge = order(before)
            found = [m for m in found if order(m) < edge]
        return found if limit is None else found[-limit:] if limit > 0 else []

    async def search(
        self, user: str, text: str, *, contact: str | None = None, limit: int = 50
    ) -> list[Message]:
        query = parse(text)
        pair = {(user, contact), (contact, user)}
        found = [
            m
            for m in self._messages.values()
            if (
                (m.sender, m.recipient) in pair
                if contact is not None
                else user in (m.sender, m.recipient)
            )
            and query.matches(m.body)
        ]
        return sorted(found, key=order, reverse=True)[: max(limit, 0)]

    async def correspondents(self, user: str, *, limit: int | None = None) -> list[str]:
        latest: dict[str, None] = {}
        for m in reversed(self._messages.values()):
            if user in (m.sender, m.recipient):
                latest.setdefault(m.recipient if m.sender == user else m.sender, None)
        found = list(latest)
        return found if limit is None else found[:limit]

    async def known_key(self, user: str, contact: str) -> str | None:
        return self._keys.get((user, contact))

    async def remember_key(self, user: str, contact: str, key: str, *, now: float) -> None:
        self._keys[(user, contact)] = key
