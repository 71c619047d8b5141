"""The server's answers about users: who is online (``list``: the first ``max_list``
names, and whether there were more), which key a name is bound to (``whois``), whose
logins and logouts a session hears of (``watch``), and ``ping``.

Domain logic over the cluster, the user store and the sessions; ``handlers()`` gives the
request loop what it dispatches here, as the rendezvous and the mailbox do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..cluster.base import Cluster
from ..errors import UnknownUser
from ..protocol import Key, ListUsers, Ok, Ping, Pong, Users, Watch, Whois
from ..store import UserStore
from .session import Session, Sessions
from .settings import DEFAULTS, ServerSettings

__all__ = ["Directory"]

Handler = Callable[[Session, Any], Awaitable[None]]


class Directory:
    """``list``, ``whois``, ``watch`` and ``ping``."""

    def __init__(
        self,
        store: UserStore,
        cluster: Cluster,
        sessions: Sessions,
        *,
        settings: ServerSettings = DEFAULTS,
    ) -> None:
        self.store = store
        self.cluster = cluster
        self.sessions = sessions
        self.settings = settings

    def handlers(self) -> dict[type[Any], Handler]:
        """The requests handled here, by message type."""
        return {
            ListUsers: self._on_list,
            Whois: self._on_whois,
            Ping: self._on_ping,
            Watch: self._on_watch,
        }

    async def _on_ping(self, session: Session, message: Ping) -> None:
        await session.reply(Pong(id=message.id))

    async def _on_watch(self, session: Session, message: Watch) -> None:
        self.sessions.watch(session, message.users)
        await session.reply(Ok(id=message.id))

    async def _on_whois(self, session: Session, message: Whois) -> None:
        user = await self.store.get(message.user)
        if user is None or user.key is None:
            raise UnknownUser(f"no user named {message.user} has ever logged in")
        await session.reply(
            Key(
                id=message.id,
                user=user.name,
                key=user.key,
                mailbox_key=user.mailbox_key,
                mailbox_sig=user.mailbox_sig,
            )
        )

    async def _on_list(self, session: Session, message: ListUsers) -> None:
        names, total = await self.cluster.online(self.settings.max_list)
        await session.reply(
            Users(id=message.id, users=names, truncated=total > self.settings.max_list)
        )
