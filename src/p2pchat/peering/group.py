"""``Group``: the handle an application holds on one group (``Peer.create_group``,
``next_group``, ``groups``); ``groups.py`` does the work behind it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Protocol

from ..errors import NotGroupMember
from ..messages import GroupChange
from ..protocol import check_name
from ..store import GroupRecord, Message, MessageStore
from .unread import UnreadReader

__all__ = ["Group", "Keeper"]


class Keeper(Protocol):
    """What a ``Group`` needs of the peer's groups (``groups.Groups``)."""

    @property
    def name(self) -> str: ...
    @property
    def store(self) -> MessageStore: ...
    def record(self, group_id: str) -> GroupRecord: ...
    async def send(self, group_id: str, bodies: list[str]) -> list[Message]: ...
    async def change(self, group_id: str, change: GroupChange, user: str) -> None: ...
    async def leave(self, group_id: str) -> None: ...


class Group:
    """One group this peer is (or was) in: send to every member, receive from them.

    ``members`` is kept current as changes arrive. ``receive()`` (or ``async for``)
    yields each message of the group once, in order per sender, also across restarts
    (notices of membership changes among them: ``message.notice`` set)."""

    def __init__(self, groups: Keeper, group_id: str) -> None:
        self._groups = groups
        self.id = group_id
        self._reader = UnreadReader(groups.store, groups.name, group=group_id)
        self._out = asyncio.Event()  # this peer is out, and what told it is stored
        if not groups.record(group_id).active:
            self._out.set()

    def __repr__(self) -> str:
        return f"<Group {self.id} {self.name!r} {len(self.members)} members>"

    @property
    def _record(self) -> GroupRecord:
        return self._groups.record(self.id)

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def admin(self) -> str:
        """Its creator: the one member who adds and removes."""
        return self._record.admin

    @property
    def members(self) -> tuple[str, ...]:
        """The members, sorted, this peer included while it is one."""
        return self._record.members

    @property
    def version(self) -> int:
        """The membership version: one more at each change."""
        return self._record.version

    @property
    def active(self) -> bool:
        """True while this peer is a member (not after it left or was removed)."""
        return self._record.active

    async def send(self, body: str) -> Message:
        """Store ``body`` as a message to the group and return it, once stored; it then
        goes to every other member exactly once, in order, whoever is online. Raises
        NotGroupMember (nothing stored) once this peer is out, MessageTooLarge."""
        return (await self.send_many((body,)))[0]

    async def send_many(self, bodies: Iterable[str]) -> list[Message]:
        """Like ``send()`` for several, in order, stored in one transaction."""
        return await self._groups.send(self.id, list(bodies))

    async def receive(self) -> Message:
        """The next message of the group from another member, each once, also across
        restarts; waits for one. Raises NotGroupMember once this peer is out of the
        group and every message received before has been returned."""
        message = await self._reader.next(give_up=self._out)
        if message is None:
            raise NotGroupMember(f"{self._groups.name} is no longer in {self.name}")
        return message

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            try:
                yield await self.receive()
            except NotGroupMember:
                return

    async def history(self, *, limit: int | None = None) -> list[Message]:
        """The group's messages, ours and others', oldest first (the last ``limit``)."""
        return await self._groups.store.group_history(self.id, limit=limit)

    async def add(self, user: str) -> None:
        """Add ``user`` (admin only: NotGroupAdmin for others; UnknownUser, TooManyMembers)."""
        await self._groups.change(self.id, "add", check_name(user))

    async def remove(self, user: str) -> None:
        """Remove ``user`` (admin only): it gets nothing sent after this."""
        await self._groups.change(self.id, "remove", check_name(user))

    async def leave(self) -> None:
        """Leave the group: the others are told (signed by us); we get nothing more."""
        await self._groups.leave(self.id)

    async def delivery(self, message: Message) -> dict[str, bool]:
        """For our ``message``: each member it was sent to, and whether they stored it."""
        return await self._groups.store.group_delivery(message.id)

    def _arrived(self) -> None:
        self._reader.arrived()

    def _back(self) -> None:
        self._out.clear()

    def _ended(self) -> None:
        self._out.set()
        self._reader.arrived()
