"""What a server does when a user leaves: the logout of a session here, and the clean-up
after a user of a node that died.

Either way the user's pending invitations end (the other sides are told) and the user
store records them offline; a session's login is also let go in the cluster. (Their mail
rates stay: they bound the user, not the session, ``rates.py``.) A user may log in again
(here, or on another node) while that is under way: what stands from then on is the new
login's, so the clean-up stops there, and the cluster lets go of the old login only
(``cluster.Entry.token``), never of the new one.
"""

from __future__ import annotations

from ..cluster.base import Cluster
from ..errors import P2PChatError
from .rendezvous import Rendezvous
from .session import PresenceLog, Session, Sessions

__all__ = ["Departures"]


class Departures:
    """The logouts of one server (see above)."""

    def __init__(
        self,
        *,
        sessions: Sessions,
        cluster: Cluster,
        rendezvous: Rendezvous,
        presence: PresenceLog,
    ) -> None:
        self.sessions = sessions
        self.cluster = cluster
        self.rendezvous = rendezvous
        self.presence = presence

    async def logout(self, session: Session) -> None:
        """``session`` has ended: log it out (once; nothing if it was not logged in)."""
        token = self.sessions.remove(session)
        if token is None:
            return
        name = session.name

        def back() -> bool:  # logged in again here meanwhile: what is left is theirs
            return name in self.sessions

        if not back():
            try:
                await self.rendezvous.logout(name, unless=back)
            except (P2PChatError, OSError) as exc:  # Redis away: their TTLs end them instead
                session.connection.log.warning("invitations left to expire: %s", exc)
        try:
            await self.cluster.release(name, token)  # only this login's, never a newer one
        except (P2PChatError, OSError) as exc:  # set right when Redis is back
            session.connection.log.warning("logout not recorded in the cluster yet: %s", exc)
        if not back():
            await self.presence.offline(name)
        session.connection.log.info("logged out")

    async def reaped(self, name: str) -> None:
        """``name`` was logged in on a node that died, and this node noticed: end their
        invitations (telling the other sides) and record them offline; unless they are
        logged in again by now, here or elsewhere.

        A login of theirs under way here (this very login, when it found the dead node
        holding its name) is not "again": it has made no invitation yet, so what stands
        is all the dead login's, and it is settled before that login is welcomed."""

        def back() -> bool:
            return self.sessions.get(name) is not None

        logging_in = name in self.sessions and not back()
        if back() or (not logging_in and await self.cluster.lookup(name) is not None):
            return
        await self.rendezvous.logout(name, unless=back)
        if name not in self.sessions:  # a login under way records itself online next
            await self.presence.offline(name)
