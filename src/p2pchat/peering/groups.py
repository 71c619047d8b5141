"""Group conversations: pairwise fan-out over what already carries one-to-one messages.

A group message is stored once by its sender, with one delivery state per other member
(``MessageStore.add_group_messages``); each member's copy then goes the way a one-to-one
message to that member goes: over the conversation open with them, behind its backlog,
else sealed to their mailbox; the same delivery rules (stored before sent, dedup by
sender and id, stored before acknowledged, signed receipts) carry it. The server sees
only sealed items or TLS: never a group id, a name or a member list.

Membership lives in the admin's signed rosters (``roster.py``), which every group message
carries. ``Groups`` keeps this peer's groups, decides on what arrives (``admit``), and
turns stored messages into what goes on the wire (``note_for``); ``Group`` is the
public handle an application holds (``group.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, Protocol

import msgspec

from ..errors import (
    MessageTooLarge,
    NotGroupAdmin,
    NotGroupMember,
    P2PChatError,
    StoreError,
    TooManyGroups,
    TooManyMembers,
)
from ..messages import GroupChange, GroupNote, Roster
from ..protocol import check_name
from ..shared.identity import Identity, verify_signature
from ..store import GroupRecord, Message, MessageStore, new_id
from .group import Group
from .keys import KeyBook
from .roster import (
    Verdict,
    check_group_name,
    describe,
    judge,
    leave_payload,
    new_group_id,
    record_of,
    roster_of,
    roster_payload,
    signed_roster,
)
from .settings import PeerSettings

__all__ = ["Group", "Groups"]

logger = logging.getLogger(__name__)


class Host(Protocol):
    """What the groups need of their peer."""

    name: str
    store: MessageStore
    settings: PeerSettings

    @property
    def identity(self) -> Identity: ...
    @property
    def connected(self) -> bool: ...
    def _spawn(self, work: Coroutine[Any, Any, None]) -> None: ...
    async def known_key(self, user: str) -> str | None: ...


class Groups:
    """This peer's groups: creating, changing, sending, and deciding on what arrives."""

    def __init__(
        self,
        peer: Host,
        *,
        keys: KeyBook,
        fanout: Callable[[str, list[Message]], None],
        check_recipient: Callable[[str], Awaitable[None]],
    ) -> None:
        self.peer = peer
        self.keys = keys
        self._fanout = fanout  # (member, copies): the open talk, else the mailbox
        self._check_recipient = check_recipient
        self._records: dict[str, GroupRecord] = {}
        self._handles: dict[str, Group] = {}
        self._rosters: dict[tuple[str, int], Roster] = {}
        self._lock = asyncio.Lock()  # one change, send or admission at a time: in order
        self._new = asyncio.Event()
        self._announcing = asyncio.Lock()
        self._ending: set[str] = set()  # out of these: ended once the notice is stored
        self._loaded = False

    @property
    def name(self) -> str:
        return self.peer.name

    @property
    def store(self) -> MessageStore:
        return self.peer.store

    async def load(self) -> None:
        """Read the groups kept in the store (at start)."""
        for record in await self.peer.store.groups():
            self._records[record.id] = record
        self._loaded = True
        self._new.set()

    def record(self, group_id: str) -> GroupRecord:
        return self._records[group_id]

    def handle(self, group_id: str) -> Group:
        if (handle := self._handles.get(group_id)) is None:
            handle = self._handles[group_id] = Group(self, group_id)
        return handle

    def joined(self) -> list[Group]:
        """The groups this peer is in, in the order it joined them."""
        return [self.handle(g) for g, record in self._records.items() if record.active]

    async def next_group(self) -> Group:
        """The next group this peer was added to and has not been handed yet."""
        async with self._announcing:
            while True:
                for record in list(self._records.values()):
                    if not record.announced and record.active:
                        async with self._lock:
                            record = self._records[record.id]
                            marked = msgspec.structs.replace(record, announced=True)
                            await self.peer.store.save_group(marked)
                            self._records[record.id] = marked
                        return self.handle(record.id)
                self._new.clear()
                await self._new.wait()

    # Our changes.

    async def create(self, name: str, members: Iterable[str]) -> Group:
        check_group_name(name)
        others = sorted({check_name(m) for m in members} - {self.name})
        limits = self.peer.settings
        if len(others) + 1 > limits.max_group_members:
            raise TooManyMembers(
                f"a group of {len(others) + 1} is over max_group_members "
                f"({limits.max_group_members})"
            )
        self._check_room()
        if self.peer.connected:
            await asyncio.gather(*(self._check_recipient(m) for m in others))
        group_id, salt = new_group_id(self.name)
        roster = signed_roster(
            self.peer.identity.sign,
            group=group_id,
            salt=salt,
            name=name,
            admin=self.name,
            members=[self.name, *others],
            version=1,
            change="create",
        )
        async with self._lock:
            self._check_room()
            record = record_of(roster, active=True, announced=True)
            await self._keep(record)
            await self._store_and_send(record, [self._notice(roster, "change")])
        return self.handle(roster.group)

    def _check_room(self) -> None:
        active = sum(record.active for record in self._records.values())
        if active >= (most := self.peer.settings.max_groups):
            raise TooManyGroups(f"{self.name} is in {active} groups, max_groups ({most})")

    async def change(self, group_id: str, change: GroupChange, user: str) -> None:
        record = self._member_record(group_id)
        if record.admin != self.name:
            raise NotGroupAdmin(f"only {record.admin} adds or removes members of {record.name}")
        if change == "add":
            if user in record.members:
                return
            if len(record.members) + 1 > self.peer.settings.max_group_members:
                raise TooManyMembers(
                    f"{record.name} has {len(record.members)} members, max_group_members "
                    f"({self.peer.settings.max_group_members})"
                )
            if self.peer.connected:
                await self._check_recipient(user)
        elif user not in record.members:
            return
        elif user == self.name:
            raise NotGroupAdmin("the admin leaves with leave(), not remove()")
        async with self._lock:
            await self._apply_own_change(group_id, change, user)

    async def _apply_own_change(self, group_id: str, change: GroupChange, user: str) -> None:
        record = self._member_record(group_id)
        members = set(record.members)
        members = members | {user} if change == "add" else members - {user}
        roster = signed_roster(
            self.peer.identity.sign,
            group=group_id,
            salt=roster_of(record.roster).salt,
            name=record.name,
            admin=record.admin,
            members=sorted(members),
            version=record.version + 1,
            change=change,
            subject=user,
        )
        new = record_of(roster, active=True, announced=record.announced)
        if change == "remove":
            await self.peer.store.drop_deliveries(group_id, user)
        await self._keep(new)
        # The removed member is told too: it learns it is out.
        told = set(record.members) | set(new.members)
        await self._store_and_send(new, [self._notice(roster, "change")], told=told)

    async def leave(self, group_id: str) -> None:
        async with self._lock:
            record = self._member_record(group_id)
            roster = self._roster_now(record)
            message = self._notice(roster, "leave")
            out = msgspec.structs.replace(record, active=False)
            await self._store_and_send(record, [message])
            await self._keep(out)
            self.handle(group_id)._ended()

    def _member_record(self, group_id: str) -> GroupRecord:
        record = self._records.get(group_id)
        if record is None or not record.active:
            raise NotGroupMember(f"{self.name} is not a member of group {group_id}")
        return record

    def _notice(self, roster: Roster, notice: str) -> Message:
        return Message(
            id=new_id(),
            sender=self.name,
            recipient=roster.group,
            body=describe(roster, notice, self.name),
            sent_at=time.time(),
            group=roster.group,
            group_version=roster.version,
            notice=notice,
        )

    async def send(self, group_id: str, bodies: list[str]) -> list[Message]:
        limit = self.peer.settings.max_message_size
        for body in bodies:
            size = len(body.encode("utf-8"))
            if size > limit:
                raise MessageTooLarge(f"message of {size} bytes is over the limit of {limit} bytes")
        if not bodies:
            return []
        async with self._lock:
            record = self._member_record(group_id)
            now = time.time()
            messages = [
                Message(
                    id=new_id(),
                    sender=self.name,
                    recipient=group_id,
                    body=body,
                    sent_at=now,
                    group=group_id,
                    group_version=record.version,
                )
                for body in bodies
            ]
            await self._store_and_send(record, messages)
        return messages

    async def _store_and_send(
        self, record: GroupRecord, messages: list[Message], *, told: Iterable[str] | None = None
    ) -> None:
        """Store ``messages`` once, with a delivery state per member, then hand each
        member's copies to its pipe (the open talk, else the mailbox), in order."""
        members = sorted(set(told if told is not None else record.members) - {self.name})
        await self.peer.store.add_group_messages(messages, members)
        for member in members:
            self._fanout(member, [msgspec.structs.replace(m, recipient=member) for m in messages])

    async def _keep(self, record: GroupRecord) -> None:
        await self.peer.store.save_group(record)
        self._records[record.id] = record
        self._rosters[(record.id, record.version)] = roster_of(record.roster)

    def _roster_now(self, record: GroupRecord) -> Roster:
        roster = self._rosters.get((record.id, record.version))
        if roster is None:
            roster = self._rosters[(record.id, record.version)] = roster_of(record.roster)
        return roster

    # On the wire.

    async def note_for(self, message: Message) -> GroupNote:
        """What ``message`` (ours, a group's) carries on the wire: the roster it was sent
        under, and for a leave our signature."""
        assert message.group is not None
        key = (message.group, message.group_version)
        roster = self._rosters.get(key)
        if roster is None:
            kept = await self.peer.store.group_roster(*key)
            if kept is None:
                raise StoreError(f"no roster of {key[0]} at version {key[1]} is kept")
            roster = self._rosters[key] = roster_of(kept)
        leave = None
        if message.notice == "leave":
            leave = self.peer.identity.sign(leave_payload(message.group, self.name, roster.version))
        notice = message.notice if message.notice in ("change", "leave") else ""
        return GroupNote(roster=roster, notice=notice, leave=leave)  # type: ignore[arg-type]

    # What arrives.

    async def admit(
        self, sender: str, arrived: Sequence[tuple[Message, GroupNote]]
    ) -> tuple[list[Message], list[str], list[str]]:
        """Decide on group messages that arrived from ``sender`` (by their talk or by
        mail; who sent them is proven by that channel): (taken, as to store; refused
        ids, to acknowledge and drop, each logged; ids to leave for later, unchecked
        because a key could not be had now). Membership changes they carry are kept
        before this returns, so before anything is acknowledged."""
        taken: list[Message] = []
        refused: list[str] = []
        later: list[str] = []
        keys: dict[str, str] = {}  # admins' keys, asked before the lock: sends go on
        for admin in {n.roster.admin for _, n in arrived if self._unchecked(n.roster)}:
            with contextlib.suppress(P2PChatError, OSError):  # asked again below, then
                keys[admin] = await self.keys.identity_key(admin)
        async with self._lock:
            for message, note in arrived:
                try:
                    verdict = await self._judge(sender, message, note, keys)
                except TooManyGroups as exc:
                    verdict = Verdict(refused=str(exc))
                except (P2PChatError, OSError) as exc:  # a key not to be had now, say
                    logger.info("%s: group message %s waits: %s", self.name, message.id, exc)
                    later.append(message.id)
                    continue
                except Exception:  # a bug's: this one alone waits
                    logger.exception("%s: group message %s", self.name, message.id)
                    later.append(message.id)
                    continue
                if verdict.record is not None:
                    await self._adopt(verdict.record, verdict.gone)
                    if not verdict.record.active:  # receive() ends once the notice is read
                        if verdict.message is None:
                            self.handle(verdict.record.id)._ended()
                        else:
                            self._ending.add(verdict.record.id)
                if verdict.message is None:
                    logger.warning(
                        "%s refused group message %s from %s: %s",
                        self.name,
                        message.id,
                        sender,
                        verdict.refused,
                    )
                    refused.append(message.id)
                else:
                    taken.append(verdict.message)
        return taken, refused, later

    def _unchecked(self, roster: Roster) -> bool:
        return (roster.group, roster.version) not in self._rosters

    async def _judge(
        self, sender: str, message: Message, note: GroupNote, keys: dict[str, str]
    ) -> Verdict:
        roster = note.roster
        known = self._records.get(roster.group)
        roster_ok = await self._roster_ok(known, roster, keys.get(roster.admin))
        leave_ok = False
        if note.notice == "leave" and note.leave is not None:
            key = await self.peer.known_key(sender)
            leave_ok = key is not None and verify_signature(
                key, leave_payload(roster.group, sender, roster.version), note.leave
            )
        if known is None and roster_ok:
            self._check_room()
        return judge(
            self.name,
            known,
            msgspec.structs.replace(message, sender=sender),
            note,
            roster_ok=roster_ok,
            leave_ok=leave_ok,
            max_members=self.peer.settings.max_group_members,
        )

    async def _roster_ok(self, known: GroupRecord | None, roster: Roster, key: str | None) -> bool:
        cached = self._rosters.get((roster.group, roster.version))
        if cached is not None:
            return cached == roster
        if known is not None and roster.admin != known.admin:
            return False
        if key is None:
            key = await self.keys.identity_key(roster.admin)
        if not verify_signature(key, roster_payload(roster), roster.signature):
            return False
        self._rosters[(roster.group, roster.version)] = roster
        return True

    async def _adopt(self, record: GroupRecord, gone: Sequence[str]) -> None:
        known = self._records.get(record.id)
        first = known is None
        await self._keep(record)
        for member in gone:
            await self.peer.store.drop_deliveries(record.id, member)
        if first or not record.announced:
            self._new.set()
        if record.active and known is not None and not known.active:
            self.handle(record.id)._back()
        if record.admin == self.name and known is not None:
            # A member left: the admin makes it a signed change, for everyone.
            for member in gone:
                if member in roster_of(record.roster).members:
                    self.peer._spawn(self._confirm_leave(record.id, member))

    async def _confirm_leave(self, group_id: str, member: str) -> None:
        async with self._lock:
            record = self._records.get(group_id)
            if record is not None and record.active:
                await self._apply_own_change(group_id, "remove", member)

    def arrived(self, messages: Sequence[Message]) -> None:
        """These are stored: wake the groups' readers."""
        for group_id in {m.group for m in messages if m.group is not None}:
            self.handle(group_id)._arrived()
            if group_id in self._ending:
                self._ending.discard(group_id)
                self.handle(group_id)._ended()
