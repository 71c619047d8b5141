"""Storage behind small interfaces: users and mailboxes for the server, messages for a peer.

Each interface is a ``typing.Protocol``; the server and the peer only ever call these
methods, so a backend can be swapped without touching them. Two backends ship: in memory
(the server's here; the peer's in ``stores/memory.py``, beside the search rules it
shares with SQLite: tests and the library's default) and SQLite (``stores/``: the
commands' default). Every backend is tested by one shared suite.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import msgspec

from .errors import MailboxFull

__all__ = [
    "Binding",
    "GroupRecord",
    "Mailbox",
    "MailboxItem",
    "MemoryMailbox",
    "MemoryUserStore",
    "Message",
    "MessageStore",
    "UserRecord",
    "UserStore",
]


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One chat message as a peer stores it. ``shipped``: the recipient has acknowledged it
    (a group message: every member it was sent to has).

    ``group``: the group's id for a group message (``recipient`` is the group's id then
    too), None for one-to-one; ``group_version``: the membership version it was sent
    under; ``notice``: ``change`` for the admin's notice of a membership change, ``leave``
    for a member's leaving (the body then says it in words), else empty."""

    id: str
    sender: str
    recipient: str
    body: str
    sent_at: float
    shipped: bool = False
    group: str | None = None
    group_version: int = 0
    notice: str = ""

    @classmethod
    def new(cls, sender: str, recipient: str, body: str) -> Message:
        """A new message, sent now, with a fresh, globally unique id."""
        return cls(id=new_id(), sender=sender, recipient=recipient, body=body, sent_at=time.time())


def new_id() -> str:
    """A fresh message id: a UUID of version 7 (RFC 9562: Unix time in ms, then 74 random
    bits). Ids in time order keep a store's (id, sender) index growing at its end; random
    ones made each stored message rewrite a page of it (docs/performance.md)."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = raw[6] & 0x0F | 0x70  # version 7
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 9562 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class GroupRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A group as a member keeps it: ``members`` (sorted, this peer included while it is
    one) as of membership ``version``; ``roster``, the admin's signed roster of that
    version, encoded (the store keeps every version's, for messages sent under it);
    ``active``: this peer is a member; ``announced``: handed to ``next_group()``."""

    id: str
    name: str
    admin: str
    members: tuple[str, ...]
    version: int
    roster: str
    active: bool = True
    announced: bool = False


class UserRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the server remembers of a user name."""

    name: str
    addresses: list[tuple[str, int]]
    online: bool
    first_seen: float
    last_seen: float
    key: str | None = None
    mailbox_key: str | None = None
    mailbox_sig: str | None = None


class Binding(msgspec.Struct, frozen=True, kw_only=True):
    """Whom a name belongs to: the name as registered (names are unique whatever their
    case), the key bound to it, whether this very call registered it, and the mailbox key
    published for it with its signature."""

    name: str
    key: str
    created: bool = False
    mailbox_key: str | None = None
    mailbox_sig: str | None = None


class MailboxItem(msgspec.Struct, frozen=True, kw_only=True):
    """One sealed item the server keeps for ``recipient`` until it is collected and
    settled, or ``expires`` (epoch seconds). ``item`` is unique per recipient."""

    recipient: str
    item: str
    kind: str
    sender: str
    sealed: str
    at: float
    expires: float


def check_room(
    item: MailboxItem,
    count: int,
    used: int,
    *,
    max_items: int | None,
    max_bytes: int | None,
    share: bool = False,
) -> None:
    """Raise MailboxFull if ``item`` does not fit beside ``count`` items of ``used`` bytes:
    those of its recipient's whole mailbox, or (``share``) those its sender holds there."""
    whose = f"{item.sender}'s share of " if share else ""
    limit = "the limit per sender" if share else "its limit"
    if max_items is not None and count + 1 > max_items:
        raise MailboxFull(f"{whose}{item.recipient}'s mailbox holds {count} items, {limit}")
    if max_bytes is not None and used + len(item.sealed) > max_bytes:
        raise MailboxFull(f"{whose}{item.recipient}'s mailbox holds {used} bytes, near {limit}")


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

    async def set_mailbox_key(self, name: str, mailbox_key: str, signature: str) -> None:
        """Record the mailbox key ``name`` published (signed by its identity key)."""

    async def bind_key(
        self,
        name: str,
        key: str,
        *,
        now: float,
        create: bool = True,
        mailbox: tuple[str, str] | None = None,
    ) -> Binding | None:
        """Whom ``name`` belongs to, binding ``key`` to it on first use (with ``mailbox``,
        its mailbox key and signature, when it is registered now).

        The user is looked up whatever the case of ``name``; the answer's ``name`` is the
        registered spelling and ``key`` the bound key (either may differ from what was
        asked: the caller refuses the login then). An unknown name is registered, with
        ``key``, only if ``create``, and so is ``key`` bound to a name from before
        identities (known, without a key); otherwise the answer is None, and nothing is
        written. The answer also tells
        the mailbox key and signature published for the user (a login that publishes the
        same ones has them checked already).

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
        """Store ``message`` unless it is known; True if it was new. A message is known by
        its sender and its id: the same id from another sender is another message."""

    async def add_many(self, messages: Sequence[Message], *, unread: bool = False) -> list[Message]:
        """Store several in one transaction; return those that were new (by sender and
        id), in order.

        ``unread``: received outside a conversation (the mailbox), to be handed over by
        ``next_unread()`` until ``mark_read()``, across restarts."""

    async def next_unread(self, user: str, *, group: str | None = None) -> Message | None:
        """The oldest message received by ``user`` and still unread: one-to-one, or (with
        ``group``) in that group."""

    async def mark_read(self, sender: str, ids: Iterable[str]) -> None:
        """These messages from ``sender`` are handed over: ``next_unread`` skips them."""

    async def mark_deposited(self, ids: Iterable[str], *, recipient: str | None = None) -> None:
        """These were left in the recipients' mailboxes (not to be deposited again); group
        messages: their copies for ``recipient``."""

    async def undeposited(self, sender: str) -> list[Message]:
        """Messages from ``sender``, unshipped and not deposited, oldest first; a group
        message once per member still to have it, ``recipient`` set to that member."""

    async def mark_shipped(self, recipient: str, ids: Iterable[str]) -> None:
        """Mark shipped those of ``ids`` that are messages to ``recipient`` (an ack counts
        only for messages sent to whoever acknowledges them); a group message's copy for
        ``recipient``, and the message itself once every member's copy is."""

    async def unshipped(self, sender: str, recipient: str) -> list[Message]:
        """Messages from ``sender`` to ``recipient`` not yet acknowledged, oldest first,
        group messages (``recipient`` set to that member) among them in the order stored."""

    # Groups.

    async def save_group(self, group: GroupRecord) -> None:
        """Keep ``group`` (replacing what was kept of it), and its roster of that version."""

    async def groups(self) -> list[GroupRecord]:
        """The groups kept, in the order first kept."""

    async def group_roster(self, group: str, version: int) -> str | None:
        """The roster of ``group`` at ``version``, as kept by ``save_group``."""

    async def add_group_messages(self, messages: Sequence[Message], members: Iterable[str]) -> None:
        """Store our group messages (unshipped), each to be delivered to every one of
        ``members``, in one transaction."""

    async def group_delivery(self, message_id: str) -> dict[str, bool]:
        """For our group message ``message_id``: each member it goes to, and whether they
        have stored it."""

    async def drop_deliveries(self, group: str, member: str) -> None:
        """``member`` is out of ``group``: our copies it does not have yet are not sent
        (and no longer hold back ``shipped``)."""

    async def group_history(self, group: str, *, limit: int | None = None) -> list[Message]:
        """Messages of ``group``, oldest first (the last ``limit``)."""

    async def history(
        self,
        user: str,
        contact: str,
        *,
        before: Message | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        """Messages between the two, both directions, oldest first: the last ``limit`` of
        them, or of those before ``before`` (a message of an earlier page); group
        messages are not among them.

        The order is (``sent_at``, ``id``) (then the sender: an id is unique per sender
        only), so that pages read backwards, each from the first message of the one
        after it, miss nothing and repeat nothing, whatever arrives meanwhile."""

    async def search(
        self, user: str, text: str, *, contact: str | None = None, limit: int = 50
    ) -> list[Message]:
        """Messages ``user`` sent or received (with ``contact`` only, if given) whose body
        answers ``text``, newest first, at most ``limit``. Group messages are among them
        (every one kept; with ``contact``, those ``contact`` sent).

        ``text`` is words, all of which must be found, case and accents ignored: ``hel*``
        for a word's beginning, ``"hello world"`` for a phrase (``p2pchat.stores.search``
        says it all). InvalidQuery if it cannot be read (a quote left open)."""

    async def correspondents(self, user: str, *, limit: int | None = None) -> list[str]:
        """Those ``user`` has one-to-one messages with, the most recent conversation first."""

    async def known_key(self, user: str, contact: str) -> str | None:
        """The key remembered for ``contact``, or None if they never talked."""

    async def remember_key(self, user: str, contact: str, key: str, *, now: float) -> None:
        """Remember (or replace) the key of ``contact``."""


class Mailbox(Protocol):
    """The server's sealed items, per recipient. It never needs to open one."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def deposit(
        self,
        item: MailboxItem,
        *,
        max_items: int | None,
        max_bytes: int | None,
        max_sender_items: int | None = None,
        max_sender_bytes: int | None = None,
    ) -> bool:
        """Keep ``item``; False if one with its id is kept already for its recipient.

        Raises MailboxFull (nothing kept) if the recipient would hold more than
        ``max_items`` items or ``max_bytes`` of sealed data, or more than
        ``max_sender_items`` / ``max_sender_bytes`` from ``item.sender`` (one sender's
        share, so that one sender cannot fill the mailbox for all others). Atomic."""

    async def pending(
        self,
        recipient: str,
        *,
        now: float,
        limit: int,
        max_bytes: int,
        skip: Collection[str] = (),
    ) -> tuple[list[MailboxItem], bool]:
        """Items for ``recipient`` not expired, oldest first, but those in ``skip`` (handed
        out already in this session): at most ``limit`` and about ``max_bytes`` (at least
        one); and whether more wait."""

    async def remove(self, recipient: str, items: Iterable[str]) -> int:
        """Drop those of ``items`` kept for ``recipient``; how many were."""

    async def expire(self, now: float) -> int:
        """Drop every item past its ``expires``; how many."""

    async def usage(self, recipient: str) -> tuple[int, int]:
        """(items, bytes) kept for ``recipient`` now."""

    async def totals(self) -> tuple[int, int]:
        """(items, bytes) kept for everyone now (for the metrics)."""


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
        if known is None:
            known = UserRecord(name=name, addresses=[], online=False, first_seen=now, last_seen=now)
        self._users[name] = msgspec.structs.replace(
            known, addresses=list(addresses), online=True, last_seen=now
        )

    async def set_offline(self, name: str, *, now: float) -> None:
        if (known := self._users.get(name)) is not None:
            self._users[name] = msgspec.structs.replace(known, online=False, last_seen=now)

    async def get(self, name: str) -> UserRecord | None:
        return self._users.get(name)

    async def online(self, *, limit: int | None = None) -> list[str]:
        names = sorted(name for name, user in self._users.items() if user.online)
        return names if limit is None else names[:limit]

    async def set_mailbox_key(self, name: str, mailbox_key: str, signature: str) -> None:
        if (known := self._users.get(name)) is not None:
            self._users[name] = msgspec.structs.replace(
                known, mailbox_key=mailbox_key, mailbox_sig=signature
            )

    async def bind_key(
        self,
        name: str,
        key: str,
        *,
        now: float,
        create: bool = True,
        mailbox: tuple[str, str] | None = None,
    ) -> Binding | None:
        registered = self._spelling.get(name.casefold(), name)
        known = self._users.get(registered)
        created = known is None
        if (known is None or known.key is None) and not create:
            return None  # unknown, or from before identities: bound only by a login that may
        if known is None:
            known = UserRecord(name=name, addresses=[], online=False, first_seen=now, last_seen=now)
            self._spelling[name.casefold()] = name
        if known.key is None:
            known = msgspec.structs.replace(known, key=key)
            if mailbox is not None:
                known = msgspec.structs.replace(
                    known, mailbox_key=mailbox[0], mailbox_sig=mailbox[1]
                )
        self._users[registered] = known
        assert known.key is not None
        return Binding(
            name=known.name,
            key=known.key,
            created=created,
            mailbox_key=known.mailbox_key,
            mailbox_sig=known.mailbox_sig,
        )


class MemoryMailbox:
    """Mailbox in dicts; gone when the process ends."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, MailboxItem]] = {}  # recipient -> item -> it

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def deposit(
        self,
        item: MailboxItem,
        *,
        max_items: int | None,
        max_bytes: int | None,
        max_sender_items: int | None = None,
        max_sender_bytes: int | None = None,
    ) -> bool:
        box = self._items.setdefault(item.recipient, {})
        if item.item in box:
            return False
        used = sum(len(i.sealed) for i in box.values())
        check_room(item, len(box), used, max_items=max_items, max_bytes=max_bytes)
        mine = [len(i.sealed) for i in box.values() if i.sender == item.sender]
        check_room(
            item,
            len(mine),
            sum(mine),
            max_items=max_sender_items,
            max_bytes=max_sender_bytes,
            share=True,
        )
        box[item.item] = item
        return True

    async def pending(
        self,
        recipient: str,
        *,
        now: float,
        limit: int,
        max_bytes: int,
        skip: Collection[str] = (),
    ) -> tuple[list[MailboxItem], bool]:
        box = self._items.get(recipient, {}).values()
        waiting = [i for i in box if i.expires > now and i.item not in skip]
        page: list[MailboxItem] = []
        size = 0
        for item in waiting[:limit]:
            if page and size + len(item.sealed) > max_bytes:
                break
            page.append(item)
            size += len(item.sealed)
        return page, len(page) < len(waiting)

    async def remove(self, recipient: str, items: Iterable[str]) -> int:
        box = self._items.get(recipient, {})
        return sum(box.pop(i, None) is not None for i in items)

    async def expire(self, now: float) -> int:
        dropped = 0
        for box in self._items.values():
            for key in [k for k, i in box.items() if i.expires <= now]:
                del box[key]
                dropped += 1
        return dropped

    async def usage(self, recipient: str) -> tuple[int, int]:
        box = self._items.get(recipient, {})
        return len(box), sum(len(i.sealed) for i in box.values())

    async def totals(self) -> tuple[int, int]:
        boxes = self._items.values()
        return sum(map(len, boxes)), sum(len(i.sealed) for box in boxes for i in box.values())
