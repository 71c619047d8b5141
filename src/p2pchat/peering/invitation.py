"""Invitations, as a peer sees them: those it sends and those it receives.

``Invitation`` is one received invitation, for the application to accept or refuse.
``InvitationDesk`` keeps them: the queue the application reads (``next_invitation()``),
those shown and not yet answered, and the invitation sent with ``invite()`` until a
proven dial-in answers it. It also settles the two cases that would otherwise leave
nobody talking: an invite to someone who invited us first accepts theirs, and two
invitations that cross make one conversation (the invitation of the name that sorts
first stands; the other side accepts it and withdraws its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import (
    IdentityError,
    InvitationGone,
    InviteRefused,
    InviteTimeout,
    KeyChanged,
    P2PChatError,
    PeerUnreachable,
    ProtocolError,
)
from ..protocol import Accept, Cancel, Cancelled, Invite, Invited, Ok, Refuse, Refused, Ringing
from ..shared.identity import b64decode, certificate_key, fingerprint
from .reach import OutgoingInvite
from .settings import PEER_DEFAULTS, PeerSettings

if TYPE_CHECKING:
    from ..shared.connection import Connection
    from .conversation import Conversation
    from .link import ServerLink
    from .reach import Reach

__all__ = ["Invitation", "InvitationDesk"]

logger = logging.getLogger(__name__)


class Host(Protocol):
    """What invitations need of the peer they belong to."""

    name: str
    on_invitation_cancelled: Callable[[Invitation], None] | None

    def _link(self) -> ServerLink: ...
    def _dialler(self) -> Reach: ...
    def _spawn(self, work: Coroutine[Any, Any, None]) -> None: ...
    def _upgrading(self, user: str) -> bool: ...
    async def _vet_key(self, user: str, key: str, *, trust_new_key: bool) -> None: ...
    async def _open_conversation(
        self, contact: str, connection: Connection, key: str, via: str = "dialled"
    ) -> Conversation: ...


class Invitation:
    """An invitation received from ``sender``; answer it once with accept() or refuse()."""

    def __init__(self, desk: InvitationDesk, invited: Invited) -> None:
        self._desk = desk
        self.id = invited.invitation
        self.sender = invited.sender
        self.addresses = list(invited.addresses)
        self.certificate = b64decode(invited.certificate)
        self.key = certificate_key(self.certificate)
        self.fingerprint = fingerprint(self.key)
        """The fingerprint of the key the server vouches for as ``sender``'s."""
        self.cancelled: str | None = None
        self.answered = False

    def __repr__(self) -> str:
        return f"<Invitation {self.id} from {self.sender}>"

    async def accept(self, *, trust_new_key: bool = False) -> Conversation:
        """Reach the inviter (dialling it, asking it to dial back, punching, or through
        the relay) and return the conversation.

        Raises KeyChanged (the invitation stays unanswered) if the inviter's key is not the
        one remembered, unless ``trust_new_key``; InvitationGone if it was cancelled or
        answered; PeerUnreachable if the inviter can be reached neither directly nor
        through the relay (the inviter is told).
        """
        return await self._accept(trust_new_key=trust_new_key)

    async def _accept(self, *, trust_new_key: bool = False, relay: bool = True) -> Conversation:
        """``accept()``; without ``relay`` for an upgrade (a direct path or nothing)."""
        peer = self._desk.peer
        await peer._vet_key(self.sender, self.key, trust_new_key=trust_new_key)
        self._answer()
        link = peer._link()
        await link.request(Accept(id=link.next_id(), invitation=self.id), Ok)
        try:
            connection, via = await peer._dialler().reach(self, relay=relay)
        except (PeerUnreachable, asyncio.CancelledError) as exc:
            # The inviter learns only that we cannot reach it, not what we tried: the
            # addresses it advertised must not become a way to probe our network.
            reason = "gave up"
            if isinstance(exc, PeerUnreachable):
                refusal = f" (the relay: {exc.relay_refusal})" if exc.relay_refusal else ""
                reason = f"cannot reach you{refusal}"
            self._desk.refuse_later(self.id, reason)
            raise
        return await peer._open_conversation(self.sender, connection, self.key, via)

    async def refuse(self, reason: str = "") -> None:
        """Tell the inviter no."""
        self._answer()
        link = self._desk.peer._link()
        await link.request(Refuse(id=link.next_id(), invitation=self.id, reason=reason), Ok)

    def _answer(self) -> None:
        if self.cancelled is not None:
            raise InvitationGone(f"the invitation from {self.sender} is gone: {self.cancelled}")
        if self.answered:
            raise InvitationGone(f"the invitation from {self.sender} was answered already")
        self.answered = True


