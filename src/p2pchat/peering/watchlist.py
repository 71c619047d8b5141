"""Whose logins and logouts a peer asks its server to tell it of.

A server with more than ``presence_broadcast`` users online tells each login and logout
only to those who watch that user (telling everyone of everyone costs the square of the
number online). A peer watches those it has messages with, always, and whoever its
program asks for (``Peer.watch``); the list goes to the server at every login, and again
when someone new is written to, talked with or heard from. A server that does not list
``watch`` among its features tells everyone of everyone, and is sent nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Final

from ..errors import InvalidName, P2PChatError
from ..protocol import Ok, Watch, check_name
from .link import ServerLink

__all__ = ["WATCHED", "WatchList"]

WATCHED: Final = 1000
"""Users a peer asks to hear of at most (the server's bound on ``watch``)."""


class WatchList:
    """The users one peer watches, and sending them to its server."""

    def __init__(
        self,
        link: Callable[[], ServerLink],
        known: Callable[[], Awaitable[list[str]]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._link = link
        self._known = known  # those the peer has messages with
        self._spawn = spawn
        self._asked: set[str] = set()  # by the program
        self._told: set[str] = set()  # to the server, last

    async def set(self, users: Iterable[str]) -> None:
        """Watch these (and those one has messages with) from now on."""
        self._asked = set(users)
        await self.send()

    def also(self, user: str) -> None:
        """``user`` is someone the peer now has messages with: watched from now on."""
        if user not in self._told and _valid(user):
            self._told.add(user)
            self._spawn(self.send())

    async def send(self) -> None:
        """Tell the server (after a login, or a change); nothing if it cannot be told."""
        with contextlib.suppress(P2PChatError):
            link = self._link()
            if "watch" not in link.features:
                return  # an older server: it tells everyone of everyone
            known = {user for user in await self._known() if _valid(user)}  # an old store's
            users = sorted(self._asked | known | self._told)[:WATCHED]
            self._told = set(users)
            await link.request(Watch(id=link.next_id(), users=users), Ok)


def _valid(user: str) -> bool:
    """A name the server takes in ``watch`` (one outside the rule would end the session)."""
    try:
        check_name(user)
    except InvalidName:
        return False
    return True
