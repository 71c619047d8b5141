"""The calls of ``Peer`` about other users (``PeerContacts``, a part of it): who is online,
the key the server binds to a user and the one remembered, and whose logins and logouts
to hear of (``watchlist.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..protocol import Key, ListUsers, Users, Whois, check_name
from ..store import MessageStore

if TYPE_CHECKING:
    from .link import ServerLink
    from .watchlist import WatchList

__all__ = ["PeerContacts"]


class PeerContacts:
    """Other users: presence and keys (a part of ``Peer``)."""

    if TYPE_CHECKING:  # the peer's, set by ``Peer.__init__``
        name: str
        store: MessageStore
        _watchlist: WatchList

        def _link(self) -> ServerLink: ...

    async def watch(self, users: Iterable[str]) -> None:
        """Hear of these users' logins and logouts (``on_presence``) however many are
        online, besides those this peer has messages with (watched always): a server with
        more than ``presence_broadcast`` users online tells each login only to those who
        watch that user. Replaces the list given before; kept across logins."""
        await self._watchlist.set(check_name(user) for user in users)

    def _watch_also(self, user: str) -> None:
        self._watchlist.also(user)

    async def online(self) -> list[str]:
        """Names of the users online now, sorted (this peer included)."""
        link = self._link()
        return (await link.request(ListUsers(id=link.next_id()), Users)).users

    async def whois(self, user: str) -> str:
        """The key the server has bound to ``user`` (compare ``fingerprint(key)`` with them)."""
        link = self._link()
        return (await link.request(Whois(id=link.next_id(), user=check_name(user)), Key)).key

    async def known_key(self, user: str) -> str | None:
        """The key remembered for ``user`` from earlier conversations, if any."""
        return await self.store.known_key(self.name, user)

    async def trust_key(self, user: str, key: str) -> None:
        """Remember ``key`` as ``user``'s, replacing a key remembered before."""
        await self.store.remember_key(self.name, user, key, now=time.time())
