"""The server's side of the mailbox: sealed messages kept for users who are away.

Requests (answered ``ok`` unless said otherwise)::

    -> deposit{id, recipient, item, sealed}     a sealed message for recipient
    -> collect{id}                              <- mail{id, items, more}
    -> settle{id, items}                        the recipient has stored these: drop them
    -> receipt{id, recipient, item, sealed}     a signed receipt for the messages' sender
                                 <- mail{items}  pushed to a recipient who is online

The server keeps what it is given and cannot open it: a message is sealed to the
recipient's key and signed inside by its sender; a receipt is signed by whoever stored
the messages. It sees who writes to whom, when, and how much.

Bounds, each a setting with a default and a typed refusal: items and bytes per recipient,
and of those, items and bytes per sender (its share: one sender cannot fill a mailbox for
all others) (``MailboxFull``); the size of one item (``ItemTooLarge``); deposits and
receipts per second per user, kept by name beyond the session (``rates.py``: a new login
does not start them afresh; with several nodes, kept in Redis) (``RateLimited``); and the
time an item is kept (``ttl``: then it is dropped, unread; its sender's copy stays
unshipped and goes at the next direct talk).

Pushes: an item is pushed to its recipient only while that session's outbox has room for
it (``Session.push_mail``); beyond, the session is told once that more waits
(``mail{items: [], more: true}``) and collects it, so that a burst of mail never
disconnects a reader that keeps reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ..cluster.base import Cluster
from ..errors import ItemTooLarge, P2PChatError, RateLimited, ServerRefused, UnknownUser
from ..protocol import Collect, Deposit, Mail, MailItem, Ok, Receipt, Settle
from ..shared.tasks import cancel_and_wait
from ..store import Mailbox, MailboxItem, UserStore
from .rates import LocalRates, Rate, UserRates
from .session import Session
from .settings import DEFAULTS, ServerSettings

__all__ = ["MailService"]

logger = logging.getLogger(__name__)

Handler = Callable[[Session, Any], Awaitable[None]]

PAGE_ITEMS: Final = 64
PAGE_BYTES: Final = 48 * 1024
"""A page of ``mail`` stays well inside one frame (64 KiB), whatever its items' sizes."""


class MailService:
    """The mailbox requests of one server, over a ``Mailbox`` store."""

    def __init__(
        self,
        cluster: Cluster,
        users: UserStore,
        mailbox: Mailbox,
        *,
        settings: ServerSettings = DEFAULTS,
        rates: UserRates | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cluster = cluster
        self.users = users
        self.mailbox = mailbox
        self.settings = settings
        """Its limits: ``mailbox_items``, ``mailbox_bytes`` per recipient and
        ``mailbox_items_per_sender``, ``mailbox_bytes_per_sender`` of them from one sender;
        ``mail_item_size``; ``deposit_rate``, ``receipt_rate`` per user; ``mail_ttl``."""
        self.rates: UserRates = rates if rates is not None else LocalRates()
        """Per user, kept beyond the session (and across nodes, in Redis, when given)."""
        self.clock = clock
        self.deposits = 0
        self.deposited_bytes = 0
        self.collections = 0
        self._sweeper: asyncio.Task[None] | None = None

    def handlers(self) -> dict[type[Any], Handler]:
        return {
            Deposit: self._on_deposit,
            Collect: self._on_collect,
            Settle: self._on_settle,
            Receipt: self._on_receipt,
        }

    async def start(self) -> None:
        await self.mailbox.start()
        self._sweeper = asyncio.create_task(self._sweep())

    async def close(self) -> None:
        await cancel_and_wait(self._sweeper)
        self._sweeper = None
        await self.mailbox.close()

    async def _sweep(self) -> None:
        """Drop expired items now and then."""
        while True:
            with contextlib.suppress(P2PChatError, OSError):
                if dropped := await self.mailbox.expire(self.clock()):
                    logger.info("dropped %d mailbox items past their time", dropped)
            await asyncio.sleep(min(self.settings.mail_ttl / 10, 60.0))

    async def _pace(self, session: Session, kind: str, rate: Rate | None) -> None:
        """Take one of the user's ``kind`` tokens, or refuse (RateLimited)."""
        if rate is not None and not await self.rates.take(kind, session.name, rate):
            raise RateLimited(
                f"more than {rate[0]:g} {kind}s/s (burst {rate[1]}): the message stays "
                f"unshipped; send the {kind} again later"
            )

    async def _on_deposit(self, session: Session, message: Deposit) -> None:
        await self._pace(session, "deposit", self.settings.deposit_rate)
        await self._keep(session, message.recipient, message.item, "msg", message.sealed)
        self.deposits += 1
        self.deposited_bytes += len(message.sealed)
        await session.reply(Ok(id=message.id))

    async def _on_receipt(self, session: Session, message: Receipt) -> None:
        await self._pace(session, "receipt", self.settings.receipt_rate)
        await self._keep(session, message.recipient, message.item, "receipt", message.sealed)
        await session.reply(Ok(id=message.id))

    async def _keep(
        self, session: Session, recipient: str, item_id: str, kind: str, sealed: str
    ) -> None:
        """Keep an item for ``recipient`` and push it at once if they are online."""
        if recipient == session.name:
            raise ServerRefused("your own mailbox is not for you to fill")
        if len(sealed) > (most := self.settings.mail_item_size):
            raise ItemTooLarge(f"a sealed item of {len(sealed)} bytes is over the limit of {most}")
        if await self.users.get(recipient) is None:
            raise UnknownUser(f"no user named {recipient} has ever logged in")
        now = self.clock()
        item = MailboxItem(
            recipient=recipient,
            item=item_id,
            kind=kind,
            sender=session.name,
            sealed=sealed,
            at=now,
            expires=now + self.settings.mail_ttl,
        )
        if not await self.mailbox.deposit(
            item,
            max_items=self.settings.mailbox_items,
            max_bytes=self.settings.mailbox_bytes,
            max_sender_items=self.settings.mailbox_items_per_sender,
            max_sender_bytes=self.settings.mailbox_bytes_per_sender,
        ):
            return  # kept already (a sender depositing again after a restart)
        self.cluster.push(recipient, Mail(items=[_wire(item)]))  # if they are online

    async def _on_collect(self, session: Session, message: Collect) -> None:
        session.mail_waiting = False  # what is deposited from now on may be pushed again
        items, more = await self.mailbox.pending(
            session.name,
            now=self.clock(),
            limit=PAGE_ITEMS,
            max_bytes=PAGE_BYTES,
            skip=session.collected,
        )
        # Each page goes on from the last, whatever the peer settles: an item it keeps
        # (its receipt refused, its store failing) comes again at its next login only,
        # never in a loop of the same page.
        if items:
            session.collected = session.collected.union(i.item for i in items)
        self.collections += len(items)
        await session.reply(Mail(id=message.id, items=[_wire(i) for i in items], more=more))

    async def _on_settle(self, session: Session, message: Settle) -> None:
        await self.mailbox.remove(session.name, message.items)
        if session.collected:
            session.collected = session.collected.difference(message.items)
        await session.reply(Ok(id=message.id))


def _wire(item: MailboxItem) -> MailItem:
    return MailItem(
        item=item.item,
        kind="receipt" if item.kind == "receipt" else "msg",
        sender=item.sender,
        sealed=item.sealed,
        at=item.at,
    )
