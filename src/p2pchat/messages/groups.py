"""What makes a message a group message: the signed roster it was sent under (``Roster``,
``GroupNote``). They travel inside a peer-to-peer ``msg`` or a sealed letter: the server
never sees them. ``peering/roster.py`` holds the rules a member judges them by."""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypeAlias

import msgspec

from .fields import Base64, UserName

__all__ = [
    "GROUP_ID_PATTERN",
    "MAX_GROUP_NAME",
    "MAX_ROSTER_MEMBERS",
    "GroupChange",
    "GroupId",
    "GroupNote",
    "Roster",
]

GROUP_ID_PATTERN: Final = r"^g[0-9a-f]{32}\Z"
"""A group's id: ``g`` and 128 random bits in hex; 33 characters, so never a user name."""
GroupId: TypeAlias = Annotated[
    str, msgspec.Meta(min_length=33, max_length=33, pattern=GROUP_ID_PATTERN)
]
MAX_GROUP_NAME: Final = 64
"""Longest group name, in characters (and at most four times that in UTF-8 bytes)."""
MAX_ROSTER_MEMBERS: Final = 1024
"""Most members a roster may list on the wire; each peer holds its groups to its own
``max_group_members`` (default 64), which cannot be set above this."""
GroupChange: TypeAlias = Literal["create", "add", "remove"]


class Roster(msgspec.Struct, frozen=True, kw_only=True):
    """A group's membership at one ``version``, signed by its admin (``signature`` over
    ``roster_payload``): what every group message carries, so that a member who was away
    learns the group from whichever message reaches it first. ``change`` and ``subject``
    say what made this version (``create``: no subject). ``salt``: the random half of the
    group id, whose other half is its admin (``group_id_of``), so that no one else can claim
    to be the admin of a group they did not make."""

    group: GroupId
    salt: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$")]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_GROUP_NAME)]
    admin: UserName
    members: Annotated[list[UserName], msgspec.Meta(min_length=1, max_length=MAX_ROSTER_MEMBERS)]
    version: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    change: GroupChange
    subject: UserName | None = None
    signature: Base64


class GroupNote(msgspec.Struct, frozen=True, kw_only=True):
    """What makes a message a group message: the roster it was sent under; ``notice``
    ``change`` (the message announces ``roster``'s change, from the admin) or ``leave``
    (its sender leaves; ``leave`` is their signature of ``leave_payload``)."""

    roster: Roster
    notice: Literal["", "change", "leave"] = ""
    leave: Base64 | None = None
