"""The conversations of one peer, one per contact: opening one (the contact's key is
remembered; a new one replaces the old), forgetting it when it ends, and sending on what
an ended one left (by the talk open now, else by mail)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

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
    ) -> None:
        self.name = name
        self.store = store
        self._settings = settings  # read at each opening: the peer's limits as they are then
        self._watch = watch  # hear of this contact's logins from now on
        self._kick = kick  # the postbox: something may wait to be deposited
        self._opened = opened  # the file desk: transfers go on at each talk
        self.open: dict[str, Conversation] = {}
        self._opening: dict[str, asyncio.Lock] = {}

    async def start(
        self, contact: str, connection: Connection, key: str, via: str = "dialled"
    ) -> Conversation:
        """Open the conversation with ``contact`` on ``connection`` (replacing one open)."""
        await self.store.remember_key(self.name, contact, key, now=time.time())
        self._watch(contact)
        async with self._opening.setdefault(contact, asyncio.Lock()):
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
            chat.start()  # reads first, then resends the backlog, so neither side blocks
            if self._opened is not None:
                self._opened(chat)
        logger.info("%s is talking with %s (%s, %s)", self.name, contact, chat.route, via)
        return chat

    def _forget(self, chat: Ended) -> None:
        if self.open.get(chat.peer) is chat:
            del self.open[chat.peer]
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
