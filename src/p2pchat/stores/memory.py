"""The peer's message store in memory (``MemoryMessageStore``): the library's default and
the tests'; gone when the process ends. Interfaces and the server's memory stores are in
``store.py``.

It answers what the SQLite store answers, searches included (a scan with the same rules,
``search.py``), so that a program can start with it and move to a file unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from ..store import GroupRecord, Message
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
        self._groups: dict[str, GroupRecord] = {}
        self._rosters: dict[tuple[str, int], str] = {}
        # Our group messages: id -> member -> [shipped, deposited].
        self._copies: dict[str, dict[str, list[bool]]] = {}

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

    async def next_unread(self, user: str, *, group: str | None = None) -> Message | None:
        for key in self._unread:
            message = self._messages[key]
            if message.group != group:
                continue
            if group is not None or message.recipient == user:
                return message
        return None

    async def mark_read(self, sender: str, ids: Iterable[str]) -> None:
        for message_id in ids:
            self._unread.pop((sender, message_id), None)

    async def mark_deposited(self, ids: Iterable[str], *, recipient: str | None = None) -> None:
        for message_id in ids:
            copies = self._copies.get(message_id)
            if copies is not None and recipient in copies:
                copies[recipient][1] = True
            elif copies is None:
                self._deposited.add(message_id)

    def _copies_of(self, message: Message) -> list[Message]:
        """Our group message, once per member still to have it."""
        copies = self._copies.get(message.id, {})
        return [
            msgspec.structs.replace(message, recipient=member, shipped=False)
            for member, (shipped, _) in copies.items()
            if not shipped
        ]

    async def undeposited(self, sender: str) -> list[Message]:
        found: list[Message] = []
        for m in self._messages.values():
            if m.sender != sender or m.shipped:
                continue
            if m.group is None:
                if m.id not in self._deposited:
                    found.append(m)
            else:
                copies = self._copies.get(m.id, {})
                found.extend(c for c in self._copies_of(m) if not copies[c.recipient][1])
        return found

    async def mark_shipped(self, recipient: str, ids: Iterable[str]) -> None:
        for message_id in ids:
            if (first := self._by_id.get(message_id)) is None:
                continue
            for key in (first, *self._also.get(message_id, ())):
                message = self._messages[key]
                if message.shipped:
                    continue
                if message.group is not None:
                    copies = self._copies.get(message_id, {})
                    if recipient in copies:
                        copies[recipient][0] = True
                        self._ship_if_all(key)
                elif message.recipient == recipient:
                    self._messages[key] = msgspec.structs.replace(message, shipped=True)

    def _ship_if_all(self, key: tuple[str, str]) -> None:
        message = self._messages[key]
        if all(shipped for shipped, _ in self._copies.get(message.id, {}).values()):
            self._messages[key] = msgspec.structs.replace(message, shipped=True)

    async def unshipped(self, sender: str, recipient: str) -> list[Message]:
        found: list[Message] = []
        for m in self._messages.values():
            if m.shipped or m.sender != sender:
                continue
            if m.group is None:
                if m.recipient == recipient:
                    found.append(m)
            elif recipient in self._copies.get(m.id, {}):
                found.extend(c for c in self._copies_of(m) if c.recipient == recipient)
        return found

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
            (
                m
                for m in self._messages.values()
                if (m.sender, m.recipient) in pair and m.group is None
            ),
            key=order,
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

        def whose(m: Message) -> bool:
            if m.group is not None:  # every group message kept is ours to search
                return contact is None or m.sender == contact
            if contact is None:
                return user in (m.sender, m.recipient)
            return (m.sender, m.recipient) in pair

        found = [m for m in self._messages.values() if whose(m) and query.matches(m.body)]
        return sorted(found, key=order, reverse=True)[: max(limit, 0)]

    async def correspondents(self, user: str, *, limit: int | None = None) -> list[str]:
        latest: dict[str, None] = {}
        for m in reversed(self._messages.values()):
            if user in (m.sender, m.recipient) and m.group is None:
                latest.setdefault(m.recipient if m.sender == user else m.sender, None)
        found = list(latest)
        return found if limit is None else found[:limit]

    async def known_key(self, user: str, contact: str) -> str | None:
        return self._keys.get((user, contact))

    async def remember_key(self, user: str, contact: str, key: str, *, now: float) -> None:
        self._keys[(user, contact)] = key

    # Groups.

    async def save_group(self, group: GroupRecord) -> None:
        self._groups[group.id] = group
        self._rosters.setdefault((group.id, group.version), group.roster)

    async def groups(self) -> list[GroupRecord]:
        return list(self._groups.values())

    async def group_roster(self, group: str, version: int) -> str | None:
        return self._rosters.get((group, version))

    async def add_group_messages(self, messages: Sequence[Message], members: Iterable[str]) -> None:
        others = list(members)
        for message in messages:
            key = (message.sender, message.id)
            if key in self._messages:
                continue
            self._messages[key] = message
            if self._by_id.setdefault(message.id, key) is not key:
                self._also.setdefault(message.id, []).append(key)
            self._copies[message.id] = {member: [False, False] for member in others}
            self._ship_if_all(key)

    async def group_delivery(self, message_id: str) -> dict[str, bool]:
        copies = self._copies.get(message_id, {})
        return {member: shipped for member, (shipped, _) in sorted(copies.items())}

    async def drop_deliveries(self, group: str, member: str) -> None:
        for key, message in list(self._messages.items()):
            copies = self._copies.get(message.id)
            if message.group != group or copies is None or member not in copies:
                continue
            if not copies[member][0]:
                del copies[member]
                self._ship_if_all(key)

    async def group_history(self, group: str, *, limit: int | None = None) -> list[Message]:
        found = [m for m in self._messages.values() if m.group == group]
        return found if limit is None else found[-limit:] if limit > 0 else []
