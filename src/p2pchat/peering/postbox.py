"""A peer's side of the server's mailbox: messages for users it is not talking with.

Sending: a message with no conversation open is stored (unshipped) as always, then sealed
to the recipient's mailbox key (published by the recipient, signed by its identity key,
checked against the key remembered for it) and deposited. The messages waiting for one
recipient go as one sealed letter per batch (``seal.seal_bundle``; a lone one as a
single letter), so that the server's deposit rate counts letters, not messages: a burst
written to someone away is there as fast as the server can keep it. What could not be
deposited (the server away, the mailbox full) is deposited after the next login. A
message becomes ``shipped`` only when the recipient's signed receipt comes back; the
receipt of a batch covers its messages.

Receiving: after each login the peer collects what waited, oldest first; while logged in
the server pushes new items. Each item is opened and checked (``seal.py``); a message is
stored, unread, before the server is told to drop it and its sender gets a receipt, so a
crash at any point loses nothing and repeats nothing. ``next_message()`` hands each one
to the application once. Items that do not check out are refused and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, Protocol

from ..errors import (
    ConnectionClosed,
    KeyChanged,
    P2PChatError,
    ProtocolError,
    RateLimited,
    SealError,
    ServerRefused,
    StoreError,
    UnknownUser,
)
from ..protocol import (
    Collect,
    GroupNote,
    Mail,
    MailItem,
    Ok,
    Receipt,
    Settle,
)
from ..shared.identity import Identity, fingerprint
from ..shared.seal import (
    MAX_RECEIPT_IDS,
    is_bundle,
    open_bundle,
    open_letter,
    open_receipt,
    receipt,
)
from ..shared.tasks import cancel_and_wait
from ..store import Message, MessageStore
from .delivery import Acknowledge, Deliver, Delivery
from .depositor import Depositor
from .files import is_offer
from .keys import KeyBook
from .link import ServerLink
from .settings import PeerSettings
from .unread import UnreadReader

__all__ = ["Postbox"]

logger = logging.getLogger(__name__)

MAX_QUEUED: Final = 4096
"""Pushed items waiting to be opened; beyond, they wait on the server for the next collect."""
SETTLE_ITEMS: Final = 256
"""Items dropped by one ``settle`` (the most the server takes in one)."""


class Host(Protocol):
    """What the postbox needs of its peer."""

    name: str
    store: MessageStore
    settings: PeerSettings
    on_shipped: Callable[[str, list[str]], None] | None

    @property
    def identity(self) -> Identity: ...
    def _link(self) -> ServerLink: ...
    def _spawn(self, work: Coroutine[Any, Any, None]) -> None: ...
    def _talking_with(self, user: str) -> bool: ...
    def _watch_also(self, user: str) -> None: ...
    def _mail_delivered(self, sender: str, messages: list[Message]) -> list[Message]: ...
    async def _group_note(self, message: Message) -> GroupNote: ...
    async def _admit_group(
        self, sender: str, arrived: Sequence[tuple[Message, GroupNote]]
    ) -> tuple[list[Message], list[str], list[str]]: ...
    def _group_stored(self, messages: Sequence[Message]) -> None: ...
    async def known_key(self, user: str) -> str | None: ...
    async def trust_key(self, user: str, key: str) -> None: ...


class Postbox:
    """Collects, opens, stores, receipts; hands mail to ``next_message()``; deposits
    through its ``Depositor``."""

    def __init__(self, peer: Host) -> None:
        self.peer = peer
        self.keys = KeyBook(peer)
        self._queue: asyncio.Queue[list[MailItem] | None] = asyncio.Queue(MAX_QUEUED)
        self._held: list[MailItem] = []  # pushed before this login's collect is done
        self._collected = False
        self._collect_again = False  # told "more waits" before this login's collect was done
        self._worker: asyncio.Task[None] | None = None
        # File offers were taken by the file desk when they arrived: passed over here.
        self._unread = UnreadReader(peer.store, peer.name, pass_over=lambda m: is_offer(m.body))
        self.depositor = Depositor(peer, self.keys)

    # The connection.

    def logged_in(self) -> None:
        """A new login: collect what waited, then deposit what could not go before."""
        self.keys.logged_in()
        self._collected = self._collect_again = False
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        self.depositor.start()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)  # None: collect

    def pushed(self, mail: Mail) -> None:
        """The server pushed new items (someone deposited while we are logged in); with
        ``more``, others wait there (too many to push at once): collect them."""
        if not self._collected:
            self._held.extend(mail.items)
            del self._held[:-MAX_QUEUED]  # the rest waits on the server for the next collect
            self._collect_again |= mail.more  # told while collecting: collect once more
            return
        try:
            self._queue.put_nowait(list(mail.items) if not mail.more else None)
        except asyncio.QueueFull:
            logger.warning("%s: too much mail at once; the rest waits on the server", self.name)

    async def close(self, *, flush: float = 10.0) -> None:
        """Stop; first deposit what waits (for up to ``flush`` seconds), so that a message
        written just before leaving is on the server for its recipient."""
        await self.depositor.close(flush=flush)
        await cancel_and_wait(self._worker)
        self._worker = None

    @property
    def name(self) -> str:
        return self.peer.name

    async def _work(self) -> None:
        """Everything that comes in, one batch at a time, in order."""
        while True:
            job = await self._queue.get()
            try:
                if job is None:
                    await self._collect()
                    self.kick()  # then what could not be deposited before
                else:
                    await self._receive(job)
            except (P2PChatError, OSError) as exc:
                logger.info("%s: mail: %s (again after the next login)", self.name, exc)
            except Exception:  # a bug's: logged, and the worker goes on with the next job
                logger.exception("%s: mail", self.name)

    async def _collect(self) -> None:
        more = True
        while more:
            link = self.peer._link()
            page = await link.request(Collect(id=link.next_id()), Mail)
            await self._receive(page.items)
            more = page.more
        self._collected = True
        held, self._held = self._held, []
        if held:
            await self._receive(held)  # newer than all collected: their order is kept
        if self._collect_again:  # the server stopped pushing meanwhile, until we collect
            self._collect_again = False
            await self._collect()

    # Receiving.

    async def _receive(self, items: Sequence[MailItem]) -> None:
        """Take in ``items``, each on its own: one that is refused, or that cannot be
        stored, never holds back the others.

        What each ends as: stored (and, once its receipt is on the server, dropped from our
        mailbox); refused (not stored, no receipt: it was not stored; dropped from our
        mailbox, so that it does not come back at every login; its sender keeps it
        unshipped, for a talk); or kept on the server for the next login (a store write
        that failed, a receipt refused, a key not trusted yet)."""
        messages: dict[str, list[tuple[MailItem, list[Message], GroupNote | None]]] = {}
        done: list[str] = []  # items to drop from our mailbox
        for item in items:
            try:
                if item.kind == "receipt":
                    await self._take_receipt(item)
                    done.append(item.item)
                    continue
                opened = await self._open(item)
            except KeyChanged as exc:  # kept on the server until the new key is trusted
                logger.warning("%s keeps mail from %s unopened: %s", self.name, item.sender, exc)
                continue
            except (StoreError, ServerRefused) as exc:  # kept for the next login
                logger.warning("%s: mail item %s waits: %s", self.name, item.item, exc)
                continue
            except ConnectionClosed:
                raise
            except Exception:  # a bug's: this item alone waits, for the next login
                logger.exception("%s: mail item %s from %s", self.name, item.item, item.sender)
                continue
            if opened is None:
                done.append(item.item)  # refused: logged
            else:
                messages.setdefault(item.sender, []).append((item, *opened))
        for sender, batch in messages.items():
            done.extend(await self._store(sender, batch))
        for start in range(0, len(done), SETTLE_ITEMS):
            link = self.peer._link()
            chunk = done[start : start + SETTLE_ITEMS]
            await link.request(Settle(id=link.next_id(), items=chunk), Ok)

    async def _open(self, item: MailItem) -> tuple[list[Message], GroupNote | None] | None:
        """The messages in ``item`` (a batch, or a single letter) and, for a group letter,
        its group note; None if it is refused (and logged). KeyChanged if it is signed by
        a key the server vouches for and we do not trust: it is kept on the server, opened
        once the user trusts that key (``trust_key``)."""
        sender_key = await self.keys.identity_key(item.sender)
        try:
            if is_bundle(item.item):  # never a group's: those go as single letters
                bundle = open_bundle(
                    self.peer.identity,
                    self.name,
                    item=item.item,
                    sender=item.sender,
                    sealed=item.sealed,
                    sender_key=sender_key,
                )
                return bundle, None
            message, note = open_letter(
                self.peer.identity,
                self.name,
                item=item.item,
                sender=item.sender,
                sealed=item.sealed,
                sender_key=sender_key,
            )
            return [message], note
        except SealError as exc:
            vouched = (await self.keys.whois(item.sender)).key
            if vouched != sender_key:  # not forged: signed by a key we do not trust (yet)
                raise KeyChanged(
                    item.sender, fingerprint(sender_key), fingerprint(vouched), vouched
                ) from exc
            logger.warning("%s refused a mail item: %s", self.name, exc)
            return None

    async def _store(
        self, sender: str, batch: list[tuple[MailItem, list[Message], GroupNote | None]]
    ) -> list[str]:
        """Store, hand over, then send the receipts (the delivery rules decide each step).
        Returns the items to drop from our mailbox: those refused, and those whose every
        message is stored and named in a receipt the server has taken. A message of a
        batch that breaks a rule is refused alone (its sender keeps it, for a talk). A
        group letter is judged by the groups first: refused, it is dropped; if it cannot
        be judged now, it waits on the server (no receipt)."""
        delivery = Delivery(self.name, sender, max_message_size=self.peer.settings.max_message_size)
        refused: list[str] = []
        kept: dict[str, list[Message]] = {}  # item -> its messages that pass the rules
        grouped: list[tuple[Message, GroupNote]] = []
        seen: set[str] = set()
        for item, messages, note in batch:
            if item.item in seen:  # the same item twice (pushed and collected): once
                continue
            seen.add(item.item)
            for message in messages:
                try:
                    delivery.check_incoming(message)
                except ProtocolError as exc:
                    logger.warning(
                        "%s refused mail item %s from %s: %s", self.name, item.item, sender, exc
                    )
                else:
                    kept.setdefault(item.item, []).append(message)
            if item.item not in kept:
                refused.append(item.item)
            elif note is not None:  # a group letter: one message, its item its id
                grouped.append((kept.pop(item.item)[0], note))
        if grouped:
            admitted, refused_ids, _later = await self.peer._admit_group(sender, grouped)
            refused.extend(refused_ids)  # each logged; _later waits on the server
            for message in admitted:
                kept[message.id] = [message]
        owned: dict[str, list[str]] = {}  # item -> the ids of its messages kept, as they came
        for item, _, _ in batch:
            if item.item in kept and item.item not in owned:
                owned[item.item] = [m.id for m in kept[item.item]]
        good = [m for item in owned for m in kept[item]]
        stored, new = await self._add(good)
        self.peer._watch_also(sender)
        settled = list(refused)
        for effect in delivery.stored_incoming(stored, new):
            if isinstance(effect, Deliver):
                one_to_one = [m for m in effect.messages if m.group is None]
                if self.peer._mail_delivered(sender, one_to_one):  # file offers go apart
                    self._unread.arrived()
                self.peer._group_stored([m for m in effect.messages if m.group is not None])
            elif isinstance(effect, Acknowledge):
                taken = set(await self._send_receipts(sender, _by_item(owned, effect.ids)))
                settled.extend(i for i, ids in owned.items() if taken.issuperset(ids))
        return settled

    async def _add(self, messages: list[Message]) -> tuple[list[Message], list[Message]]:
        """Store ``messages`` (unread): (those stored, those new among them). If the batch
        cannot be written, each is written alone, so that one that fails fails alone (it
        stays on the server for the next login)."""
        if not messages:
            return [], []
        try:
            return messages, await self.peer.store.add_many(messages, unread=True)
        except StoreError as exc:
            logger.warning(
                "%s: storing %d mail items failed, one by one now: %s",
                self.name,
                len(messages),
                exc,
            )
        stored: list[Message] = []
        new: list[Message] = []
        for message in messages:
            try:
                new.extend(await self.peer.store.add_many([message], unread=True))
            except StoreError as exc:
                logger.error(
                    "%s: mail %s from %s not stored (kept on the server): %s",
                    self.name,
                    message.id,
                    message.sender,
                    exc,
                )
                continue
            stored.append(message)
        return stored, new

    async def _send_receipts(self, sender: str, groups: list[list[str]]) -> list[str]:
        """Receipts to ``sender`` for the ids in ``groups`` (stored; a group, the messages
        of one item, is never split), up to ``MAX_RECEIPT_IDS`` ids a receipt; the ids
        whose receipt the server took. One it refuses leaves its messages on the server:
        collected again at the next login, receipted again, so that the sender learns
        they are stored without waiting for a talk."""
        taken: list[str] = []
        for chunk in _receipt_chunks(groups):
            signed = receipt(self.peer.identity, self.name, sender, chunk)
            if await self._send_receipt(sender, chunk, signed):
                taken.extend(chunk)
        return taken

    async def _send_receipt(self, sender: str, ids: list[str], signed: str) -> bool:
        """One receipt; True once the server took it. Refused for its rate, it waits its
        turn (receipts are paced per user as deposits are)."""
        for _ in range(60):
            link = self.peer._link()
            try:
                await link.request(
                    Receipt(
                        id=link.next_id(),
                        recipient=sender,
                        item=_receipt_id(self.name, ids),
                        sealed=signed,
                    ),
                    Ok,
                )
                return True
            except RateLimited:
                await asyncio.sleep(1.0)  # the server's receipt rate: wait for our turn
            except ServerRefused as exc:
                logger.info(
                    "%s: no receipt for %s now (again after the next login): %s",
                    self.name,
                    sender,
                    exc,
                )
                return False
        return False

    async def _take_receipt(self, item: MailItem) -> None:
        try:
            key = await self.peer.known_key(item.sender)
            if key is None:
                raise SealError(f"a receipt from {item.sender}, to whom we never wrote")
            ids = open_receipt(
                self.name, recipient=item.sender, sealed=item.sealed, recipient_key=key
            )
        except SealError as exc:
            logger.warning("%s refused a receipt: %s", self.name, exc)
            return
        await self.peer.store.mark_shipped(item.sender, ids)
        if self.peer.on_shipped is not None:
            self.peer.on_shipped(item.sender, list(ids))

    async def next_message(self) -> Message:
        """The oldest message received by mail and not yet handed over, waiting for one."""
        message = await self._unread.next()
        assert message is not None
        return message

    # Sending.

    async def check_recipient(self, user: str) -> None:
        """Raise UnknownUser if the server has never seen ``user``. Anything else (no
        answer now, a refusal) is only logged: a message is stored whatever happens."""
        try:
            await self.keys.whois(user)
        except UnknownUser:
            raise
        except (ConnectionClosed, ServerRefused, ProtocolError) as exc:
            logger.info("%s: %s unchecked (stored, sent later): %s", self.name, user, exc)

    def kick(self) -> None:
        """Something may wait to be deposited: a message stored for someone with no
        conversation open, a conversation ended with messages unacknowledged, a login."""
        self.depositor.kick()


def _by_item(owned: dict[str, list[str]], acknowledged: Sequence[str]) -> list[list[str]]:
    """The ``acknowledged`` ids grouped by the item that brought them (one receipt covers
    a whole batch); an id that came in two items (a batch deposited again) in the first."""
    left = set(acknowledged)
    groups = []
    for ids in owned.values():
        if group := [i for i in ids if i in left]:
            left.difference_update(group)
            groups.append(group)
    return groups


def _receipt_chunks(groups: list[list[str]]) -> list[list[str]]:
    """``groups`` packed into receipts of at most ``MAX_RECEIPT_IDS`` ids, none split (a
    group is at most ``MAX_BUNDLE``, the same bound)."""
    chunks: list[list[str]] = []
    for group in groups:
        if not chunks or len(chunks[-1]) + len(group) > MAX_RECEIPT_IDS:
            chunks.append([])
        chunks[-1].extend(group)
    return chunks


def _receipt_id(me: str, ids: Sequence[str]) -> str:
    """A receipt's item id: one per receipt sender and set of messages, so a receipt sent
    again is kept once, and two members' receipts for the same group messages are two."""
    return "r-" + hashlib.sha256("\n".join([me, *ids]).encode()).hexdigest()[:40]
