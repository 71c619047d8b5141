"""The group calls of ``Peer`` (``PeerGroups``, a part of it): making a group, the groups
joined; and what its talks and postbox ask of the groups through the peer: the roster a
group message of ours carries, the admission of those received, the news of those stored.
All of it is done by ``Groups`` (``groups.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..messages import GroupNote
from ..store import Message
from .group import Group

if TYPE_CHECKING:
    from .groups import Groups

__all__ = ["PeerGroups"]


class PeerGroups:
    """Groups (a part of ``Peer``)."""

    if TYPE_CHECKING:  # the peer's, set by ``Peer.__init__``
        _groups: Groups

    async def create_group(self, name: str, members: Iterable[str]) -> Group:
        """A new group named ``name`` of this peer (its admin) and ``members`` (other
        users' names); each is told by the group's first message, by talk or by mail.

        Raises, with nothing stored: InvalidGroupName, InvalidName, UnknownUser for a
        name the server has never seen (while logged in), TooManyMembers (over
        ``max_group_members``, this peer included), TooManyGroups (``max_groups``)."""
        return await self._groups.create(name, members)

    async def next_group(self) -> Group:
        """The next group this peer was added to (by another member), each once, also
        across restarts: waits for one."""
        return await self._groups.next_group()

    async def groups(self) -> list[Group]:
        """The groups this peer is in, in the order it joined them (after restarts too)."""
        return self._groups.joined()

    async def _group_note(self, message: Message) -> GroupNote:
        return await self._groups.note_for(message)

    async def _admit_group(
        self, sender: str, arrived: Sequence[tuple[Message, GroupNote]]
    ) -> tuple[list[Message], list[str], list[str]]:
        return await self._groups.admit(sender, arrived)

    def _group_stored(self, messages: Sequence[Message]) -> None:
        self._groups.arrived(messages)
