"""The message calls of ``Peer`` (``PeerMessages``, a part of it): sending to a user (in
the open talk, else by sealed mail), the mail received, the history and the search of the
store, and who this peer has messages with.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from ..errors import ConversationClosed
from ..protocol import check_name
from ..store import Message, MessageStore
from .settings import ChatSettings

if TYPE_CHECKING:
    from .postbox import Postbox
    from .talks import Talks

__all__ = ["PeerMessages"]


class PeerMessages:
    """Messages to and from one user at a time (a part of ``Peer``)."""

    if TYPE_CHECKING:  # the peer's, set by ``Peer.__init__``
        name: str
        store: MessageStore
        _talks: Talks
        _postbox: Postbox

        @property
        def connected(self) -> bool: ...
        def _watch_also(self, user: str) -> None: ...
        def _settings(self) -> ChatSettings: ...

    def check_body(self, body: str) -> None:
        """Raise MessageTooLarge if ``body`` is over ``max_message_size`` (UTF-8 bytes)."""
        self._settings().check_body(body)

    async def send(self, user: str, body: str) -> Message:
        """Send ``body`` to ``user``: in the conversation if one is open, else through the
        server's mailbox, sealed to them (and, until they have it, kept unshipped for the
        next conversation too). Returns the stored message.

        Raises, with nothing stored, only for what the caller got wrong: InvalidName,
        MessageTooLarge, UnknownUser if the server has never seen ``user`` (asked once for
        many sends at once). Whatever else happens (no server, a server refusing, the talk
        ending), the message is stored and goes later; only a store that fails raises.
        """
        check_name(user)
        self.check_body(body)
        self._watch_also(user)
        chat = self._talks.open.get(user)
        if chat is not None:
            with contextlib.suppress(ConversationClosed):  # it just ended: keep it for later
                return await chat.send(body)
        if self.connected:
            await self._postbox.check_recipient(user)  # UnknownUser: nothing is stored
        message = Message.new(self.name, user, body)
        await self.store.add(message)
        self._talks.unsent(user, [message])
        return message

    async def next_message(self) -> Message:
        """The next message received through the mailbox (outside any conversation),
        oldest first, each once, also across restarts: waits for one."""
        return await self._postbox.next_message()

    async def history(
        self, user: str, before: Message | None = None, limit: int | None = None
    ) -> list[Message]:
        """Messages exchanged with ``user``, both directions, oldest first: the last
        ``limit``, or the last ``limit`` before ``before``.

        To scroll back, pass the first message of the page shown as ``before``: pages go
        backwards by (``sent_at``, ``id``), and one after another they miss nothing and
        repeat nothing, even while messages arrive. An empty page is the beginning."""
        return await self.store.history(self.name, user, before=before, limit=limit)

    async def search(self, text: str, user: str | None = None, limit: int = 50) -> list[Message]:
        """Messages of this peer whose body answers ``text`` (with ``user`` only, if
        given), newest first, at most ``limit``.

        Every word of ``text`` must be found, case and accents ignored; ``hel*`` finds
        the words that begin so, ``"hello world"`` the words next to each other. Raises
        InvalidQuery (a ValueError) for a query that cannot be read (a quote left open, a
        ``*`` inside a word, no word at all), InvalidName for a ``user`` outside the rule.
        """
        contact = check_name(user) if user is not None else None
        return await self.store.search(self.name, text, contact=contact, limit=limit)

    async def correspondents(self, *, limit: int | None = None) -> list[str]:
        """The users this peer has messages with, the most recent conversation first."""
        return await self.store.correspondents(self.name, limit=limit)