class InvitationDesk:
    """The invitations of one peer, sent and received."""

    def __init__(self, peer: Host, *, settings: PeerSettings = PEER_DEFAULTS) -> None:
        self.peer = peer
        self._queue: asyncio.Queue[Invitation] = asyncio.Queue(settings.max_invitations)
        self._received: dict[str, Invitation] = {}
        self._held: dict[str, Invitation] = {}  # crossed invitations, by sender

    # Sent.

    async def invite(
        self, user: str, timeout: float | None, *, trust_new_key: bool = False
    ) -> Conversation:
        """See ``Peer.invite``."""
        for received in self.pending():
            if received.sender == user:  # they asked first: say yes rather than ask back
                return await received.accept(trust_new_key=trust_new_key)
        link = self.peer._link()
        reach = self.peer._dialler()
        pending: list[OutgoingInvite] = []
        invitation = ""

        def register(ringing: Ringing) -> None:  # before the invitee can possibly dial in
            nonlocal invitation
            invitation = ringing.invitation
            try:
                outgoing = OutgoingInvite(user, b64decode(ringing.certificate))
            except IdentityError as exc:
                logger.warning("the server vouched a bad certificate for %s: %s", user, exc)
                return
            pending.append(outgoing)
            reach.invited(invitation, outgoing)
            for received in self.pending():
                if received.sender == user:  # theirs reached us before our ringing did
                    self._cross(received, invitation, outgoing)
                    break

        await link.request(Invite(id=link.next_id(), user=user), Ringing, on_answer=register)
        if not pending:
            await self._cancel(invitation)
            raise ProtocolError(f"the server vouched an invalid certificate for {user}")
        outgoing = pending[0]
        try:
            await self.peer._vet_key(user, outgoing.key, trust_new_key=trust_new_key)
        except KeyChanged:
            reach.outgoing.pop(invitation, None)
            await self._cancel(invitation)
            raise
        outgoing.vetted.set()
        try:
            try:
                async with asyncio.timeout(timeout):
                    return await asyncio.shield(outgoing.conversation)
            except TimeoutError:
                if not outgoing.claimed:
                    reach.outgoing.pop(invitation, None)  # a dial-in from now on is refused
                    await self._cancel(invitation)
                    raise InviteTimeout(f"{user} did not answer within {timeout:g} s") from None
            # A dial-in proved itself before the time ran out: the talk it opens is ours.
            return await asyncio.shield(outgoing.conversation)
        except asyncio.CancelledError:
            self._abandon(reach, invitation, outgoing)
            raise
        finally:
            reach.outgoing.pop(invitation, None)
            if not _succeeded(outgoing.conversation):
                self._release_held(user)

    def _abandon(self, reach: Reach, invitation: str, outgoing: OutgoingInvite) -> None:
        """invite() was cancelled: withdraw the invitation, or close the talk it opens."""
        reach.outgoing.pop(invitation, None)
        if outgoing.claimed:
            outgoing.conversation.add_done_callback(self._close_unwanted)
        else:
            self.peer._spawn(self._cancel(invitation))

    def _close_unwanted(self, opened: asyncio.Future[Conversation]) -> None:
        if _succeeded(opened):
            self.peer._spawn(opened.result().close("the invitation was withdrawn"))

    async def _cancel(self, invitation: str) -> None:
        with contextlib.suppress(P2PChatError):
            link = self.peer._link()
            await link.request(Cancel(id=link.next_id(), invitation=invitation), Ok)

    # Received.

    async def next(self) -> Invitation:
        return await self._queue.get()

    def pending(self) -> list[Invitation]:
        return [i for i in self._received.values() if not i.answered and i.cancelled is None]

    def on_push(self, message: Invited | Cancelled | Refused) -> None:
        """News from the server about an invitation, sent or received."""
        if isinstance(message, Invited):
            invitation = Invitation(self, message)
            if self.peer._upgrading(message.sender):
                self.peer._spawn(self._upgrade(invitation))
            elif (crossing := self._invite_pending_to(message.sender)) is not None:
                self._cross(invitation, *crossing)
            else:
                self._offer(invitation)
        elif isinstance(message, Cancelled):
            received = self._received.pop(message.invitation, None)
            for sender, held in list(self._held.items()):
                if held.id == message.invitation:
                    received = self._held.pop(sender)
            if received is not None:
                received.cancelled = message.reason or "cancelled"
                callback = self.peer.on_invitation_cancelled
                if callback is not None and not received.answered:
                    callback(received)
        else:
            # A claimed invitation is no longer pending: its talk is being opened.
            with contextlib.suppress(P2PChatError):
                if outgoing := self.peer._dialler().outgoing.get(message.invitation):
                    outgoing.settle(None, InviteRefused(message.user, message.reason))

    async def _upgrade(self, invitation: Invitation) -> None:
        """``invitation.sender``, with whom we talk through the relay, looks for a direct
        path (``upgrade.py``): accepted at once, without the relay; the talk moves onto the
        connection if it proves to be theirs with the key the talk was proven with (a key
        that is not the remembered one is refused: the application was not asked)."""
        try:
            await invitation._accept(relay=False)
        except KeyChanged:
            self.refuse_later(invitation.id, "a key that is not the one remembered")
        except P2PChatError as exc:
            logger.info("%s: no direct path to %s yet: %s", self.peer.name, invitation.sender, exc)

    def _offer(self, invitation: Invitation) -> None:
        """Hand a received invitation to the application (``next_invitation()``)."""
        try:
            self._queue.put_nowait(invitation)
        except asyncio.QueueFull:
            logger.warning("too many unanswered invitations; refusing %s", invitation.sender)
            self.refuse_later(invitation.id, "too many pending invitations")
            return
        self._received[invitation.id] = invitation
        while len(self._received) > 4 * self._queue.maxsize:
            self._received.pop(next(iter(self._received)))

    def refuse_later(self, invitation: str, reason: str) -> None:
        """Refuse ``invitation`` in the background (best effort)."""

        async def refuse() -> None:
            with contextlib.suppress(P2PChatError):
                link = self.peer._link()
                await link.request(
                    Refuse(id=link.next_id(), invitation=invitation, reason=reason), Ok
                )

        self.peer._spawn(refuse())

    # Crossed invitations.

    def _invite_pending_to(self, user: str) -> tuple[str, OutgoingInvite] | None:
        with contextlib.suppress(P2PChatError):
            for invitation_id, outgoing in self.peer._dialler().outgoing.items():
                if outgoing.user == user and not outgoing.claimed:
                    return invitation_id, outgoing
        return None

    def _cross(self, invitation: Invitation, invitation_id: str, outgoing: OutgoingInvite) -> None:
        """We invited ``invitation.sender`` while they invited us. Both sides decide alike:
        the invitation of the name that sorts first stands; the other side accepts it and
        withdraws its own. Without this each side would open a talk and close the other."""
        if self.peer.name > invitation.sender:
            self.peer._spawn(self._merge(invitation, invitation_id, outgoing))
        elif invitation.id not in self._received:  # not shown yet: shown if ours fails
            self._held[invitation.sender] = invitation
        # else: shown already; they will accept ours and withdraw theirs

    async def _merge(
        self, invitation: Invitation, invitation_id: str, outgoing: OutgoingInvite
    ) -> None:
        """Accept their invitation and let our own invite() return that conversation."""
        try:
            chat = await invitation.accept()
        except KeyChanged:
            self._offer(invitation)  # the application decides whether to trust the key
            return
        except P2PChatError as exc:
            logger.info(
                "%s: crossed invitations with %s: %s", self.peer.name, invitation.sender, exc
            )
            return  # ours still stands: they show it once theirs has failed
        with contextlib.suppress(P2PChatError):
            reach = self.peer._dialler()
            if reach.outgoing.get(invitation_id) is outgoing:
                del reach.outgoing[invitation_id]
        if outgoing.settle(chat):
            await self._cancel(invitation_id)
        else:  # our invite() ended meanwhile: nobody wants this talk
            await chat.close("the invitation was withdrawn")

    def _release_held(self, user: str) -> None:
        """Our invitation to ``user`` failed: show theirs, if it still stands."""
        held = self._held.pop(user, None)
        if held is not None and held.cancelled is None and not held.answered:
            self._offer(held)


def _succeeded(future: asyncio.Future[Conversation]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None
