"""The sending side of the mailbox: what waits for someone away, sealed and deposited.

A message with no conversation open is stored (unshipped) as always; the depositor then
seals what waits for each recipient, a letter per batch (``seal.seal_bundle``; a lone
message as a single letter, which every p2pchat opens), and deposits the letters one at
a time, in the order written, so that the server's deposit rate counts letters, not
messages: a burst written to someone away is there as fast as the server keeps it. What
cannot be deposited now (the server away, the mailbox full) goes after the next login;
a message becomes ``shipped`` only when the recipient's receipt comes back (postbox).

A group message's copy for a member who is away goes as a single group letter (with the
group's signed roster), never in a batch: the rosters would fill a batch's bytes (about
40 a member, in every message), and a copy the member cannot judge yet waits on the
server alone. It still keeps its place among that member's letters, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final, Protocol

from ..errors import (
    InvalidName,
    KeyChanged,
    MailboxFull,
    P2PChatError,
    RateLimited,
    SealError,
    ServerRefused,
    ServerUnavailable,
    UnknownUser,
)
from ..messages import GroupNote
from ..protocol import Deposit, Ok, check_name
from ..shared.identity import Identity
from ..shared.seal import MAX_BUNDLE, bundle_id, seal, seal_bundle
from ..shared.tasks import cancel_and_wait
from ..store import Message, MessageStore
from .keys import KeyBook
from .link import ServerLink

__all__ = ["Depositor"]

logger = logging.getLogger(__name__)

GATHER: Final = 0.05
"""How long the depositor lets messages written one after another gather before it
seals what waits: a burst goes as a few letters, not one each (the server's deposit rate
counts letters)."""
LETTER_BYTES: Final = 16 * 1024
"""Bytes of messages (bodies and ids) sealed in one batch: sealed, it stays well under the
server's item size (32 KiB by default) and a frame. A larger message goes alone."""


class Sender(Protocol):
    """What the depositor needs of its peer."""

    name: str
    store: MessageStore

    @property
    def identity(self) -> Identity: ...
    def _link(self) -> ServerLink: ...
    def _talking_with(self, user: str) -> bool: ...
    async def _group_note(self, message: Message) -> GroupNote: ...


