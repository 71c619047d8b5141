"""The console's groups: create, list, talk in, add, remove, leave; their news shown.

``ConsoleGroups`` serves ``PeerConsole`` (console.py), through the public ``Peer`` API
only. A group is named on the console by ``#`` and its name, or its number in ``gs``
(numbers are given in the order groups are first seen, and kept for the session): a
group's name is chosen by whoever made it, so two can share one, and a name may hold
spaces. Every line goes through the console's ``show``, which makes what others wrote
(group names, member names, bodies) visible text, never terminal commands.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Final

from .. import Group, Message, P2PChatError, Peer
from .terminal import message_lines

__all__ = ["ConsoleGroups"]

_PLAIN: Final = re.compile(r"[\w.-]+")

HISTORY_SHOWN = 20
"""How many past messages of a group are shown when its talk is entered."""
HISTORY_SCANNED = 200
"""How many past messages of each group are looked through at the start for ours that
some member has still to store."""
NOTICES_SCANNED = 4
"""How many of a group's newest messages are looked through for the notice of a change."""
OURS_KEPT = 4096
"""Ids of our group messages not yet with every member, kept at most (see ``ours``)."""

Show = Callable[..., Awaitable[None]]


def _members(group: Group) -> str:
    """``alice (admin), bob, carol``."""
    return ", ".join(f"{m} (admin)" if m == group.admin else m for m in group.members)


