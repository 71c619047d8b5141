"""The bytes of one file coming in: ``NAME.part`` written beside the target, synced and
acknowledged each quarter window, its SHA-256 checked, then linked into place under a
name that replaces nothing. The last acknowledged offset is stored (by the desk) once
the bytes up to it are synced: that is where the next talk resumes.

Nothing here leaves the chosen directory: the names are bare (``files.check_file_name``),
files are opened without following links, and a finished file never replaces another.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..errors import (
    ConversationClosed,
    HashMismatch,
    ProtocolError,
    TransferError,
    TransferFailed,
)
from ..messages import FileAccept, FileAck, FileData, FileDone
from ..stores.transfers import TransferRecord
from .conversation import Conversation
from .files import ReceiveWindow, choose_name, free_names

__all__ = ["Incoming", "free_space", "on_thread", "remove_part", "reserve"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


async def on_thread(call: Callable[..., _T], *args: Any) -> _T:
    """Run ``call`` on a thread. If the caller is cancelled meanwhile, the thread is let
    finish first: a file is closed only once no thread uses it (never a number that the
    system has given to another file since)."""
    work = asyncio.ensure_future(asyncio.to_thread(call, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await work
        raise


def free_space(directory: Path) -> int:
    """Bytes free for us in ``directory``'s file system."""
    return shutil.disk_usage(directory).free


def remove_part(target: Path | None) -> None:
    """Remove the ``.part`` of ``target``, if there is one."""
    if target is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{target}.part")


