"""The invitations a server has passed on: who invited whom, and the bounds on them.

Domain logic only, no I/O: the server asks ``check()`` before passing an invitation on,
``add()``s it, and settles it when it is answered, cancelled or expired. Counting is kept
per direction and per pair, so that nobody can use up someone else's allowance:

- ``max_sent``: invitations a user has sent and that are still unanswered;
- ``max_received``: invitations waiting for a user's answer;
- ``max_per_pair``: unanswered invitations from one user to one other user, so that a
  single account cannot fill someone's ``max_received`` on its own.

An accepted invitation no longer counts: it stays known only for its dial window (the
invitee may still ask for a relay, or refuse because it cannot dial), then ends quietly.

``Invitations`` is what the server's rendezvous uses: the same operations, async, each
atomic, so that they can live in Redis (``redis_cluster.RedisInvitations``) and be shared
by several server nodes; ``LocalInvitations`` is the book of one server behind it. Timers
(expiry, dial window) belong to the caller.
"""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Protocol

from ..errors import TooManyInvitations

__all__ = ["Invitation", "InvitationBook", "Invitations", "LocalInvitations", "too_many"]


class Invitation:
    """One invitation the server has passed on and not yet seen settled."""

    __slots__ = ("accepted", "id", "recipient", "sender")

    def __init__(
        self, invitation_id: str, sender: str, recipient: str, *, accepted: bool = False
    ) -> None:
        self.id = invitation_id
        self.sender = sender
        self.recipient = recipient
        self.accepted = accepted

    def __repr__(self) -> str:
        state = "accepted" if self.accepted else "pending"
        return f"<Invitation {self.id} {self.sender} -> {self.recipient} {state}>"


def too_many(bound: str, pending: int, limit: int, recipient: str) -> TooManyInvitations:
    """The refusal for a bound (``pair``, ``sent`` or ``received``) that is reached."""
    if bound == "pair":
        return TooManyInvitations(
            f"you have {pending} invitations pending to {recipient} already (at most "
            f"{limit}); wait for an answer or cancel one"
        )
    if bound == "sent":
        return TooManyInvitations(
            f"you have {pending} invitations pending already (at most "
            f"{limit}); wait for answers or cancel some"
        )
    return TooManyInvitations(
        f"{recipient} has {pending} invitations pending already (at most {limit}); try again later"
    )


def new_invitation_id() -> str:
    return secrets.token_urlsafe(16)


class Invitations(Protocol):
    """The invitations pending on a server (or on every node of a cluster)."""

    async def open(self, sender: str, recipient: str, *, ttl: float) -> Invitation:
        """Check the bounds and add an invitation, in one step; it lives ``ttl`` seconds
        at most (the caller's timer normally ends it first). Raises TooManyInvitations."""

    async def get(self, invitation_id: str) -> Invitation | None: ...

    async def accept(self, invitation_id: str, *, window: float) -> bool:
        """Mark it answered (it stops counting; it lives ``window`` seconds more at most);
        False if it is gone or was accepted already."""

    async def settle(self, invitation_id: str, *, pending_only: bool = False) -> Invitation | None:
        """Forget it (if ``pending_only``: only if not accepted); return it if this call is
        the one that removed it (so that exactly one caller tells the two sides)."""

    async def of_user(self, name: str) -> list[Invitation]:
        """Those ``name`` sent or received, not yet settled."""

    async def clear(self) -> None:
        """Forget those this server holds (it is closing)."""


class InvitationBook:
    """Invitations by id, with per-user indexes and the three bounds above."""

    def __init__(self, *, max_sent: int = 16, max_received: int = 16, max_per_pair: int = 2):
        self.max_sent = max_sent
        self.max_received = max_received
        self.max_per_pair = max_per_pair
        self._by_id: dict[str, Invitation] = {}
        self._by_user: dict[str, set[str]] = {}
        self._sent: Counter[str] = Counter()
        self._received: Counter[str] = Counter()
        self._pairs: Counter[tuple[str, str]] = Counter()

    def __len__(self) -> int:
        return len(self._by_id)

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def get(self, invitation_id: str) -> Invitation | None:
        return self._by_id.get(invitation_id)

    def of_user(self, name: str) -> list[Invitation]:
        """Invitations ``name`` sent or received, not yet settled."""
        return [self._by_id[i] for i in self._by_user.get(name, ())]

    def check(self, sender: str, recipient: str) -> None:
        """Raise TooManyInvitations if ``sender`` may not invite ``recipient`` now."""
        if (pending := self._pairs[sender, recipient]) >= self.max_per_pair:
            raise too_many("pair", pending, self.max_per_pair, recipient)
        if (pending := self._sent[sender]) >= self.max_sent:
            raise too_many("sent", pending, self.max_sent, recipient)
        if (pending := self._received[recipient]) >= self.max_received:
            raise too_many("received", pending, self.max_received, recipient)

    def add(self, sender: str, recipient: str) -> Invitation:
        """A new invitation (``check()`` first)."""
        invitation = Invitation(new_invitation_id(), sender, recipient)
        self._by_id[invitation.id] = invitation
        for name in (sender, recipient):
            self._by_user.setdefault(name, set()).add(invitation.id)
        self._count(invitation, 1)
        return invitation

    def accept(self, invitation: Invitation) -> None:
        """Mark answered: it no longer counts against any bound."""
        if not invitation.accepted:
            invitation.accepted = True
            self._count(invitation, -1)

    def remove(self, invitation: Invitation) -> bool:
        """Forget ``invitation``; False if it was already gone."""
        if self._by_id.pop(invitation.id, None) is None:
            return False
        for name in (invitation.sender, invitation.recipient):
            ids = self._by_user.get(name)
            if ids is not None:
                ids.discard(invitation.id)
                if not ids:
                    del self._by_user[name]
        if not invitation.accepted:
            self._count(invitation, -1)
        return True

    def clear(self) -> None:
        for invitation in list(self._by_id.values()):
            self.remove(invitation)

    def _count(self, invitation: Invitation, step: int) -> None:
        for counter, key in (
            (self._sent, invitation.sender),
            (self._received, invitation.recipient),
        ):
            counter[key] += step
            if counter[key] <= 0:
                del counter[key]
        pair = (invitation.sender, invitation.recipient)
        self._pairs[pair] += step
        if self._pairs[pair] <= 0:
            del self._pairs[pair]


class LocalInvitations:
    """``Invitations`` over the ``InvitationBook`` of one server process."""

    def __init__(self, book: InvitationBook) -> None:
        self.book = book

    async def open(self, sender: str, recipient: str, *, ttl: float) -> Invitation:
        self.book.check(sender, recipient)
        return self.book.add(sender, recipient)

    async def get(self, invitation_id: str) -> Invitation | None:
        return self.book.get(invitation_id)

    async def accept(self, invitation_id: str, *, window: float) -> bool:
        invitation = self.book.get(invitation_id)
        if invitation is None or invitation.accepted:
            return False
        self.book.accept(invitation)
        return True

    async def settle(self, invitation_id: str, *, pending_only: bool = False) -> Invitation | None:
        invitation = self.book.get(invitation_id)
        if invitation is None or (pending_only and invitation.accepted):
            return None
        return invitation if self.book.remove(invitation) else None

    async def of_user(self, name: str) -> list[Invitation]:
        return self.book.of_user(name)

    async def clear(self) -> None:
        self.book.clear()
