"""The conversations of one peer, one per contact: opening one (the contact's key is
remembered; a new one replaces the old, except that a relayed talk moves onto a direct
connection proven to be the same contact's, with the same key), forgetting it when it
ends, and sending on what an ended one left (by the talk open now, else by mail)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

from ..errors import ConversationClosed
from ..shared.connection import Connection
from ..store import Message, MessageStore
from .conversation import Conversation
from .reach import route_of
from .settings import ChatSettings, Ended

__all__ = ["Talks"]

logger = logging.getLogger(__name__)


class Talks:
    """The open conversations of the peer ``name``, by contact."""

    def __init__(
        self,
        name: str,
        store: MessageStore,
        settings: Callable[[], ChatSettings],
        *,
        watch: Callable[[str], None],
        kick: Callable[[], None],
        opened: Callable[[Conversation], None] | None = None,
        moved: Callable[[Conversation], None] | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self._settings = settings  # read at each opening: the peer's limits as they are then
        self._watch = watch  # hear of this contact's logins from now on
        self._kick = kick  # the postbox: something may wait to be deposited
        self._opened = opened  # the file desk (transfers go on at each talk), the upgrades
        self._moved = moved  # a talk moved onto a direct connection: transfers go on there
        self.open: dict[str, Conversation] = {}
        self._keys: dict[str, str] = {}  # the contact's key each open talk was proven with
        self._opening: dict[str, asyncio.Lock] = {}

    async def start(
        self, contact: str, connection: Connection, key: str, via: str = "dialled"
    ) -> Conversation:
        """Open the conversation with ``contact`` on ``connection`` (replacing one open), or
        move the relayed one open onto it (``upgrade``)."""
        await self.store.remember_key(self.name, contact, key, now=time.time())
        self._watch(contact)
        async with self._opening.setdefault(contact, asyncio.Lock()):
            if (moved := await self._upgrade(contact, connection, key, via)) is not None:
                return moved
            if (old := self.open.get(contact)) is not None:
                await old.close("replaced by a new conversation")
            settings = dataclasses.replace(
                self._settings(), on_end=self._forget, on_unsent=self.unsent
            )
            chat = Conversation(
                self.name,
                contact,
                connection,
                store=self.store,
                settings=settings,
                route=route_of(via),
                via=via,
            )
            self.open[contact] = chat
            self._keys[contact] = key
            chat.start()  # reads first, then resends the backlog, so neither side blocks
            if self._opened is not None:
                self._opened(chat)
        logger.info("%s is talking with %s (%s, %s)", self.name, contact, chat.route, via)
        return chat

    async def _upgrade(
        self, contact: str, connection: Connection, key: str, via: str
    ) -> Conversation | None:
        """The talk open with ``contact``, moved onto ``connection``, if it is relayed and
        ``connection`` is direct and proven with the key the talk was proven with: the
        application keeps its conversation, now direct. None to open a new one instead."""
        chat = self.open.get(contact)
        if (
            chat is None
            or chat.closed
            or chat.route != "relay"
            or route_of(via) != "direct"
            or self._keys.get(contact) != key
        ):
            return None
        try:
            await chat.move(connection, "direct", via)
        except ConversationClosed:
            return None  # it ended meanwhile: a new talk opens on the connection
        logger.info("%s: the talk with %s is direct now (%s)", self.name, contact, via)
        if self._moved is not None:
            self._moved(chat)
        return chat

    def _forget(self, chat: Ended) -> None:
        if self.open.get(chat.peer) is chat:
            del self.open[chat.peer]
            self._keys.pop(chat.peer, None)
        self._kick()  # what it left unacknowledged goes by mail

    def unsent(self, contact: str, messages: list[Message]) -> None:
        """Ours, stored, sent by no talk (an ended one stored them late): the talk open now
        sends them, once, whether its backlog had them or not; else the mail, in order."""
        chat = self.open.get(contact)
        if chat is not None and not chat.closed:
            for message in messages:
                chat.transmit(message)
        else:
            self._kick()

    def talking_with(self, user: str) -> bool:
        chat = self.open.get(user)
        return chat is not None and not chat.closed

    async def close(self, reason: str) -> None:
        """Leave every conversation."""
        for chat in list(self.open.values()):
            await chat.close(reason)
