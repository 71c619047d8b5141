"""Invitations on the server: passing them between logged-in peers, telling each side
what it needs to know, and joining the two through the relay when asked.

Requests (``invite``, ``accept``, ``refuse``, ``cancel``, ``relay_request``)::

    inviter -> invite{id, user}              <- ringing{id, invitation, certificate}
                                   invitee  <- invited{invitation, sender, addresses, certificate}
    invitee -> accept{id, invitation}        <- ok{id}      inviter <- accepted{invitation, user}
    invitee -> refuse{id, invitation, reason} <- ok{id}     inviter <- refused{...}
    inviter -> cancel{id, invitation}        <- ok{id}      invitee <- cancelled{...}
    invitee -> relay_request{id, invitation} <- relay_ticket{id, ticket}
                                                          inviter <- relay_offer{invitation, ticket}
    either  -> punch_request{id, invitation, step}  <- ok{id}
                          the other <- punch_note{invitation, step, addresses, observed}

The invitations live behind ``Invitations`` (``stores/invitations.py``: in this process, or in
Redis for several nodes), the users behind ``Cluster`` (``cluster/base.py``): the other side of
an invitation may be logged in on another node; a push reaches them there. Expiry and the
dial window are timers of the node that set them; if that node dies, the invitations of
its users are settled by whichever node notices (``logout``), and Redis drops the rest
when their time is up.

A relay is held by the node of the invitee who asks for it: both tickets name that node's
address (``relay_address``, when set), so that the inviter joins the relay there. One
relay per invitation: an invitee cannot hold the inviter's relay slots by asking again and
again for as long as the dial window lasts (the node that gave it remembers; an invitee
who logs in again on another node could ask once more there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..cluster.base import Cluster
from ..errors import (
    InvitationGone,
    P2PChatError,
    RateLimited,
    RelayUnavailable,
    ServerRefused,
    UnknownUser,
    UserOffline,
)
from ..messages import Address
from ..protocol import (
    Accept,
    Accepted,
    Cancel,
    Cancelled,
    Invite,
    Invited,
    Ok,
    PunchNote,
    PunchRequest,
    Refuse,
    Refused,
    RelayOffer,
    RelayRequest,
    RelayTicket,
    Ringing,
    WireMessage,
)
from ..store import UserStore
from ..stores.invitations import Invitation, Invitations
from .relay import RelayHub
from .session import Session
from .settings import DEFAULTS, ServerSettings
from .stats import ServerStats

__all__ = ["Rendezvous"]

logger = logging.getLogger(__name__)

Handler = Callable[[Session, Any], Awaitable[None]]

PUNCHES_KEPT = 10_000
"""Invitations whose punch requests (or relay) are counted at once (a bound on memory: one
settled on another node is forgotten here only when newer ones push it out)."""


class Rendezvous:
    """The invitation requests of one server."""

    def __init__(
        self,
        cluster: Cluster,
        store: UserStore,
        book: Invitations,
        relays: RelayHub,
        *,
        stats: ServerStats | None = None,
        relay_address: Address | None = None,
        settings: ServerSettings = DEFAULTS,
    ) -> None:
        self.cluster = cluster
        self.store = store
        self.book = book
        self.relays = relays
        self.stats = stats if stats is not None else ServerStats()
        self.relay_address = relay_address
        """Where peers join this node's relays, named in tickets (None: where they are)."""
        self.settings = settings
        """Its limits: ``invitation_ttl``; ``dial_window``, how long an accepted invitation
        still allows a relay request or a refusal; ``max_punches``, punch requests passed on
        per invitation and side (three DCUtR rounds)."""
        self._punches: dict[tuple[str, str], int] = {}  # (invitation, side) -> passed on
        self._relayed: dict[str, None] = {}  # invitations given a relay here, oldest first
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def handlers(self) -> dict[type[Any], Handler]:
        """The requests handled here, by message type."""
        return {
            Invite: self._on_invite,
            Accept: self._on_accept,
            Refuse: self._on_refuse,
            Cancel: self._on_cancel,
            RelayRequest: self._on_relay_request,
            PunchRequest: self._on_punch_request,
        }

    async def close(self) -> None:
        """Stop every timer; forget what this server holds."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(P2PChatError, OSError):
            await self.book.clear()

    async def logout(self, name: str, *, unless: Callable[[], bool] | None = None) -> None:
        """``name`` has left: its invitations end, and the other sides are told.

        An accepted one ends quietly: the two may be talking already. ``unless``: checked
        before each, stops it once true (``name`` logged in again: what stands is theirs)."""
        for invitation in await self.book.of_user(name):
            if unless is not None and unless():
                return
            if invitation.accepted:
                await self._settle(invitation)
            elif invitation.sender == name:
                await self._settle(
                    invitation,
                    outcome="gone",
                    to_recipient=Cancelled(invitation=invitation.id, reason=f"{name} went offline"),
                )
            else:
                await self._settle(
                    invitation,
                    outcome="gone",
                    to_sender=Refused(invitation=invitation.id, user=name, reason="went offline"),
                )

    async def _on_invite(self, session: Session, message: Invite) -> None:
        if message.user == session.name:
            raise ServerRefused("you cannot invite yourself")
        invitee = await self.cluster.lookup(message.user)
        if invitee is None:
            if await self.store.get(message.user) is None:
                raise UnknownUser(f"no user named {message.user} has ever logged in")
            raise UserOffline(f"{message.user} is not online")
        invitation = await self.book.open(
            session.name, invitee.name, ttl=self.settings.invitation_ttl
        )
        self.stats.invitations["sent"] += 1
        self._after(self.settings.invitation_ttl, invitation, self._expire)
        await session.reply(
            Ringing(id=message.id, invitation=invitation.id, certificate=invitee.certificate)
        )
        self.cluster.push(
            invitee.name,
            Invited(
                invitation=invitation.id,
                sender=session.name,
                addresses=session.addresses,
                certificate=session.certificate,
            ),
        )

    async def _invitation_for(self, invitation_id: str, *, recipient: str) -> Invitation:
        invitation = await self.book.get(invitation_id)
        if invitation is None or invitation.recipient != recipient:
            raise InvitationGone("that invitation was cancelled, expired or answered already")
        return invitation

    async def _on_accept(self, session: Session, message: Accept) -> None:
        invitation = await self._invitation_for(message.invitation, recipient=session.name)
        # Answered: it no longer counts, and ends quietly once the invitee has had time to
        # dial, ask for a relay, or say it cannot.
        if invitation.accepted or not await self.book.accept(
            invitation.id, window=self.settings.dial_window
        ):
            raise InvitationGone("that invitation was accepted already")
        invitation.accepted = True
        self.stats.invitations["accepted"] += 1
        self._after(self.settings.dial_window, invitation, self._settle)
        self.cluster.push(invitation.sender, Accepted(invitation=invitation.id, user=session.name))
        await session.reply(Ok(id=message.id))

    async def _on_refuse(self, session: Session, message: Refuse) -> None:
        # Allowed after accept too: the invitee may find it cannot dial the inviter.
        invitation = await self._invitation_for(message.invitation, recipient=session.name)
        await self._settle(
            invitation,
            outcome="refused",
            to_sender=Refused(invitation=invitation.id, user=session.name, reason=message.reason),
        )
        await session.reply(Ok(id=message.id))

    async def _on_cancel(self, session: Session, message: Cancel) -> None:
        invitation = await self.book.get(message.invitation)
        if invitation is None or invitation.sender != session.name:
            raise InvitationGone("no such invitation of yours is pending")
        await self._settle(
            invitation,
            outcome=None if invitation.accepted else "cancelled",
            to_recipient=None
            if invitation.accepted
            else Cancelled(invitation=invitation.id, reason=f"{session.name} cancelled it"),
        )
        await session.reply(Ok(id=message.id))

    async def _on_relay_request(self, session: Session, message: RelayRequest) -> None:
        invitation = await self._invitation_for(message.invitation, recipient=session.name)
        if not invitation.accepted:
            raise InvitationGone("accept the invitation before asking for a relay")
        if invitation.id in self._relayed:
            raise RelayUnavailable("this invitation was given a relay already")
        inviter = await self.cluster.lookup(invitation.sender)
        if inviter is None:
            raise UserOffline(f"{invitation.sender} is not online")
        inviter_ticket, invitee_ticket = self.relays.open(inviter.name, session.name)
        self._relayed[invitation.id] = None
        while len(self._relayed) > PUNCHES_KEPT:  # settled elsewhere: forget the oldest
            del self._relayed[next(iter(self._relayed))]
        here = self.relay_address
        self.cluster.push(
            inviter.name, RelayOffer(invitation=invitation.id, ticket=inviter_ticket, server=here)
        )
        await session.reply(RelayTicket(id=message.id, ticket=invitee_ticket, server=here))

    async def _on_punch_request(self, session: Session, message: PunchRequest) -> None:
        """Pass a step of the hole punch to the other side, with where that side can dial
        the sender and where the server sees the sender come from (which the sender
        cannot make up). Each side's requests come to the node that holds its session,
        so the bound is counted there."""
        invitation = await self.book.get(message.invitation)
        if invitation is None or session.name not in (invitation.sender, invitation.recipient):
            raise InvitationGone("no such invitation of yours stands")
        if not invitation.accepted:
            raise InvitationGone("punching comes after the invitation is accepted")
        other_name = (
            invitation.recipient if session.name == invitation.sender else invitation.sender
        )
        other = await self.cluster.lookup(other_name)
        if other is None:
            raise UserOffline(f"{other_name} is not online")
        if not (session.traversal and other.traversal):
            raise ServerRefused(f"{other_name} does not take part in hole punching")
        counted = (invitation.id, session.name)
        if self._punches.get(counted, 0) >= self.settings.max_punches:
            raise RateLimited(f"at most {self.settings.max_punches} punch requests per invitation")
        self._punches[counted] = self._punches.get(counted, 0) + 1
        while len(self._punches) > PUNCHES_KEPT:  # settled elsewhere: forget the oldest
            del self._punches[next(iter(self._punches))]
        self.cluster.push(
            other_name,
            PunchNote(
                invitation=invitation.id,
                step=message.step,
                addresses=session.addresses,
                observed=session.observed,
            ),
        )
        await session.reply(Ok(id=message.id))

    def _after(
        self,
        delay: float,
        invitation: Invitation,
        then: Callable[[Invitation], Awaitable[None]],
    ) -> None:
        """Run ``then(invitation)`` in ``delay`` seconds (replacing its earlier timer)."""
        if (timer := self._timers.pop(invitation.id, None)) is not None:
            timer.cancel()

        def fire() -> None:
            self._timers.pop(invitation.id, None)
            task = asyncio.create_task(self._quietly(then(invitation)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._timers[invitation.id] = asyncio.get_running_loop().call_later(delay, fire)

    @staticmethod
    async def _quietly(work: Awaitable[None]) -> None:
        try:
            await work
        except (P2PChatError, OSError) as exc:  # Redis away: its TTLs end it instead
            logger.warning("could not settle an invitation in time: %s", exc)

    async def _expire(self, invitation: Invitation) -> None:
        await self._settle(
            invitation,
            pending_only=True,  # accepted meanwhile (perhaps on another node): not expired
            outcome="expired",
            to_recipient=Cancelled(invitation=invitation.id, reason="the invitation expired"),
        )

    async def _settle(
        self,
        invitation: Invitation,
        *,
        pending_only: bool = False,
        outcome: str | None = None,
        to_sender: WireMessage | None = None,
        to_recipient: WireMessage | None = None,
    ) -> None:
        """Forget ``invitation`` and tell whichever side still needs to know (once, even
        if several nodes try at the same time)."""
        if (timer := self._timers.pop(invitation.id, None)) is not None:
            timer.cancel()
        for side in (invitation.sender, invitation.recipient):
            self._punches.pop((invitation.id, side), None)
        self._relayed.pop(invitation.id, None)
        if await self.book.settle(invitation.id, pending_only=pending_only) is None:
            return
        if outcome is not None:
            self.stats.invitations[outcome] += 1
        if to_sender is not None:
            self.cluster.push(invitation.sender, to_sender)
        if to_recipient is not None:
            self.cluster.push(invitation.recipient, to_recipient)
