"""File transfers of one peer, both ways: ``FileDesk`` runs the rules of ``files.py``
over the open conversations, the disk and the transfers store.

It keeps the ``Transfer`` and ``FileOffer`` objects (``transfer.py``) up to date. The bytes of
one transfer go out from ``Outgoing`` (``outgoing.py``: a task reading the file, holding
to the window) and come in to ``Incoming`` (``incoming.py``: a task writing ``NAME.part``,
syncing and acknowledging each quarter window, checking the SHA-256, then into place).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec

from ..errors import (
    TRANSFER_ERRORS,
    ConversationClosed,
    FileTooLarge,
    ProtocolError,
    TransferError,
    TransferFailed,
    UnsafeFileName,
)
from ..messages import FileAccept, FileAck, FileData, FileDone, FileFrame, FileStop
from ..store import Message
from ..stores.transfers import TransferRecord, TransferStore
from .conversation import Conversation
from .files import (
    ENDED,
    FileNote,
    SendWindow,
    check_file_name,
    is_offer,
    offer_body,
    parse_offer,
    state_of,
    visible,
)
from .incoming import Incoming, free_space, remove_part, reserve
from .outgoing import Outgoing, size_and_hash
from .settings import PeerSettings
from .transfer import FileOffer, Transfer

__all__ = ["FileDesk", "FileOffer", "Transfer"]

logger = logging.getLogger(__name__)


class FileDesk:
    """The file transfers of the peer ``me``: sending, offers received, the bytes both
    ways over the open conversations, and their records in ``store``."""

    def __init__(
        self,
        me: str,
        store: TransferStore,
        settings: PeerSettings,
        *,
        send: Callable[[str, Message], Awaitable[Message]],
        talk: Callable[[str], Conversation | None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.me = me
        self.store = store
        self.settings = settings
        self._send_message = send  # a chat message to a user: how an offer travels
        self._talk = talk  # the open conversation with a user, if any
        self._spawn = spawn
        self._live: dict[str, Transfer] = {}
        self._offers: deque[FileOffer] = deque()
        self._offered = asyncio.Event()
        self._outgoing: dict[str, Outgoing] = {}
        self._incoming: dict[str, Incoming] = {}

    async def start(self) -> None:
        await self.store.start()
        for record in await self.store.recent(self.me):
            self._live.setdefault(record.id, Transfer(self, record))
            if not record.outgoing and record.state == "offered":
                self._offers.append(FileOffer(self, record))
        self._offered.set()

    async def close(self) -> None:
        for outgoing in list(self._outgoing.values()):
            await outgoing.stop()
        for incoming in list(self._incoming.values()):
            await incoming.stop()
        await self.store.close()

    # The application's side.

    async def send_file(self, user: str, path: Path) -> Transfer:
        check_file_name(path.name)
        size, sha256 = await asyncio.to_thread(size_and_hash, path)
        now = time.time()
        source = await asyncio.to_thread(path.resolve)
        note = FileNote(id=str(uuid.uuid4()), name=path.name, size=size, sha256=sha256)
        record = TransferRecord(
            owner=self.me,
            id=note.id,
            contact=user,
            outgoing=True,
            name=note.name,
            size=size,
            sha256=sha256,
            state="offered",
            path=str(source),
            created=now,
            updated=now,
        )
        await self.store.put(record)  # before the offer: an answer always finds it
        transfer = self._live.setdefault(record.id, Transfer(self, record))
        message = Message(
            id=note.id, sender=self.me, recipient=user, body=offer_body(note), sent_at=now
        )
        await self._send_message(user, message)
        return transfer

    async def next_file(self) -> FileOffer:
        while True:
            while not self._offers:
                self._offered.clear()
                await self._offered.wait()
            offer = self._offers.popleft()
            if self._live[offer.id].state == "offered":  # (not cancelled meanwhile)
                return offer

    async def transfers(self) -> list[Transfer]:
        found = []
        for record in await self.store.recent(self.me):
            transfer = self._live.get(record.id)
            if transfer is None:
                transfer = self._live[record.id] = Transfer(self, record)
            found.append(transfer)
        return found

    async def accept(self, offer: FileOffer, directory: Path) -> Transfer:
        record = await self.store.get(self.me, offer.id)
        if record is None or record.state != "offered":
            state = record.state if record else "unknown"
            raise TransferFailed(f"the offer of {offer.name!r} is {state}, not open")
        limit = self.settings.max_file_size
        if record.size > limit:
            error = FileTooLarge(f"{offer.name!r} has {record.size} bytes, over max_file_size")
            await self.end(self._transfer(record), error, tell=True)
            raise error
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        free = await asyncio.to_thread(free_space, directory)
        if record.size > free:
            error = FileTooLarge(
                f"{offer.name!r} has {record.size} bytes, {directory} only {free} free"
            )
            await self.end(self._transfer(record), error, tell=True)
            raise error
        directory = await asyncio.to_thread(directory.resolve)
        target = await asyncio.to_thread(reserve, directory, record.name)
        record = _replace(record, state="accepted", path=str(directory), target=target)
        await self.store.put(record)
        transfer = self._transfer(record)
        transfer._update(record)
        chat = self._talk(record.contact)
        if chat is not None:
            self._receive(chat, transfer)
        return transfer

    async def refuse(self, id: str, reason: str) -> None:
        record = await self.store.get(self.me, id)
        if record is None:
            return
        error = TRANSFER_ERRORS["refused"](reason or "refused")
        await self.end(self._transfer(record), error, tell=True)

    def _transfer(self, record: TransferRecord) -> Transfer:
        transfer = self._live.get(record.id)
        if transfer is None:
            transfer = self._live[record.id] = Transfer(self, record)
        return transfer

    async def end(self, transfer: Transfer, error: TransferError, *, tell: bool) -> None:
        """End ``transfer`` with ``error``: stop its bytes, remove a partial file, store
        the end, and (``tell``) tell the other side now, or at the next talk. Once: the
        first end wins."""
        if transfer.state in ENDED or transfer.ending:
            return
        transfer.ending = True
        if (outgoing := self._outgoing.pop(transfer.id, None)) is not None:
            await outgoing.stop()
        if (incoming := self._incoming.pop(transfer.id, None)) is not None:
            await incoming.stop(discard=True)
        elif not transfer.outgoing and transfer.record.target:
            await asyncio.to_thread(remove_part, transfer.path)
        told = not tell
        if tell and (chat := self._talk(transfer.contact)) is not None:
            with contextlib.suppress(ConversationClosed):
                await chat.send_frames([_stop_frame(transfer.id, error)])
                told = True
        record = _replace(
            transfer.record,
            state=state_of(error.code),
            code=error.code,
            reason=str(error),
            told=told,
        )
        transfer._update(record)
        await self.store.put(record)
        logger.info("%s: transfer %s of %r ended: %s", self.me, transfer.id, transfer.name, error)

    # The conversations' side.

    def deliverable(self, contact: str, messages: list[Message]) -> list[Message]:
        """Of ``messages`` received from ``contact`` (stored, new), those for the inbox:
        file offers are taken here instead."""
        kept = []
        for message in messages:
            if message.sender == contact and is_offer(message.body):
                self._spawn(self._offer_received(contact, message))
            else:
                kept.append(message)
        return kept

    async def _offer_received(self, contact: str, message: Message) -> None:
        try:
            note = parse_offer(message.body)
            if note.id != message.id:
                raise ProtocolError("a file offer whose id is not its message's")
        except ProtocolError as exc:
            logger.warning("%s: ignoring a file offer from %s: %s", self.me, contact, exc)
            return
        if await self.store.get(self.me, note.id) is not None:
            return  # offered before (a message comes once; its id is not reused)
        try:
            check_file_name(note.name)
        except UnsafeFileName as exc:
            logger.warning("%s: refusing a file from %s: %s", self.me, contact, exc)
            refused = self._offered_record(contact, note, name=visible(note.name))
            await self.store.put(refused)
            await self.end(self._transfer(refused), exc, tell=True)
            return
        record = self._offered_record(contact, note, name=note.name)
        await self.store.put(record)
        self._offers.append(FileOffer(self, record))
        self._transfer(record)
        self._offered.set()

    def _offered_record(self, contact: str, note: FileNote, *, name: str) -> TransferRecord:
        now = time.time()
        return TransferRecord(
            owner=self.me,
            id=note.id,
            contact=contact,
            outgoing=False,
            name=name,
            size=note.size,
            sha256=note.sha256,
            state="offered",
            created=now,
            updated=now,
        )

    def opened(self, chat: Conversation) -> None:
        """A talk with ``chat.peer`` opened: ask for the bytes of what we accepted from
        them, and tell them how transfers ended that they have not heard of."""
        self._spawn(self._talk_opened(chat))

    def moved(self, chat: Conversation) -> None:
        """The talk with ``chat.peer`` moved onto another connection: what was under way
        starts again from the receiver's stored offset, as at a new talk. Our sending stops
        at once (before the new connection is read), so that only the receiver's new
        ``file_accept`` starts it again, from its offset."""
        for id, outgoing in list(self._outgoing.items()):
            if outgoing.chat is chat:
                outgoing.halt()
                del self._outgoing[id]
                self._spawn(outgoing.stop())
        self.opened(chat)

    async def _talk_opened(self, chat: Conversation) -> None:
        for record in await self.store.pending(self.me, chat.peer):
            transfer = self._transfer(record)
            try:
                if not record.outgoing and record.state == "accepted":
                    self._receive(chat, transfer)
                elif record.state in ENDED and not record.told:
                    frame: FileFrame = (
                        FileDone(id=record.id)
                        if record.state == "done"
                        else FileStop(id=record.id, code=record.code, reason=record.reason[:1024])
                    )
                    await chat.send_frames([frame])
                    await self._save(transfer, told=True)
            except ConversationClosed:
                return

    def frame(self, chat: Conversation, frame: FileFrame) -> None:
        """A file frame arrived on ``chat`` (in its reading task: never waits). One that
        breaks the rules fails its transfer only, never the conversation."""
        transfer = self._live.get(frame.id)
        if transfer is None or transfer.contact != chat.peer:
            if isinstance(frame, FileAccept):  # not ours to send: say so
                unknown = TransferFailed(f"{self.me} knows no transfer {frame.id}")
                self._spawn(self._stop(chat, frame.id, unknown))
            else:
                kind = type(frame).__name__
                logger.info("%s: %s for an unknown transfer from %s", self.me, kind, chat.peer)
            return
        try:
            self._dispatch(chat, transfer, frame)
        except (ProtocolError, TransferError) as exc:
            error = exc if isinstance(exc, TransferError) else TransferFailed(str(exc))
            self._spawn(self.end(transfer, error, tell=True))

    def _dispatch(self, chat: Conversation, transfer: Transfer, frame: FileFrame) -> None:
        if isinstance(frame, FileData):
            incoming = self._incoming.get(frame.id)
            if incoming is not None and incoming.chat is chat:
                incoming.data(frame)
            # else: ended here, or bytes of a talk that ended; the sender hears of it
        elif isinstance(frame, FileStop):
            error = TRANSFER_ERRORS.get(frame.code, TransferFailed)(
                f"{chat.peer}: {frame.reason or frame.code}"
            )
            self._spawn(self.end(transfer, error, tell=False))
        elif not transfer.outgoing:
            raise ProtocolError(f"{type(frame).__name__} from the sender of a file")
        elif isinstance(frame, FileAccept):
            self._start_sending(chat, transfer, frame)
        elif isinstance(frame, FileAck):
            self._acknowledged(transfer, frame.offset)
        elif isinstance(frame, FileDone):
            self._spawn(self._sent(transfer))

    # Sending the bytes.

    def _start_sending(self, chat: Conversation, transfer: Transfer, ask: FileAccept) -> None:
        if transfer.state in ENDED:
            error = transfer.error or TransferFailed("the transfer is complete")
            self._spawn(self._stop(chat, transfer.id, error))
            return
        if (old := self._outgoing.pop(transfer.id, None)) is not None:
            self._spawn(old.stop())
        try:
            window = SendWindow(transfer.size, ask.window, ask.offset)
        except ProtocolError as exc:
            self._spawn(self.end(transfer, TransferFailed(str(exc)), tell=True))
            return
        outgoing = Outgoing(
            chat,
            transfer,
            window,
            max_frame=self.settings.max_frame,
            fail=lambda error: self._spawn(self.end(transfer, error, tell=True)),
        )
        self._outgoing[transfer.id] = outgoing
        if transfer.state == "offered":
            self._spawn(self._save(transfer, state="accepted", done=ask.offset))
        outgoing.start()

    async def _stop(self, chat: Conversation, id: str, error: TransferError) -> None:
        with contextlib.suppress(ConversationClosed):
            await chat.send_frames([_stop_frame(id, error)])

    def _acknowledged(self, transfer: Transfer, offset: int) -> None:
        outgoing = self._outgoing.get(transfer.id)
        if outgoing is not None and not outgoing.acknowledged(offset):
            return
        if offset > transfer.size:
            raise ProtocolError(f"acknowledged {offset} bytes of a file of {transfer.size}")
        self._spawn(self._save(transfer, done=max(offset, transfer.done)))

    async def _sent(self, transfer: Transfer) -> None:
        if transfer.state not in ENDED:
            await self._save(transfer, state="done", done=transfer.size, told=True)

    async def _save(self, transfer: Transfer, **changes: Any) -> None:
        record = _replace(transfer.record, **changes)
        transfer._update(record)
        await self.store.put(record)

    # Receiving the bytes.

    def _receive(self, chat: Conversation, transfer: Transfer) -> None:
        if (old := self._incoming.pop(transfer.id, None)) is not None:
            self._spawn(old.stop())
        incoming = Incoming(
            chat,
            transfer,
            window=self.settings.file_window,
            save=lambda **changes: self._save(transfer, **changes),
            fail=lambda error: self._spawn(self.end(transfer, error, tell=True)),
        )
        self._incoming[transfer.id] = incoming
        incoming.start()


def _replace(record: TransferRecord, **changes: Any) -> TransferRecord:
    return msgspec.structs.replace(record, updated=time.time(), **changes)


def _stop_frame(id: str, error: TransferError) -> FileStop:
    return FileStop(id=id, code=error.code, reason=str(error)[:1024])
