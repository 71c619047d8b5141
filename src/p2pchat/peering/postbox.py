"""A peer's side of the server's mailbox: messages for users it is not talking with.

Sending: a message with no conversation open is stored (unshipped) as always, then sealed
to the recipient's mailbox key (published by the recipient, signed by its identity key,
checked against the key remembered for it) and deposited. What could not be deposited
(the server away, the mailbox full) is deposited after the next login. A message becomes
``shipped`` only when the recipient's signed receipt comes back.

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
    InvalidName,
    KeyChanged,
    MailboxFull,
    P2PChatError,
    ProtocolError,
    RateLimited,
    SealError,
    ServerRefused,
    ServerUnavailable,
    StoreError,
    UnknownUser,
)
from ..protocol import (
    Collect,
    Deposit,
    GroupNote,
    Mail,
    MailItem,
    Ok,
    Receipt,
    Settle,
    check_name,
)
from ..shared.identity import Identity, fingerprint
from ..shared.seal import MAX_RECEIPT_IDS, open_letter, open_receipt, receipt, seal
from ..shared.tasks import cancel_and_wait
from ..store import Message, MessageStore
from .delivery import Acknowledge, Deliver, Delivery
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
    """Deposits, collects, opens, receipts; hands mail to ``next_message()``."""

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
        self._to_deposit = asyncio.Event()
        self._idle = asyncio.Event()  # the depositor has nothing to do
        self._depositor: asyncio.Task[None] | None = None
        self._undepositable: set[str] = set()  # too large for the server: for talks only

    # The connection.

    def logged_in(self) -> None:
        """A new login: collect what waited, then deposit what could not go before."""
        self.keys.logged_in()
        self._collected = self._collect_again = False
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        if self._depositor is None or self._depositor.done():
            self._depositor = asyncio.create_task(self._deposit_loop())
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
        if self._depositor is not None and not self._depositor.done():
            self._idle.clear()
            self.kick()  # one more pass, after any under way
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush):
                    await self._idle.wait()
        for task in (self._worker, self._depositor):
            await cancel_and_wait(task)
        self._worker = self._depositor = None

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
        messages: dict[str, list[tuple[MailItem, Message, GroupNote | None]]] = {}
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

    async def _open(self, item: MailItem) -> tuple[Message, GroupNote | None] | None:
        """The message in ``item``, or None if it is refused (and logged). KeyChanged if
        it is signed by a key the server vouches for and we do not trust: it is kept on
        the server, opened once the user trusts that key (``trust_key``)."""
        sender_key = await self.keys.identity_key(item.sender)
        try:
            return open_letter(
                self.peer.identity,
                self.name,
                item=item.item,
                sender=item.sender,
                sealed=item.sealed,
                sender_key=sender_key,
            )
        except SealError as exc:
            vouched = (await self.keys.whois(item.sender)).key
            if vouched != sender_key:  # not forged: signed by a key we do not trust (yet)
                raise KeyChanged(
                    item.sender, fingerprint(sender_key), fingerprint(vouched), vouched
                ) from exc
            logger.warning("%s refused a mail item: %s", self.name, exc)
            return None

    async def _store(
        self, sender: str, batch: list[tuple[MailItem, Message, GroupNote | None]]
    ) -> list[str]:
        """Store, hand over, then send the receipt (the delivery rules decide each step).
        Returns the items to drop from our mailbox: those refused, and those stored whose
        receipt the server has taken. Group messages are judged by the groups first: those
        refused are dropped, those that cannot be judged now wait on the server."""
        delivery = Delivery(self.name, sender, max_message_size=self.peer.settings.max_message_size)
        refused: list[str] = []
        good: list[Message] = []
        grouped: list[tuple[Message, GroupNote]] = []
        for item, message, note in batch:
            try:
                delivery.check_incoming(message)
            except ProtocolError as exc:
                logger.warning(
                    "%s refused mail item %s from %s: %s", self.name, item.item, sender, exc
                )
                refused.append(item.item)
            else:
                if note is None:
                    good.append(message)
                else:
                    grouped.append((message, note))
        if grouped:
            taken, refused_ids, _later = await self.peer._admit_group(sender, grouped)
            good.extend(taken)
            refused.extend(refused_ids)  # each logged; _later waits on the server
            order = {item.item: place for place, (item, _, _) in enumerate(batch)}
            good.sort(key=lambda m: order.get(m.id, 0))  # as they came, groups' among them
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
                settled.extend(await self._send_receipts(sender, effect.ids))
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

    async def _send_receipts(self, sender: str, ids: Sequence[str]) -> list[str]:
        """Receipts to ``sender`` for ``ids`` (stored), ``MAX_RECEIPT_IDS`` at a time; the ids
        whose receipt the server took. One it refuses leaves its messages on the server:
        collected again at the next login, receipted again, so that the sender learns
        they are stored without waiting for a talk."""
        taken: list[str] = []
        for start in range(0, len(ids), MAX_RECEIPT_IDS):
            chunk = list(ids[start : start + MAX_RECEIPT_IDS])
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
        self._to_deposit.set()

    async def _deposit_loop(self) -> None:
        while True:
            if not self._to_deposit.is_set():
                self._idle.set()
            await self._to_deposit.wait()
            self._to_deposit.clear()
            try:
                await self._deposit_all()
            except (P2PChatError, OSError) as exc:
                logger.info("%s: deposits wait for the next login: %s", self.name, exc)

    async def _deposit_all(self) -> None:
        """Deposit, in the order they were written, the messages that are unshipped, were
        never deposited, and have no conversation to go by. One at a time, so that order
        holds; paced by the server's deposit rate."""
        skipped: set[str] = set()  # recipients whose mail cannot go now
        for message in await self.peer.store.undeposited(self.name):
            recipient = message.recipient
            if recipient in skipped or message.id in self._undepositable:
                continue
            if self.peer._talking_with(recipient):
                continue  # the conversation carries it (and if it ends first: next pass)
            try:
                check_name(recipient)
                await self._deposit(message)
            except InvalidName as exc:  # stored by an older p2pchat: never sent to the server
                logger.warning("%s: %s is set aside: %s", self.name, message.id, exc)
                self._undepositable.add(message.id)
            except (KeyChanged, SealError, MailboxFull, UnknownUser) as exc:
                logger.warning("%s: mail to %s waits for a talk: %s", self.name, recipient, exc)
                skipped.add(recipient)
            except (RateLimited, ServerUnavailable):
                raise  # the server, not this item: the next pass (or login) tries again
            except ServerRefused as exc:  # this item, refused: never again in a loop
                logger.warning("%s: %s goes at the next talk only: %s", self.name, message.id, exc)
                self._undepositable.add(message.id)

    async def _deposit(self, message: Message) -> None:
        mailbox_key = await self.keys.mailbox_key(message.recipient)
        note = await self.peer._group_note(message) if message.group is not None else None
        sealed = seal(self.peer.identity, message, mailbox_key, note)
        for _ in range(60):
            link = self.peer._link()
            try:
                await link.request(
                    Deposit(
                        id=link.next_id(),
                        recipient=message.recipient,
                        item=message.id,
                        sealed=sealed,
                    ),
                    Ok,
                )
                break
            except RateLimited:
                await asyncio.sleep(1.0)  # the server's deposit rate: wait for our turn
        else:
            raise RateLimited("the server kept refusing deposits")
        await self.peer.store.mark_deposited([message.id], recipient=message.recipient)


def _receipt_id(me: str, ids: Sequence[str]) -> str:
    """A receipt's item id: one per receipt sender and set of messages, so a receipt sent
    again is kept once, and two members' receipts for the same group messages are two."""
    return "r-" + hashlib.sha256("\n".join([me, *ids]).encode()).hexdigest()[:40]
