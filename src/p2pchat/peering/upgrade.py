"""A relayed talk upgrades itself to direct when a direct path appears, as libp2p's DCUtR
upgrades a relayed connection: the relay is a fallback, and a file should not stay on its
bandwidth when it need not.

When a talk opens through the relay, one side (the name that sorts first: both sides
decide alike, so their attempts never cross) invites the other again, in the background,
up to ``len(ROUNDS)`` times, after the pauses in ``ROUNDS``. The other side accepts such
an invitation at once, without showing it (``InvitationDesk``), and reaches the inviter
without the relay: dialling it, then asking it to dial back and punching (``reach.py``).
A connection that proves itself is taken by ``Talks``, which moves the relayed
conversation onto it (``Conversation.move()``) when the contact's key is the one the talk
was proven with; the relayed connection is then closed.

The server sees invitations and punch requests, as for any talk; it can neither make a
side move (only a connection that passes the TLS check with the contact's remembered key
is taken) nor learn more than rendezvous tells it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

from ..errors import P2PChatError
from .conversation import Conversation
from .settings import PeerSettings

__all__ = ["ROUNDS", "Upgrades", "upgrades"]

logger = logging.getLogger(__name__)

ROUNDS: Final = (0.5, 2.0, 4.0)
"""The pause before each attempt (three, as DCUtR makes), from the end of the one before."""


def upgrades(me: str, contact: str) -> bool:
    """Whether ``me`` is the side that tries to upgrade a relayed talk with ``contact``."""
    return me < contact


Invite = Callable[[str, float], Awaitable[Conversation]]
"""(contact, timeout) -> the conversation its invitation opened (``InvitationDesk.invite``)."""


class Upgrades:
    """The background attempts of the peer ``name`` to take its relayed talks direct."""

    def __init__(
        self,
        name: str,
        *,
        invite: Invite,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        settings: PeerSettings,
    ) -> None:
        self.name = name
        self._invite = invite
        self._spawn = spawn  # runs until done or until the peer closes
        self.settings = settings
        self._running: set[str] = set()  # contacts being upgraded

    def opened(self, chat: Conversation) -> None:
        """A talk opened: if it is relayed and ours to upgrade, try in the background."""
        ours = upgrades(self.name, chat.peer)
        if chat.route == "relay" and ours and chat.peer not in self._running:
            self._running.add(chat.peer)
            self._spawn(self._run(chat))

    @property
    def round_timeout(self) -> float:
        """How long one attempt may take: the invitee's dial, call back and punch, then
        both handshakes (a failure usually comes back sooner, as a refusal)."""
        hello = self.settings.hello_timeout or 10.0
        return self.settings.traverse_after + self.settings.punch_timeout + 2 * hello

    async def _run(self, chat: Conversation) -> None:
        try:
            for number, pause in enumerate(ROUNDS, 1):
                if await _ended_within(chat, pause) or chat.route != "relay":
                    return
                try:
                    now = await self._invite(chat.peer, self.round_timeout)
                except P2PChatError as exc:
                    logger.info(
                        "%s: upgrade %d of the talk with %s: %s", self.name, number, chat.peer, exc
                    )
                    continue
                if now is not chat or chat.route != "relay":
                    logger.info("%s: the talk with %s is %s now", self.name, chat.peer, now.route)
                    return
            logger.info("%s: the talk with %s stays on the relay", self.name, chat.peer)
        finally:
            self._running.discard(chat.peer)


async def _ended_within(chat: Conversation, seconds: float) -> bool:
    """Wait ``seconds``; True at once if the talk ends meanwhile."""
    try:
        async with asyncio.timeout(seconds):
            await chat.wait_closed()
    except TimeoutError:
        return False
    return True
