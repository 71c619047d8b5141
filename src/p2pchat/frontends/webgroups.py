"""The web page's groups: what the page is told of them, and what its group commands do.

``WebGroups`` serves ``WebUI`` (web.py) through the public ``Peer`` API only: it follows
every group the peer is in (those it had, those it makes, those it is added to), tells
every page of each message and change of members, and carries out the page's
``create_group``, ``open_group``, ``group_send``, ``group_add``, ``group_remove`` and
``group_leave``. Names, group names and bodies from others go to the page as JSON
strings, which it inserts as text only.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Final

from .. import Group, Message, P2PChatError, Peer
from . import webevents as ev

__all__ = ["WebGroups"]

HISTORY: Final = 200
"""A group's messages read from the store when its talk is shown."""
MAX_GROUPS: Final = 512
"""Groups listed at most: those the peer is in (``max_groups``, 256 by default) and
those it left; the oldest it left go first (their history stays in the store)."""
PENDING: Final = 4096
"""Our group messages watched for their delivery to all at most (the oldest go: their
mark is right again when the group is next shown)."""


class WebGroups:
    """The groups of one peer, as its web page shows them."""

    def __init__(
        self,
        peer: Peer,
        *,
        broadcast: Callable[[ev.Event], None],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        watched: Callable[[], bool],
        fit: Callable[[list[ev.WebMessage]], list[ev.WebMessage]],
    ) -> None:
        """``broadcast`` tells every page; ``spawn`` runs a task until the server closes;
        ``watched()``: a page is open now (else arrivals count as unread); ``fit`` keeps
        the newest messages that fit in one event."""
        self.peer = peer
        self._broadcast = broadcast
        self._spawn = spawn
        self._watched = watched
        self._fit = fit
        self._groups: dict[str, Group] = {}  # by id, in the order first seen
        self._reading: set[str] = set()  # ids of the groups whose messages are followed
        self._unread: dict[str, int] = {}
        self._pending: dict[str, tuple[Group, Message]] = {}  # ours, not yet with all

    async def start(self) -> None:
        """Follow the groups the peer is in, then those it is added to."""
        for group in await self.peer.groups():
            self._follow(group)
        self._spawn(self._watch())

    async def _watch(self) -> None:
        while True:
            group = await self.peer.next_group()
            if group.id not in self._reading:  # new, or added again after it was left
                self._follow(group)
                self._broadcast(ev.GroupEvent(group=self._info(group), added=True))

    def _follow(self, group: Group) -> None:
        """List ``group`` and follow what arrives in it."""
        if group.id not in self._groups and len(self._groups) >= MAX_GROUPS:
            left = next((g for g in self._groups if g not in self._reading), None)
            if left is None:
                return  # more than max_groups could be: nothing to follow it with
            del self._groups[left]
            self._unread.pop(left, None)
        self._groups[group.id] = group
        self._unread.setdefault(group.id, 0)
        if group.id not in self._reading:
            self._reading.add(group.id)
            self._spawn(self._read(group))

    async def _read(self, group: Group) -> None:
        """Tell the pages of what arrives in ``group``, and of who is in it, until this
        peer is no longer a member."""
        members = list(group.members)
        try:
            async for message in group:
                if list(group.members) != members:
                    members = list(group.members)
                    self._broadcast(self._members(group))
                if not self._watched():
                    self._unread[group.id] = self._unread.get(group.id, 0) + 1
                event = ev.GroupMessage(group=group.id, message=ev.WebMessage.of(message))
                self._broadcast(event)
        finally:
            self._reading.discard(group.id)
        self._broadcast(self._members(group))

    def _members(self, group: Group) -> ev.GroupMembers:
        return ev.GroupMembers(
            group=group.id,
            admin=group.admin,
            members=list(group.members),
            member=group.active,
        )

    def _info(
        self, group: Group, history: list[ev.WebMessage] | None = None, *, older: bool = True
    ) -> ev.GroupInfo:
        """``group`` as the page lists it; without ``history``, ``older`` tells the page
        to ask for it when it shows the group."""
        return ev.GroupInfo(
            id=group.id,
            name=group.name,
            admin=group.admin,
            members=list(group.members),
            member=group.active,
            history=history or [],
            older=older,
            unread=self._unread.get(group.id, 0),
        )

    def greeting(self) -> list[ev.Event]:
        """Every group followed, one event each, without history (a page asks for it
        with ``open_group``): sent after the snapshot, each bounded by the peer's bound
        on members. Their unread counts are the page's to keep from then on."""
        events: list[ev.Event] = [
            ev.GroupEvent(group=self._info(group)) for group in self._groups.values()
        ]
        for group_id in self._unread:
            self._unread[group_id] = 0
        return events

    async def _shown(self, group: Group) -> ev.GroupInfo:
        """``group`` with its newest messages that fit in one event."""
        messages = await group.history(limit=HISTORY)
        for message in messages:
            self._expect(group, message)
        stored = [ev.WebMessage.of(m) for m in messages]
        history = self._fit(stored)
        self._unread[group.id] = 0
        return self._info(group, history, older=len(history) < len(stored))

    def name_of(self, group_id: str) -> str:
        """The name of the group ``group_id``, "" if it is not listed (left long ago)."""
        group = self._groups.get(group_id)
        return group.name if group is not None else ""

    def _group(self, group_id: str) -> Group:
        group = self._groups.get(group_id)
        if group is None:
            raise P2PChatError("no such group here: it may have been left, or never made")
        return group

    async def handle(self, command: ev.GroupCommand) -> list[ev.Event]:
        """Carry out one group command; what only the page that sent it is to get (the
        rest is broadcast). P2PChatError says what failed."""
        if isinstance(command, ev.CreateGroup):
            group = await self.peer.create_group(command.name, list(command.members))
            self._follow(group)
            await self._notices_sent(group)
            self._broadcast(ev.GroupEvent(group=self._info(group)))
            return [ev.GroupEvent(group=await self._shown(group), focus=True)]
        group = self._group(command.group)
        if isinstance(command, ev.OpenGroup):
            return [ev.GroupEvent(group=await self._shown(group), focus=True)]
        if isinstance(command, ev.GroupSend):
            message = await group.send(command.body)
            self._expect(group, message)
            self._broadcast(ev.GroupMessage(group=group.id, message=ev.WebMessage.of(message)))
        elif isinstance(command, ev.GroupAdd):
            await group.add(command.user)
            await self._notices_sent(group)
            self._broadcast(self._members(group))
        elif isinstance(command, ev.GroupRemove):
            await group.remove(command.user)
            await self._notices_sent(group)
            self._broadcast(self._members(group))
        elif isinstance(command, ev.GroupLeave):
            await group.leave()
            await self._notices_sent(group)
            self._broadcast(self._members(group))
        return []

    # Delivery marks.

    async def _notices_sent(self, group: Group) -> None:
        """Watch the notice a change of ours just sent (its receipts are a group's)."""
        for message in await group.history(limit=4):
            self._expect(group, message)

    def _expect(self, group: Group, message: Message) -> None:
        """Watch our ``message`` (or notice) until every member has stored it."""
        if message.sender == self.peer.name and not message.shipped:
            self._pending[message.id] = (group, message)
            while len(self._pending) > PENDING:
                del self._pending[next(iter(self._pending))]

    def receipts(self, ids: list[str]) -> list[str]:
        """A member (or a contact) has stored these: those of ``ids`` that are our group
        messages are checked (each delivered once all its members have it); the others
        are returned, for the one-to-one marks."""
        ours = [i for i in ids if i in self._pending]
        if ours:
            self._spawn(self._check(ours))
        return [i for i in ids if i not in self._pending]

    async def _check(self, ids: list[str]) -> None:
        done: dict[str, list[str]] = {}
        for message_id in ids:
            if (pending := self._pending.get(message_id)) is None:
                continue  # checked already, by the receipt of another member
            group, message = pending
            if all((await group.delivery(message)).values()):
                self._pending.pop(message_id, None)
                done.setdefault(group.id, []).append(message_id)
        for group_id, shipped in done.items():
            self._broadcast(ev.GroupShipped(group=group_id, ids=shipped))
