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

The bounds live in ``InvitationBook``; the sessions belong to the server, which hands this
object the same dict it keeps them in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import InvitationGone, RateLimited, ServerRefused, UnknownUser, UserOffline
from .invitation_book import Invitation, InvitationBook
from .protocol import (
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
from .relay import RelayHub
from .session import Session
from .store import UserStore

__all__ = ["Rendezvous"]

Handler = Callable[[Session, Any], Awaitable[None]]


class Rendezvous:
    """The invitation requests of one server."""

    def __init__(
        self,
        sessions: dict[str, Session],
        store: UserStore,
        book: InvitationBook,
        relays: RelayHub,
        *,
        invitation_ttl: float = 120.0,
        dial_window: float = 60.0,
        max_punches: int = 6,
    ) -> None:
        self._sessions = sessions
        self.store = store
        self.book = book
        self.relays = relays
        self.invitation_ttl = invitation_ttl
        self.dial_window = dial_window
        """How long an accepted invitation still allows a relay request or a refusal."""
        self.max_punches = max_punches
        """Punch requests passed on per invitation and side (three DCUtR rounds)."""

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

    def logout(self, name: str) -> None:
        """``name`` has left: its invitations end, and the other sides are told.

        An accepted one ends quietly: the two may be talking already."""
        for invitation in self.book.of_user(name):
            if invitation.accepted:
                self.book.remove(invitation)
            elif invitation.sender == name:
                self._settle(
                    invitation,
                    to_recipient=Cancelled(invitation=invitation.id, reason=f"{name} went offline"),
                )
            else:
                self._settle(
                    invitation,
                    to_sender=Refused(invitation=invitation.id, user=name, reason="went offline"),
                )

    async def _on_invite(self, session: Session, message: Invite) -> None:
        if message.user == session.name:
            raise ServerRefused("you cannot invite yourself")
        invitee = self._sessions.get(message.user)
        if invitee is None:
            if await self.store.get(message.user) is None:
                raise UnknownUser(f"no user named {message.user} has ever logged in")
            raise UserOffline(f"{message.user} is not online")
        self.book.check(session.name, invitee.name)
        invitation = self.book.add(session.name, invitee.name)
        invitation.timer = asyncio.get_running_loop().call_later(
            self.invitation_ttl, self._expire, invitation
        )
        await session.reply(
            Ringing(id=message.id, invitation=invitation.id, certificate=invitee.certificate)
        )
        invitee.push(
            Invited(
                invitation=invitation.id,
                sender=session.name,
                addresses=session.addresses,
                certificate=session.certificate,
            )
        )

    def _invitation_for(self, invitation_id: str, *, recipient: str) -> Invitation:
        invitation = self.book.get(invitation_id)
        if invitation is None or invitation.recipient != recipient:
            raise InvitationGone("that invitation was cancelled, expired or answered already")
        return invitation

    async def _on_accept(self, session: Session, message: Accept) -> None:
        invitation = self._invitation_for(message.invitation, recipient=session.name)
        if invitation.accepted:
            raise InvitationGone("that invitation was accepted already")
        # Answered: it no longer counts, and ends quietly once the invitee has had time to
        # dial, ask for a relay, or say it cannot.
        self.book.accept(invitation)
        invitation.cancel_timer()
        invitation.timer = asyncio.get_running_loop().call_later(
            self.dial_window, self.book.remove, invitation
        )
        if (inviter := self._sessions.get(invitation.sender)) is not None:
            inviter.push(Accepted(invitation=invitation.id, user=session.name))
        await session.reply(Ok(id=message.id))

    async def _on_refuse(self, session: Session, message: Refuse) -> None:
        # Allowed after accept too: the invitee may find it cannot dial the inviter.
        invitation = self._invitation_for(message.invitation, recipient=session.name)
        self._settle(
            invitation,
            to_sender=Refused(invitation=invitation.id, user=session.name, reason=message.reason),
        )
        await session.reply(Ok(id=message.id))

    async def _on_cancel(self, session: Session, message: Cancel) -> None:
        invitation = self.book.get(message.invitation)
        if invitation is None or invitation.sender != session.name:
            raise InvitationGone("no such invitation of yours is pending")
        self._settle(
            invitation,
            to_recipient=None
            if invitation.accepted
            else Cancelled(invitation=invitation.id, reason=f"{session.name} cancelled it"),
        )
        await session.reply(Ok(id=message.id))

    async def _on_relay_request(self, session: Session, message: RelayRequest) -> None:
        invitation = self._invitation_for(message.invitation, recipient=session.name)
        if not invitation.accepted:
            raise InvitationGone("accept the invitation before asking for a relay")
        inviter = self._sessions.get(invitation.sender)
        if inviter is None:
            raise UserOffline(f"{invitation.sender} is not online")
        inviter_ticket, invitee_ticket = self.relays.open(inviter.name, session.name)
        inviter.push(RelayOffer(invitation=invitation.id, ticket=inviter_ticket))
        await session.reply(RelayTicket(id=message.id, ticket=invitee_ticket))

    async def _on_punch_request(self, session: Session, message: PunchRequest) -> None:
        """Pass a step of the hole punch to the other side, with where that side can dial
        the sender and where the server sees the sender come from (which the sender
        cannot make up)."""
        invitation = self.book.get(message.invitation)
        if invitation is None or session.name not in (invitation.sender, invitation.recipient):
            raise InvitationGone("no such invitation of yours stands")
        if not invitation.accepted:
            raise InvitationGone("punching comes after the invitation is accepted")
        inviter = session.name == invitation.sender
        other_name = invitation.recipient if inviter else invitation.sender
        other = self._sessions.get(other_name)
        if other is None:
            raise UserOffline(f"{other_name} is not online")
        if not (session.traversal and other.traversal):
            raise ServerRefused(f"{other_name} does not take part in hole punching")
        if invitation.punches[session.name] >= self.max_punches:
            raise RateLimited(f"at most {self.max_punches} punch requests per invitation")
        invitation.punches[session.name] += 1
        other.push(
            PunchNote(
                invitation=invitation.id,
                step=message.step,
                addresses=session.addresses,
                observed=session.observed,
            )
        )
        await session.reply(Ok(id=message.id))

    def _expire(self, invitation: Invitation) -> None:
        self._settle(
            invitation,
            to_recipient=Cancelled(invitation=invitation.id, reason="the invitation expired"),
        )

    def _settle(
        self,
        invitation: Invitation,
        *,
        to_sender: WireMessage | None = None,
        to_recipient: WireMessage | None = None,
    ) -> None:
        """Forget ``invitation`` and tell whichever side still needs to know."""
        if not self.book.remove(invitation):
            return
        if to_sender is not None and (sender := self._sessions.get(invitation.sender)):
            sender.push(to_sender)
        if to_recipient is not None and (recipient := self._sessions.get(invitation.recipient)):
            recipient.push(to_recipient)
