"""The bytes of one file going out on one conversation: read from the file a block at a
time, sent as ``file_data`` frames from where the recipient asked, never more than its
window ahead of its acknowledgements. The talk ending stops it; the next talk starts a
new one from the recipient's resume point."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..errors import ConversationClosed, TransferError, TransferFailed
from ..messages import FileData
from ..stores.transfers import TransferRecord
from .conversation import Conversation
from .files import SendWindow, chunk_size
from .incoming import on_thread

__all__ = ["Outgoing", "size_and_hash"]

logger = logging.getLogger(__name__)

READ_BLOCK = 256 * 1024
"""File bytes read (and written to the connection) at once: small enough that a chat
frame never waits long behind them."""


class Sending(Protocol):
    """The transfer whose bytes these are (a ``Transfer``): its record, and a count of
    the bytes put on the wire."""

    sent: int

    @property
    def record(self) -> TransferRecord: ...


class Outgoing:
    """One transfer's bytes going out on ``chat``, by one task, from ``window.sent``."""

    def __init__(
        self,
        chat: Conversation,
        transfer: Sending,
        window: SendWindow,
        *,
        max_frame: int | None,
        fail: Callable[[TransferError], None],
    ) -> None:
        self.chat = chat
        self.transfer = transfer
        self.window = window
        self._step = chunk_size(max_frame)
        self._fail = fail  # end the transfer with this error, in the background
        self._acked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        self._task.add_done_callback(self._ran)

    def acknowledged(self, offset: int) -> bool:
        """The recipient has ``offset`` bytes: the window moves; True if that is news.
        ProtocolError for an offset past what was sent."""
        if not self.window.acknowledge(offset):
            return False
        self._acked.set()
        return True

    def halt(self) -> None:
        """Stop sending at once: not one more frame goes out (``stop()`` waits for it)."""
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    async def stop(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _ran(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or (error := task.exception()) is None:
            return
        if not isinstance(error, TransferError):
            logger.error("sending %s failed: %r", self.transfer.record.id, error, exc_info=error)
            error = TransferFailed(f"sending {self.transfer.record.name!r} failed: {error}")
        self._fail(error)

    async def _run(self) -> None:
        record = self.transfer.record
        window = self.window
        try:
            fd = await on_thread(os.open, record.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise TransferFailed(f"cannot read {record.path}: {exc.strerror}") from exc
        try:
            while window.sent < window.size:
                while (room := window.room()) == 0:
                    self._acked.clear()
                    await self._acked.wait()
                offset = window.sent
                block = await on_thread(os.pread, fd, min(room, READ_BLOCK), offset)
                if not block:
                    raise TransferFailed(
                        f"{record.path} is shorter than offered: it changed; send it again"
                    )
                step = self._step
                frames = [
                    FileData(id=record.id, offset=offset + start, data=block[start : start + step])
                    for start in range(0, len(block), step)
                ]
                window.advance(len(block))
                await self.chat.send_frames(frames)
                self.transfer.sent += len(block)
        except ConversationClosed:
            return  # the next talk goes on from what the recipient has
        except OSError as exc:
            raise TransferFailed(f"cannot read {record.path}: {exc}") from exc
        finally:
            os.close(fd)


def size_and_hash(path: Path) -> tuple[int, str]:
    """The size and SHA-256 (hex) of the file at ``path``, read once (on a thread)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while block := file.read(1024 * 1024):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()
