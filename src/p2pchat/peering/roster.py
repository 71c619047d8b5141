"""A group's membership, with no I/O: signed rosters, leaves, and what a member makes of
what arrives.

A roster is the admin's signed statement "at ``version``, group ``group`` named ``name``
has these ``members``; ``change`` made it". Every group message carries the roster it was
sent under, so a member who was away learns the group, and its current members, from
whichever message reaches it first. The signature covers the group id and the version:
a roster moved to another group, or an old one sent again, changes nothing; one altered
does not verify. ``judge`` decides, for one received group message, whether it is
taken, refused (and why), and what the group is afterwards.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from ..errors import InvalidGroupName
from ..messages import MAX_GROUP_NAME, GroupChange, GroupNote, Roster
from ..store import GroupRecord, Message

__all__ = [
    "Verdict",
    "check_group_name",
    "describe",
    "encode_roster",
    "group_id_of",
    "judge",
    "leave_payload",
    "new_group_id",
    "record_of",
    "roster_of",
    "roster_payload",
    "signed_roster",
]

_ROSTER: Final = b"p2pchat roster v1"
_LEAVE: Final = b"p2pchat leave v1"
_GROUP: Final = b"p2pchat group v1"
_rosters: Final = msgspec.json.Decoder(Roster)


def new_group_id(admin: str) -> tuple[str, str]:
    """A fresh group id for a group ``admin`` makes, and its salt: random to anyone who
    sees it (never derived from who is in it), yet bound to its admin, so that a member
    cannot tell one who has not seen the group yet that they made it."""
    salt = secrets.token_hex(16)
    return group_id_of(admin, salt), salt


def group_id_of(admin: str, salt: str) -> str:
    """The id of the group ``admin`` made with ``salt``: a hash, so no one finds another
    admin and salt for an id that exists."""
    return "g" + hashlib.sha256(_fields(_GROUP, admin, salt)).hexdigest()[:32]


def check_group_name(name: str) -> str:
    """``name`` if it is a fit group name, else InvalidGroupName: 1 to ``MAX_GROUP_NAME``
    characters, no control or format characters (nothing that could steer a terminal),
    not only spaces."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidGroupName(f"a group name must have a printable character, got {name!r}")
    if len(name) > MAX_GROUP_NAME:
        raise InvalidGroupName(
            f"a group name has at most {MAX_GROUP_NAME} characters, got {len(name)}"
        )
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name):
        raise InvalidGroupName(f"a group name may not hold control characters: {name!r}")
    return name


def _fields(context: bytes, *parts: str) -> bytes:
    out = [context]
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        out.append(struct.pack(">I", len(data)) + data)
    return b"".join(out)


def roster_payload(roster: Roster) -> bytes:
    """What the admin signs: every field but the signature, unambiguously."""
    return _fields(
        _ROSTER,
        roster.group,
        roster.salt,
        roster.name,
        roster.admin,
        str(roster.version),
        roster.change,
        roster.subject or "",
        *roster.members,
    )


def leave_payload(group: str, member: str, version: int) -> bytes:
    """What a member who leaves signs."""
    return _fields(_LEAVE, group, member, str(version))


def signed_roster(
    sign: Callable[[bytes], str],
    *,
    group: str,
    salt: str,
    name: str,
    admin: str,
    members: Sequence[str],
    version: int,
    change: GroupChange,
    subject: str | None = None,
) -> Roster:
    """A roster signed by ``sign`` (the admin's ``Identity.sign``)."""
    unsigned = Roster(
        group=group,
        salt=salt,
        name=name,
        admin=admin,
        members=sorted(set(members)),
        version=version,
        change=change,
        subject=subject,
        signature="",
    )
    signature = sign(roster_payload(unsigned))
    return msgspec.structs.replace(unsigned, signature=signature)


def encode_roster(roster: Roster) -> str:
    return msgspec.json.encode(roster).decode()


def roster_of(record_roster: str) -> Roster:
    """A roster as the store keeps it (it was checked before it was kept)."""
    return _rosters.decode(record_roster)


