"""Storage behind small interfaces: users for the server, messages for a peer.

Each interface is a ``typing.Protocol``; the server and the peer only ever call these
methods, so a backend can be swapped without touching them. Two backends ship: in memory
(here: tests and the library's default) and SQLite (``p2pchat.sqlite``: the commands'
default). Every backend is tested by one shared suite.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import msgspec

__all__ = [
    "Binding",
    "MemoryMessageStore",
    "MemoryUserStore",
    "Message",
    "MessageStore",
    "UserRecord",
    "UserStore",
]


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One chat message as a peer stores it. ``shipped``: the recipient has acknowledged it."""

    id: str
    sender: str
    recipient: str
    body: str
    sent_at: float
    shipped: bool = False


class UserRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the server remembers of a user name."""

    name: str
    addresses: list[tuple[str, int]]
    online: bool
    first_seen: float
    last_seen: float
    key: str | None = None


class Binding(msgspec.Struct, frozen=True, kw_only=True):
    """Whom a name belongs to: the name as registered (names are unique whatever their
    case), the key bound to it, and whether this very call registered it."""

    name: str
    key: str
    created: bool = False


class UserStore(Protocol):
    """The signalling server's table of users and their presence."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def reset_presence(self) -> None:
        """Mark everyone offline: called at server start, when no session exists yet."""

    async def set_online(self, name: str, addresses: list[tuple[str, int]], *, now: float) -> None:
        """Record a login: creates the user the first time the name is seen."""

    async def set_offline(self, name: str, *, now: float) -> None: ...
    async def get(self, name: str) -> UserRecord | None: ...
    async def online(self, *, limit: int | None = None) -> list[str]:
        """Names of the users online now, sorted."""

    async def bind_key(
        self, name: str, key: str, *, now: float, create: bool = True
    ) -> Binding | None:
        """Whom ``name`` belongs to, binding ``key`` to it on first use.

        The user is looked up whatever the case of ``name``; the answer's ``name`` is the
        registered spelling and ``key`` the bound key (either may differ from what was
        asked: the caller refuses the login then). An unknown name is registered, with
        ``key``, only if ``create``; otherwise the answer is None.

        Atomic: of two first logins racing for a name, one key wins and both see it.
        """


class MessageStore(Protocol):
    """A peer's messages, sent and received."""

    @property
    def identity_file(self) -> Path | None:
        """Where a peer using this store keeps its identity when given none (a store that
        outlives the process: the name must outlive it too), or None (ephemeral)."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def add(self, message: Message) -> bool:
        """Store ``message`` unless its id is known; True if it was new."""

    async def add_many(self, messages: Sequence[Message]) -> list[Message]:
        """Store several in one transaction; return those that were new, in order."""

    async def mark_shipped(self, recipient: str, ids: Iterable[str]) -> None:
        """Mark shipped those of ``ids`` that are messages to ``recipient`` (an ack counts
        only for messages sent to whoever acknowledges them)."""

    async def unshipped(self, sender: str, recipient: str) -> list[Message]:
        """Messages from ``sender`` to ``recipient`` not yet acknowledged, oldest first."""

    async def history(self, user: str, contact: str, *, limit: int | None = None) -> list[Message]:
        """Messages between the two, both directions, oldest first (the last ``limit``)."""

    async def known_key(self, user: str, contact: str) -> str | None:
        """The key remembered for ``contact``, or None if they never talked."""

    async def remember_key(self, user: str, contact: str, key: str, *, now: float) -> None:
        """Remember (or replace) the key of ``contact``."""


# In memory.


class MemoryUserStore:
    """UserStore in a dict; gone when the process ends."""

    def __init__(self) -> None:
        self._users: dict[str, UserRecord] = {}
        self._spelling: dict[str, str] = {}  # casefolded name -> registered name

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def reset_presence(self) -> None:
        for name, user in self._users.items():
            self._users[name] = msgspec.structs.replace(user, online=False)

    async def set_online(self, name: str, addresses: list[tuple[str, int]], *, now: float) -> None:
        self._spelling.setdefault(name.casefold(), name)
        known = self._users.get(name)
        self._users[name] = UserRecord(
            name=name,
            addresses=list(addresses),
            online=True,
            first_seen=known.first_seen if known else now,
            last_seen=now,
            key=known.key if known else None,
        )

    async def set_offline(self, name: str, *, now: float) -> None:
        if (known := self._users.get(name)) is not None:
            self._users[name] = msgspec.structs.replace(known, online=False, last_seen=now)

    async def get(self, name: str) -> UserRecord | None:
        return self._users.get(name)

    async def online(self, *, limit: int | None = None) -> list[str]:
        names = sorted(name for name, user in self._users.items() if user.online)
        return names if limit is None else names[:limit]

    async def bind_key(
        self, name: str, key: str, *, now: float, create: bool = True
    ) -> Binding | None:
        registered = self._spelling.get(name.casefold(), name)
        known = self._users.get(registered)
        created = known is None
        if known is None:
            if not create:
                return None
            known = UserRecord(name=name, addresses=[], online=False, first_seen=now, last_seen=now)
            self._spelling[name.casefold()] = name
        if known.key is None:
            known = msgspec.structs.replace(known, key=key)
        self._users[registered] = known
        assert known.key is not None
        return Binding(name=known.name, key=known.key, created=created)


class MemoryMessageStore:
    """MessageStore in a dict that keeps insertion order; gone when the process ends."""

    identity_file = None

    def __init__(self) -> None:
        self._messages: dict[str, Message] = {}
        self._keys: dict[tuple[str, str], str] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def add(self, message: Message) -> bool:
        return bool(await self.add_many([message]))

    async def add_many(self, messages: Sequence[Message]) -> list[Message]:
        added = []
        for message in messages:
            if message.id not in self._messages:
                self._messages[message.id] = message
                added.append(message)
        return added

    async def mark_shipped(self, recipient: str, ids: Iterable[str]) -> None:
        for message_id in ids:
            message = self._messages.get(message_id)
            if message is not None and not message.shipped and message.recipient == recipient:
                self._messages[message_id] = msgspec.structs.replace(message, shipped=True)

    async def unshipped(self, sender: str, recipient: str) -> list[Message]:
        return [
            m
            for m in self._messages.values()
            if not m.shipped and m.sender == sender and m.recipient == recipient
        ]

    async def history(self, user: str, contact: str, *, limit: int | None = None) -> list[Message]:
        pair = {(user, contact), (contact, user)}
        found = [m for m in self._messages.values() if (m.sender, m.recipient) in pair]
        return found if limit is None else found[-limit:] if limit > 0 else []

    async def known_key(self, user: str, contact: str) -> str | None:
        return self._keys.get((user, contact))

    async def remember_key(self, user: str, contact: str, key: str, *, now: float) -> None:
        self._keys[(user, contact)] = key