def reserve(directory: Path, name: str) -> str:
    """Choose a name in ``directory`` that neither a file nor a ``.part`` holds, and create
    its ``.part`` (exclusively, so that no one else takes it meanwhile); return the name."""
    while True:
        target = choose_name(name, lambda n: os.path.lexists(directory / n))
        try:
            fd = os.open(directory / f"{target}.part", _OPEN_FLAGS | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        return target


class Tracked(Protocol):
    """The transfer whose bytes these are (a ``Transfer``): its record as it is now."""

    @property
    def record(self) -> TransferRecord: ...


class Incoming:
    """One transfer's bytes arriving on one conversation, written by one task."""

    def __init__(
        self,
        chat: Conversation,
        transfer: Tracked,
        *,
        window: int,
        save: Callable[..., Awaitable[None]],
        fail: Callable[[TransferError], None],
    ) -> None:
        self.chat = chat
        self.transfer = transfer
        self._window_size = window
        self._save = save  # store changes to the transfer's record (done, state, target)
        self._fail = fail  # end the transfer with this error, in the background (no .part)
        self._window: ReceiveWindow | None = None
        self._chunks: list[bytes] = []
        self._more = asyncio.Event()
        self._error: TransferError | None = None
        self._fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        directory = Path(transfer.record.path)
        self._part = directory / f"{transfer.record.target}.part"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        self._task.add_done_callback(self._ran)
        self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        await self.chat.wait_closed()
        self._more.set()

    def data(self, frame: FileData) -> None:
        """Bytes arrived (in the conversation's reading task: checked, queued, no wait).
        Bytes that break the offer or the window fail this transfer only."""
        if self._window is None or self._error is not None:
            return
        try:
            self._window.data(frame.offset, len(frame.data))
        except (ProtocolError, TransferError) as exc:
            self._error = exc if isinstance(exc, TransferError) else TransferFailed(str(exc))
        else:
            self._chunks.append(frame.data)
        self._more.set()

    async def stop(self, *, discard: bool = False) -> None:
        """Stop writing (what is stored and acknowledged stays the resume point);
        ``discard``: remove the ``.part`` too."""
        for task in (self._task, self._watcher):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):  # (logged)
                    await task
        if discard:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(os.unlink, self._part)

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _ran(self, task: asyncio.Task[None]) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        if not isinstance(error, TransferError):
            logger.error("transfer %s failed: %r", self.transfer.record.id, error, exc_info=error)
            error = TransferFailed(f"receiving {self.transfer.record.name!r} failed: {error}")
        self._fail(error)

    async def _run(self) -> None:
        record = self.transfer.record
        start, digest = await on_thread(self._open, record.done)
        if start != record.done:
            await self._save(done=start)
        window = self._window = ReceiveWindow(record.size, self._window_size, start)
        written = start
        syncing: asyncio.Task[None] | None = None  # one sync at a time, beside the writes
        try:
            await self.chat.send_frames(
                [FileAccept(id=record.id, offset=start, window=self._window_size)]
            )
            while written < record.size:
                while not self._chunks and self._error is None and not self.chat.closed:
                    self._more.clear()
                    await self._more.wait()
                if self._error is not None:
                    raise self._error
                chunks, self._chunks = self._chunks, []
                if chunks:
                    written = await on_thread(self._write, chunks, digest, written)
                if self.chat.closed:
                    if syncing is not None:
                        await syncing
                    if written > window.synced:
                        await self._sync(window, written, tell=False)
                    return  # the next talk resumes from what is stored
                if window.sync_due(written) and (syncing is None or syncing.done()):
                    if syncing is not None:
                        syncing.result()  # (raises what it failed with)
                    syncing = asyncio.create_task(self._sync(window, written))
            if syncing is not None:
                await syncing
            await self._sync(window, written, tell=False)
            if digest.hexdigest() != record.sha256:
                raise HashMismatch(
                    f"{record.name!r} from {record.contact} does not have the SHA-256 offered: "
                    "nothing kept; ask for it again"
                )
            self._close()
            target = await on_thread(self._place)
            await self._save(state="done", done=record.size, target=target, told=False)
            with contextlib.suppress(ConversationClosed):
                await self.chat.send_frames([FileDone(id=record.id)])
                await self._save(told=True)
        except ConversationClosed:
            return
        finally:
            if syncing is not None and not syncing.done():
                syncing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await syncing
            self._close()

    async def _sync(self, window: ReceiveWindow, offset: int, *, tell: bool = True) -> None:
        """Make the bytes up to ``offset`` durable, store it as the resume point, and
        (``tell``) acknowledge it: the sender's window moves on. Runs beside the writes
        (they go on meanwhile: the sync covers at least ``offset``)."""
        await on_thread(os.fsync, self._fd_now())
        await self._save(done=offset)
        window.synced = offset
        self._more.set()  # the writer looks again whether a sync is due
        if tell:
            with contextlib.suppress(ConversationClosed):  # the writer sees the end
                await self.chat.send_frames([FileAck(id=self.transfer.record.id, offset=offset)])

    def _fd_now(self) -> int:
        assert self._fd is not None
        return self._fd

    def _open(self, done: int) -> tuple[int, Any]:
        """Open the ``.part`` at the resume point (``done``, or less if less is there);
        return that point and the SHA-256 of the bytes before it."""
        try:
            fd = os.open(self._part, _OPEN_FLAGS, 0o600)
        except OSError as exc:
            raise TransferFailed(f"cannot write {self._part}: {exc}") from exc
        self._fd = fd
        start = min(done, os.fstat(fd).st_size)
        os.ftruncate(fd, start)
        digest = hashlib.sha256()
        position = 0
        while position < start:
            block = os.pread(fd, min(1024 * 1024, start - position), position)
            if not block:
                break
            digest.update(block)
            position += len(block)
        os.lseek(fd, position, os.SEEK_SET)
        return position, digest

    def _write(self, chunks: list[bytes], digest: Any, written: int) -> int:
        fd = self._fd_now()
        for chunk in chunks:
            view = memoryview(chunk)
            try:
                while view:
                    view = view[os.write(fd, view) :]
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise TransferFailed(
                        f"disk full writing {self._part}: {exc.strerror}; free some space "
                        "and ask for the file again"
                    ) from exc
                raise TransferFailed(f"cannot write {self._part}: {exc}") from exc
            digest.update(chunk)
            written += len(chunk)
        return written

    def _place(self) -> str:
        """Link the checked ``.part`` into place under a free name, never replacing a
        file; remove the ``.part``; sync the directory. Returns the name."""
        directory = self._part.parent
        name = self.transfer.record.target
        for target in free_names(name):
            if os.path.lexists(directory / target):
                continue
            try:
                os.link(self._part, directory / target, follow_symlinks=False)
            except FileExistsError:
                continue
            except OSError:  # no hard links here: rename, having checked the name is free
                if os.path.lexists(directory / target):
                    continue
                os.rename(self._part, directory / target)
            else:
                os.unlink(self._part)
            break
        else:  # pragma: no cover - free_names never ends
            raise AssertionError("no free name")
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return target