def record_of(roster: Roster, *, active: bool, announced: bool) -> GroupRecord:
    return GroupRecord(
        id=roster.group,
        name=roster.name,
        admin=roster.admin,
        members=tuple(sorted(roster.members)),
        version=roster.version,
        roster=encode_roster(roster),
        active=active,
        announced=announced,
    )


def describe(roster: Roster, notice: str, sender: str) -> str:
    """The words a notice is shown with, made here from what was checked (never the
    sender's text)."""
    if notice == "leave":
        return f"{sender} left"
    if roster.change == "create":
        return f"{roster.admin} created {roster.name}"
    verb = "added" if roster.change == "add" else "removed"
    return f"{roster.admin} {verb} {roster.subject}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to make of one received group message: ``message`` (as stored) if taken,
    else ``refused`` says why; ``record`` is the group afterwards (None: unchanged);
    ``gone``: members now out of the group (their pending copies are dropped)."""

    message: Message | None = None
    refused: str = ""
    record: GroupRecord | None = None
    gone: tuple[str, ...] = ()
    first: bool = False  # the first this member hears of the group


def judge(
    me: str,
    known: GroupRecord | None,
    message: Message,
    note: GroupNote,
    *,
    roster_ok: bool,
    leave_ok: bool,
    max_members: int,
) -> Verdict:
    """Decide on ``message`` from ``message.sender``, carrying ``note``; ``roster_ok``:
    its roster is signed by its admin's key (or is the one known); ``leave_ok``: a leave's
    signature checks out with the sender's key. No I/O: the caller looked the keys up."""
    roster = note.roster
    sender = message.sender
    if roster.group != group_id_of(roster.admin, roster.salt):
        return Verdict(
            refused=f"{roster.group} was not made by {roster.admin}: its id names another admin"
        )
    if not roster_ok:
        return Verdict(refused=f"its roster of {roster.group} is not signed by {roster.admin}")
    try:
        check_group_name(roster.name)
    except InvalidGroupName as exc:
        return Verdict(refused=str(exc))
    if len(roster.members) > max_members:
        return Verdict(refused=f"its roster lists {len(roster.members)} members, over the limit")
    if known is not None and roster.admin != known.admin:
        return Verdict(
            refused=f"it names {roster.admin} admin of {roster.group}, not {known.admin}"
        )
    record = known
    changed = False
    gone: tuple[str, ...] = ()
    if known is None:
        if me not in roster.members:
            return Verdict(refused=f"its roster of {roster.group} does not list us")
        record = record_of(roster, active=True, announced=False)
        changed = True
    elif roster.version > known.version:
        readded = roster.change == "add" and roster.subject == me
        active = me in roster.members and (known.active or readded)
        gone = tuple(m for m in known.members if m not in roster.members)
        back = readded and not known.active  # added again: announced again
        record = record_of(roster, active=active, announced=known.announced and not back)
        changed = True
    assert record is not None
    removed_now = note.notice == "change" and roster.change == "remove" and roster.subject == me
    if not record.active and not (changed and removed_now):
        # Learnt (a newer roster is kept all the same), but not shown: we are out.
        return Verdict(
            refused=f"we are no longer in {roster.group}",
            record=record if changed else None,
            gone=gone,
        )
    if sender not in record.members:
        return Verdict(refused=f"{sender} is not a member of {roster.group}")
    if note.notice == "change" and sender != roster.admin:
        return Verdict(refused=f"{sender} announced a change but is not the admin")
    if note.notice == "leave":
        if not leave_ok:
            return Verdict(refused=f"the leave of {sender} is not signed by them")
        record = msgspec.structs.replace(
            record, members=tuple(m for m in record.members if m != sender)
        )
        gone = (*gone, sender)
        changed = True
    body = describe(roster, note.notice, sender) if note.notice else message.body
    taken = msgspec.structs.replace(
        message,
        recipient=roster.group,
        body=body,
        group=roster.group,
        group_version=roster.version,
        notice=note.notice,
        shipped=True,
    )
    return Verdict(
        message=taken, record=record if changed else None, gone=gone, first=known is None
    )
