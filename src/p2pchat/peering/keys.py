"""Whose key is whose, for the postbox: what the server says of a user (``whois``, asked
once per login, and once for all the callers that want it at the same time), and the
identity and mailbox keys it vouches for, checked against the key remembered for that
user (trust on first use, as a first conversation does).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ..errors import KeyChanged, SealError
from ..protocol import Key, Whois, check_name
from ..shared.identity import fingerprint
from ..shared.seal import check_mailbox_key
from .link import ServerLink

__all__ = ["KeyBook"]


class Host(Protocol):
    """What the key book needs of its peer."""

    def _link(self) -> ServerLink: ...
    async def known_key(self, user: str) -> str | None: ...
    async def trust_key(self, user: str, key: str) -> None: ...


class KeyBook:
    """The server's answers to ``whois`` for this login, and the keys checked against
    those remembered."""

    def __init__(self, peer: Host) -> None:
        self.peer = peer
        self._keys: dict[str, Key] = {}  # this login's answers to whois
        self._asking: dict[str, asyncio.Future[Key]] = {}  # whois under way, one per user

    def logged_in(self) -> None:
        """A new login: what the last server said is asked again."""
        self._keys.clear()

    async def whois(self, user: str) -> Key:
        """What the server says of ``user``: asked once per login, and once for all the
        callers that want it at the same time (200 sends at once are one request)."""
        if (known := self._keys.get(user)) is not None:
            return known
        asking = self._asking.get(user)
        if asking is None:
            asking = asyncio.ensure_future(self._ask_whois(user))
            self._asking[user] = asking
            asking.add_done_callback(lambda done: self._asked(user, done))
        return await asyncio.shield(asking)  # one caller cancelled cancels no other

    async def _ask_whois(self, user: str) -> Key:
        link = self.peer._link()
        known = await link.request(Whois(id=link.next_id(), user=check_name(user)), Key)
        if link is self.peer._link():  # still this login's answer
            self._keys[user] = known
        return known

    def _asked(self, user: str, done: asyncio.Future[Key]) -> None:
        if self._asking.get(user) is done:
            del self._asking[user]
        if not done.cancelled():
            done.exception()  # retrieved: its callers (if any are left) have it

    async def identity_key(self, user: str) -> str:
        """The identity key of ``user``: the one remembered, or (the first time) the one
        the server vouches for, remembered from now on."""
        if (remembered := await self.peer.known_key(user)) is not None:
            return remembered
        answer = await self.whois(user)
        await self.peer.trust_key(user, answer.key)
        return answer.key

    async def mailbox_key(self, user: str) -> str:
        """``user``'s mailbox key, vouched for by their identity key (the remembered one:
        KeyChanged if the server vouches for another)."""
        answer = await self.whois(user)
        remembered = await self.peer.known_key(user)
        if remembered is not None and remembered != answer.key:
            raise KeyChanged(user, fingerprint(remembered), fingerprint(answer.key), answer.key)
        if not answer.mailbox_key or not answer.mailbox_sig:
            raise SealError(f"{user} has no mailbox key yet (they never logged in since)")
        if not check_mailbox_key(answer.key, answer.mailbox_key, answer.mailbox_sig):
            raise SealError(f"the mailbox key given for {user} is not signed by them")
        if remembered is None:
            await self.peer.trust_key(user, answer.key)  # first contact: as a first talk
        return answer.mailbox_key