class ConsoleGroups:
    """The group commands and the groups' news, for one console."""

    def __init__(self, peer: Peer, show: Show, focus: Callable[[Group | None], None]) -> None:
        self.peer = peer
        self._show = show
        self._focus = focus
        self.focus: Group | None = None
        """The group whose talk is the current one."""
        self._numbers: dict[str, int] = {}  # group id -> its number on this console
        self._groups: dict[str, Group] = {}  # group id -> the group, as last seen
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._left: set[str] = set()  # ids of the groups left from this console: said
        self.ours: dict[str, None] = {}
        """Ids of our group messages some member has still to store: their receipts are
        no news of a one-to-one letter (the console tells of those)."""

    # Lifecycle.

    async def run(self) -> None:
        """Follow the groups this peer is in, then those it is added to (until cancelled)."""
        try:
            for group in await self.peer.groups():
                self._follow(group)
                for message in await group.history(limit=HISTORY_SCANNED):
                    self._sent(message)
            while True:
                group = await self.peer.next_group()
                if group.id in self._readers:
                    continue  # known already (created here, or listed at the start)
                self._left.discard(group.id)  # added again after leaving it
                self._follow(group)
                await self._show(
                    f"* {group.admin} added you to the group {self.label(group)} "
                    f"({_members(group)}); t {self.label(group)} to talk there"
                )
        finally:
            readers = list(self._readers.values())
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    def _follow(self, group: Group) -> None:
        """Number ``group`` and show what arrives in it from now on."""
        self._groups[group.id] = group
        self._numbers.setdefault(group.id, len(self._numbers) + 1)
        if group.id not in self._readers:
            self._readers[group.id] = asyncio.create_task(self._read(group))

    async def _read(self, group: Group) -> None:
        members = set(group.members)
        async for message in group:
            await self._news(group, members)
            members = set(group.members)
            if not message.notice:  # a notice's news is who is in the group now: said
                await self._show(*self.format(group, message))
        await self._news(group, members)
        self._readers.pop(group.id, None)
        if self.focus is not None and self.focus.id == group.id:
            self._focus(None)
        if not group.active and group.id not in self._left:
            await self._show(f"* you are no longer in the group {self.label(group)}")

    async def _news(self, group: Group, before: set[str]) -> None:
        """Who joined ``group`` or left it since ``before`` (its members then)."""
        now = set(group.members)
        for user in sorted(now - before):
            await self._show(f"* {user} is now in the group {self.label(group)}")
        for user in sorted(before - now - {self.peer.name}):
            await self._show(f"* {user} is no longer in the group {self.label(group)}")

    # Naming and showing.

    def label(self, group: Group) -> str:
        """``#friends``; a name of other characters than letters, digits, ``.``, ``_``
        and ``-`` in quotes (``#"my friends"``), so that no name can close the brackets
        it is shown in and pass for a sender. Its control characters are made visible
        by ``show``, like all text from others."""
        if _PLAIN.fullmatch(group.name):
            return f"#{group.name}"
        quoted = group.name.replace("\\", "\\\\").replace('"', '\\"')
        return f'#"{quoted}"'

    async def label_of(self, group_id: str) -> str:
        """The label of the group ``group_id`` (a search's match names its group so),
        or ``a group left`` for one this peer is no longer in."""
        for joined in await self.peer.groups():  # new ones too
            self._follow(joined)
        group = self._groups.get(group_id)
        return self.label(group) if group is not None else "a group left"

    def format(self, group: Group, message: Message, *, history: bool = False) -> list[str]:
        """A group message as lines: the group's name and the sender before the body."""
        where = f"[{self.label(group)}] {'* ' if message.notice else ''}{message.sender}: "
        if not history:
            return message_lines(where, message.body)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(message.sent_at))
        pending = "" if message.shipped else "  (not delivered to all yet)"
        return message_lines(f"[{when}] {where}", message.body, pending)

    async def find(self, reference: str) -> Group | None:
        """The group ``reference`` (``#2``, ``#friends``, ``friends``) names, or None
        after a line saying why."""
        wanted = reference.strip().removeprefix("#")
        if not wanted:
            await self._show("which group? name it #NAME or #NUMBER (gs lists them)")
            return None
        for group in await self.peer.groups():  # new ones, and members as they are now
            self._follow(group)
        if wanted.isdigit():
            for group_id, number in self._numbers.items():
                if number == int(wanted) and group_id in self._groups:
                    return self._groups[group_id]
        named = [g for g in self._groups.values() if g.name == wanted and g.id in self._readers]
        if len(named) == 1:
            return named[0]
        if named:
            await self._show(f"{len(named)} groups are named {wanted}: use its number (gs)")
        else:
            await self._show(f"no group {reference.strip()}: gs lists yours")
        return None

    # Commands.

    async def create(self, argument: str) -> None:
        """``g NAME MEMBER...``."""
        name, *members = argument.split() or [""]
        if not members:
            await self._show("usage: g NAME MEMBER [MEMBER...] (a group of you and them)")
            return
        group = await self.peer.create_group(name, members)
        self._follow(group)
        await self._notices_sent(group)
        await self._show(
            f"created the group {self.label(group)} (number {self._numbers[group.id]}): "
            f"{_members(group)}; t {self.label(group)} to talk there"
        )

    async def list(self, _: str = "") -> None:
        """``gs``: each group with its number, admin and members."""
        groups = await self.peer.groups()
        for group in groups:
            self._follow(group)
        if not groups:
            await self._show("no groups: g NAME MEMBER... makes one")
            return
        for group in sorted(groups, key=lambda g: self._numbers[g.id]):
            here = (
                "  <- talking here" if self.focus is not None and self.focus.id == group.id else ""
            )
            await self._show(f"#{self._numbers[group.id]} {group.name}: {_members(group)}{here}")

    async def talk(self, reference: str) -> None:
        """``t #GROUP``: its last messages, then every line typed goes to the group."""
        group = await self.find(reference)
        if group is None:
            return
        history = await group.history()
        shown = history[-HISTORY_SHOWN:]
        if shown:
            await self._show(f"--- history of {self.label(group)}: {len(history)} messages ---")
            for message in shown:
                await self._show(*self.format(group, message, history=True))
            await self._show("--- end of history ---")
        self._focus(group)
        await self._show(
            f"talking in {self.label(group)} with {_members(group)} "
            "(/exit or /back for commands, /add NAME, /rm NAME, /leave)"
        )

    async def history(self, reference: str) -> None:
        """``h #GROUP``: the whole history of the group."""
        group = await self.find(reference)
        if group is None:
            return
        history = await group.history()
        await self._show(f"--- history of {self.label(group)}: {len(history)} messages ---")
        for message in history:
            await self._show(*self.format(group, message, history=True))
        await self._show("--- end of history ---")

    async def _group_and_user(self, argument: str, usage: str) -> tuple[Group, str] | None:
        """``#GROUP NAME`` or, in a group's talk, ``NAME``."""
        words = argument.split()
        if len(words) == 1 and self.focus is not None:
            return self.focus, words[0]
        if len(words) != 2:
            await self._show(usage)
            return None
        group = await self.find(words[0])
        return None if group is None else (group, words[1])

    async def add(self, argument: str) -> None:
        """``add #GROUP NAME`` (the admin only)."""
        found = await self._group_and_user(argument, "usage: add #GROUP NAME")
        if found is not None:
            group, user = found
            await group.add(user)
            await self._notices_sent(group)
            await self._show(f"added {user} to {self.label(group)}: {_members(group)}")

    async def remove(self, argument: str) -> None:
        """``rm #GROUP NAME`` (the admin only)."""
        found = await self._group_and_user(argument, "usage: rm #GROUP NAME")
        if found is not None:
            group, user = found
            await group.remove(user)
            await self._notices_sent(group)
            await self._show(f"removed {user} from {self.label(group)}: {_members(group)}")

    async def leave(self, argument: str) -> None:
        """``leave #GROUP``: for good (the talk of a group is left with /exit)."""
        if argument.strip():
            group = await self.find(argument)
        elif self.focus is not None:
            group = self.focus
        else:
            await self._show("usage: leave #GROUP")
            return
        if group is None:
            return
        self._left.add(group.id)
        await group.leave()
        await self._notices_sent(group)
        if self.focus is not None and self.focus.id == group.id:
            self._focus(None)
        await self._show(f"you left the group {self.label(group)}")

    async def say(self, body: str) -> None:
        """A line typed in a group's talk."""
        if self.focus is None:
            raise P2PChatError("not in a group's talk")
        self._sent(await self.focus.send(body))

    async def _notices_sent(self, group: Group) -> None:
        """The notice a change of ours just sent to the members: ours, as what we say."""
        for message in await group.history(limit=NOTICES_SCANNED):
            self._sent(message)

    def _sent(self, message: Message) -> None:
        if message.sender == self.peer.name and not message.shipped:
            self.ours[message.id] = None
            while len(self.ours) > OURS_KEPT:
                del self.ours[next(iter(self.ours))]