class Depositor:
    """Seals and deposits what waits, when kicked; one pass at a time, in a task of its
    own from the first login on."""

    def __init__(self, peer: Sender, keys: KeyBook) -> None:
        self.peer = peer
        self.keys = keys
        self._to_deposit = asyncio.Event()
        self._idle = asyncio.Event()  # nothing to do
        self._task: asyncio.Task[None] | None = None
        # (recipient, id) refused by the server: for talks only. By recipient too: a group
        # message's copies share its id, and one member's refusal is not another's.
        self._undepositable: set[tuple[str, str]] = set()

    @property
    def name(self) -> str:
        return self.peer.name

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._deposit_loop())

    async def close(self, *, flush: float) -> None:
        """Stop; first deposit what waits (for up to ``flush`` seconds)."""
        if self._task is not None and not self._task.done():
            self._idle.clear()
            self.kick()  # one more pass, after any under way
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush):
                    await self._idle.wait()
        await cancel_and_wait(self._task)
        self._task = None

    def kick(self) -> None:
        """Something may wait to be deposited: a message stored for someone with no
        conversation open, a conversation ended with messages unacknowledged, a login."""
        self._to_deposit.set()

    async def _deposit_loop(self) -> None:
        while True:
            if not self._to_deposit.is_set():
                self._idle.set()
            await self._to_deposit.wait()
            await asyncio.sleep(GATHER)  # what is written meanwhile goes in the same letter
            self._to_deposit.clear()
            try:
                await self._deposit_all()
            except (P2PChatError, OSError) as exc:
                logger.info("%s: deposits wait for the next login: %s", self.name, exc)

    async def _deposit_all(self) -> None:
        """Deposit, in the order they were written, the messages that are unshipped, were
        never deposited, and have no conversation to go by: for each recipient, a sealed
        letter per batch (``_batches``), one at a time, so that order holds; paced by
        the server's deposit rate, which counts letters."""
        waiting: dict[str, list[Message]] = {}
        for message in await self.peer.store.undeposited(self.name):
            if (message.recipient, message.id) not in self._undepositable:
                waiting.setdefault(message.recipient, []).append(message)
        for recipient, messages in waiting.items():
            for letter in _batches(messages):
                if self.peer._talking_with(recipient):
                    break  # the conversation carries them (and if it ends first: next pass)
                try:
                    check_name(recipient)
                    await self._deposit_letter(letter)
                except InvalidName as exc:  # stored by an older p2pchat: never sent
                    logger.warning("%s: mail to %s is set aside: %s", self.name, recipient, exc)
                    self._undepositable.update((recipient, m.id) for m in messages)
                    break
                except (KeyChanged, SealError, MailboxFull, UnknownUser) as exc:
                    logger.warning("%s: mail to %s waits for a talk: %s", self.name, recipient, exc)
                    break
                except (RateLimited, ServerUnavailable):
                    raise  # the server, not this item: the next pass (or login) tries again

    async def _deposit_letter(self, letter: list[Message]) -> None:
        """Deposit ``letter``; a batch the server refuses (too large for it, say) goes
        again one message at a time; a message it refuses goes at the next talk only
        (never again in a loop)."""
        try:
            await self._deposit(letter)
            return
        except (KeyChanged, SealError, MailboxFull, UnknownUser, RateLimited, ServerUnavailable):
            raise
        except ServerRefused as exc:
            if len(letter) == 1:
                logger.warning(
                    "%s: %s goes at the next talk only: %s", self.name, letter[0].id, exc
                )
                self._undepositable.add((letter[0].recipient, letter[0].id))
                return
            logger.info("%s: a batch of %d refused (%s): one by one", self.name, len(letter), exc)
        for message in letter:
            await self._deposit_letter([message])

    async def _deposit(self, letter: list[Message]) -> None:
        """Seal ``letter`` (messages to one recipient: a lone one as a single letter, for
        any p2pchat, a group's copy with its note; more as a batch) and deposit it,
        waiting for our turn if paced."""
        recipient = letter[0].recipient
        mailbox_key = await self.keys.mailbox_key(recipient)
        ids = [m.id for m in letter]
        if len(letter) == 1:
            first = letter[0]
            note = await self.peer._group_note(first) if first.group is not None else None
            item, sealed = ids[0], seal(self.peer.identity, first, mailbox_key, note)
        else:
            item, sealed = bundle_id(ids), seal_bundle(self.peer.identity, letter, mailbox_key)
        for _ in range(60):
            link = self.peer._link()
            try:
                await link.request(
                    Deposit(id=link.next_id(), recipient=recipient, item=item, sealed=sealed),
                    Ok,
                )
                break
            except RateLimited:
                await asyncio.sleep(1.0)  # the server's deposit rate: wait for our turn
        else:
            raise RateLimited("the server kept refusing deposits")
        await self.peer.store.mark_deposited(ids, recipient=recipient)  # a group's: its copy


def _batches(messages: list[Message]) -> list[list[Message]]:
    """``messages`` (to one recipient, in order) cut into letters of at most ``MAX_BUNDLE``
    messages and ``LETTER_BYTES`` bytes, in order; a larger message alone, and a group's
    copy alone (a single group letter, between the batches before and after it)."""
    letters: list[list[Message]] = []
    size = 0
    alone = False  # the last letter is a group's copy: nothing joins it
    for message in messages:
        length = len(message.body.encode("utf-8", "surrogatepass")) + len(message.id) + 16
        grouped = message.group is not None
        if (
            not letters
            or alone
            or grouped
            or len(letters[-1]) >= MAX_BUNDLE
            or size + length > LETTER_BYTES
        ):
            letters.append([])
            size = 0
        letters[-1].append(message)
        size += length
        alone = grouped
    return letters
