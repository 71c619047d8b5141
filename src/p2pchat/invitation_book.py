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
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

from .errors import TooManyInvitations

__all__ = ["Invitation", "InvitationBook"]


class Invitation:
    """One invitation the server has passed on and not yet seen settled."""

    __slots__ = ("accepted", "id", "punches", "recipient", "sender", "timer")

    def __init__(self, invitation_id: str, sender: str, recipient: str) -> None:
        self.id = invitation_id
        self.sender = sender
        self.recipient = recipient
        self.accepted = False
        self.punches: Counter[str] = Counter()
        """Punch requests passed on, per side: bounded, so that neither side can make the
        other dial again and again."""
        self.timer: asyncio.TimerHandle | None = None

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


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
            raise TooManyInvitations(
                f"you have {pending} invitations pending to {recipient} already (at most "
                f"{self.max_per_pair}); wait for an answer or cancel one"
            )
        if (pending := self._sent[sender]) >= self.max_sent:
            raise TooManyInvitations(
                f"you have {pending} invitations pending already (at most "
                f"{self.max_sent}); wait for answers or cancel some"
            )
        if (pending := self._received[recipient]) >= self.max_received:
            raise TooManyInvitations(
                f"{recipient} has {pending} invitations pending already (at most "
                f"{self.max_received}); try again later"
            )

    def add(self, sender: str, recipient: str) -> Invitation:
        """A new invitation (``check()`` first)."""
        invitation = Invitation(secrets.token_urlsafe(16), sender, recipient)
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
        invitation.cancel_timer()
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
