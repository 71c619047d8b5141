"""What the application holds of file transfers: ``Transfer`` (one transfer, either way,
kept up to date by the file desk, ``transfers.py``) and ``FileOffer`` (one offer received,
to accept into a directory or refuse)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol

from ..errors import TRANSFER_ERRORS, TransferCancelled, TransferError, TransferFailed
from ..stores.transfers import TransferRecord
from .files import ENDED

__all__ = ["FileOffer", "Transfer"]


class Desk(Protocol):
    """What a transfer and an offer ask of the file desk (``transfers.FileDesk``)."""

    async def end(self, transfer: Transfer, error: TransferError, *, tell: bool) -> None: ...
    async def accept(self, offer: FileOffer, directory: Path) -> Transfer: ...
    async def refuse(self, id: str, reason: str) -> None: ...


class Transfer:
    """One file transfer, ours to send or theirs to us, kept up to date as it goes."""

    def __init__(self, desk: Desk, record: TransferRecord) -> None:
        self._desk = desk
        self.record = record
        """As stored now (the desk replaces it at each change)."""
        self.sent = 0
        """File bytes this process has put on the wire for it, resends included."""
        self.ending = False  # the desk is ending it: the first end wins
        self._ended: asyncio.Future[Path | None] = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Event()
        if record.state in ENDED:
            self._settle()

    def __repr__(self) -> str:
        way = "to" if self.outgoing else "from"
        return f"<Transfer {self.name!r} {way} {self.contact} {self.state} {self.done}/{self.size}>"

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def name(self) -> str:
        """The file's name as offered (on the recipient, ``path`` may differ: a free name)."""
        return self.record.name

    @property
    def size(self) -> int:
        return self.record.size

    @property
    def sha256(self) -> str:
        return self.record.sha256

    @property
    def contact(self) -> str:
        """The other user: the recipient of ours, the sender of theirs."""
        return self.record.contact

    @property
    def outgoing(self) -> bool:
        """Ours to send (else theirs to us)."""
        return self.record.outgoing

    @property
    def done(self) -> int:
        """Bytes the recipient has stored and synced, as last acknowledged."""
        return self.record.done

    @property
    def state(self) -> str:
        """``offered``, ``accepted``, then ``done``, ``refused``, ``cancelled`` or ``failed``."""
        return self.record.state

    @property
    def path(self) -> Path | None:
        """On the recipient: where the file is (once done) or goes. On the sender: the file."""
        if self.outgoing:
            return Path(self.record.path)
        if not self.record.target:
            return None
        return Path(self.record.path) / self.record.target

    @property
    def error(self) -> TransferError | None:
        """Why it ended without the file, once it has."""
        if self.record.state in ("done", "offered", "accepted"):
            return None
        return TRANSFER_ERRORS.get(self.record.code, TransferFailed)(self.record.reason)

    async def wait(self) -> Path | None:
        """Wait until the file is complete on the recipient, its SHA-256 checked: its path
        there (None on the sender). Raises the TransferError it ended with instead
        (FileRefused, TransferCancelled, HashMismatch, ...)."""
        return await asyncio.shield(self._ended)

    async def changed(self) -> None:
        """Wait for the next change of ``done`` or ``state``."""
        self._changed.clear()
        await self._changed.wait()

    async def cancel(self, reason: str = "") -> None:
        """Stop the transfer, on both sides (the other side is told now or at the next
        talk); a partial file is removed. Nothing happens if it has ended already."""
        await self._desk.end(self, TransferCancelled(reason or "cancelled"), tell=True)

    def _update(self, record: TransferRecord) -> None:
        self.record = record
        self._changed.set()
        if record.state in ENDED:
            self._settle()

    def _settle(self) -> None:
        if self._ended.done():
            return
        error = self.error
        if error is None:
            self._ended.set_result(self.path if not self.outgoing else None)
        else:
            self._ended.set_exception(error)
            self._ended.exception()  # retrieved: no warning if no one waits


class FileOffer:
    """A file someone offers us: ``id``, ``sender``, ``name`` (a bare file name, checked),
    ``size`` and ``sha256`` (hex). ``accept(directory)`` or ``refuse()``."""

    def __init__(self, desk: Desk, record: TransferRecord) -> None:
        self._desk = desk
        self.id = record.id
        self.sender = record.contact
        self.name = record.name
        self.size = record.size
        self.sha256 = record.sha256

    def __repr__(self) -> str:
        return f"<FileOffer {self.name!r} ({self.size} bytes) from {self.sender}>"

    async def accept(self, directory: str | os.PathLike[str]) -> Transfer:
        """Take the file into ``directory`` (made if missing), under its name or, if that
        is taken, a free one (``name (1).ext``). Raises FileTooLarge (and refuses it) over
        ``max_file_size`` or the free space there."""
        return await self._desk.accept(self, Path(directory))

    async def refuse(self, reason: str = "") -> None:
        """Say no: the sender's ``wait()`` raises FileRefused."""
        await self._desk.refuse(self.id, reason)
