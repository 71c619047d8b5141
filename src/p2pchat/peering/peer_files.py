"""The file calls of ``Peer`` (``PeerFiles``, a part of it): offering a file, the offers
received, the transfers both ways; and what the file desk (``transfers.py``) and the
postbox ask of the peer for files: to store and send an offer as a message, the talk open
with a user, the offers among the mail. The transfers' own store is chosen here too
(``transfer_store``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..protocol import check_name
from ..store import Message, MessageStore
from ..stores.transfers import MemoryTransferStore, SqliteTransferStore, TransferStore
from .conversation import Conversation
from .transfer import FileOffer, Transfer

if TYPE_CHECKING:
    from .postbox import Postbox
    from .talks import Talks
    from .transfers import FileDesk

__all__ = ["PeerFiles", "transfer_store"]


class PeerFiles:
    """Files, sent and received (a part of ``Peer``)."""

    if TYPE_CHECKING:  # the peer's, set by ``Peer.__init__``
        store: MessageStore
        _files: FileDesk
        _talks: Talks
        _postbox: Postbox

        @property
        def connected(self) -> bool: ...
        def _watch_also(self, user: str) -> None: ...
        def _talking_with(self, user: str) -> bool: ...

    async def send_file(self, user: str, path: str | os.PathLike[str]) -> Transfer:
        """Offer the file at ``path`` to ``user``; returns its Transfer once the offer is
        stored. The offer goes as a message does (in the conversation if one is open,
        else sealed by mail); the bytes go over a conversation (direct or relayed) once
        ``user`` accepts, resuming at each talk until done. ``transfer.wait()`` returns
        once ``user`` has the file, its SHA-256 checked.

        Raises UnsafeFileName (rename the file) if its name is not a bare, plain name,
        InvalidName, UnknownUser (nothing stored), OSError if the file cannot be read.
        """
        check_name(user)
        self._watch_also(user)
        if not self._talking_with(user) and self.connected:
            await self._postbox.check_recipient(user)
        return await self._files.send_file(user, Path(path))

    async def next_file(self) -> FileOffer:
        """The next file offered to us (received in a talk or by mail), oldest first;
        offers not answered before a restart come again. Waits for one."""
        return await self._files.next_file()

    async def transfers(self) -> list[Transfer]:
        """File transfers both ways: the unfinished ones and the recent others, newest
        first, also after a restart."""
        return await self._files.transfers()

    async def _send_stored(self, user: str, message: Message) -> Message:
        """Store ``message`` (ours, made elsewhere: a file offer) and send it as ``send``
        would: the open talk, else the mail."""
        await self.store.add(message)
        self._talks.unsent(user, [message])
        return message

    def _open_talk(self, user: str) -> Conversation | None:
        chat = self._talks.open.get(user)
        return chat if chat is not None and not chat.closed else None

    def _mail_delivered(self, sender: str, messages: list[Message]) -> list[Message]:
        """Mail received and stored (new): file offers go to the file desk; returns the
        rest (for ``next_message()``)."""
        return self._files.deliverable(sender, messages)


def transfer_store(store: MessageStore) -> TransferStore:
    """Transfers kept beside a persistent message store, else in memory."""
    if store.identity_file is None:
        return MemoryTransferStore()
    return SqliteTransferStore(store.identity_file.with_suffix(".transfers.sqlite3"))
