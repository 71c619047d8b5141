"""The console's file commands: send a file, accept or refuse an offer, list transfers,
and a progress line for each transfer (bytes, %, rate, time left): redrawn in place on
a terminal, one line per 10% on a pipe (so that a script reads a bounded log)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import platformdirs

from .. import FileOffer, P2PChatError, Peer, Transfer

__all__ = ["FileCommands", "progress_line"]

HELP = (
    "  f NAME PATH send the file at PATH to NAME\n"
    "  fy [DIR]    accept the file offered first (into DIR; default your downloads)\n"
    "  fn          refuse the file offered first\n"
    "  files       transfers, both ways\n"
)
REDRAW_EVERY = 0.2
"""Seconds between two redraws of a progress line on a terminal."""


def default_downloads() -> Path:
    """The user's downloads directory (platformdirs)."""
    return Path(platformdirs.user_downloads_dir())


def size_text(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def progress_line(transfer: Transfer, *, rate: float | None) -> str:
    """``photo.jpg to bob: 1.5 MiB of 3.0 MiB (50%), 12.0 MiB/s, 0:00:01 left``."""
    way = f"to {transfer.contact}" if transfer.outgoing else f"from {transfer.contact}"
    share = transfer.done * 100 // transfer.size if transfer.size else 100
    line = f"{transfer.name} {way}: {size_text(transfer.done)} of {size_text(transfer.size)}"
    line += f" ({share}%)"
    if rate:
        left = (transfer.size - transfer.done) / rate
        line += f", {size_text(rate)}/s, {time.strftime('%H:%M:%S', time.gmtime(left))} left"
    return line


class FileCommands:
    """File commands and news for one console: ``show`` writes lines (control characters
    made visible there), ``show_progress`` a progress line (redrawn where it can be),
    ``redraws`` says which the screen does."""

    def __init__(
        self,
        peer: Peer,
        show: Callable[..., Awaitable[None]],
        show_progress: Callable[[str], Awaitable[None]],
        *,
        redraws: bool,
        downloads: Path | None = None,
    ) -> None:
        self.peer = peer
        self._show = show
        self._show_progress = show_progress
        self.redraws = redraws
        self.downloads = downloads
        self._offers: list[FileOffer] = []
        self._watching: dict[str, asyncio.Task[None]] = {}

    def commands(self) -> dict[str, Callable[[str], Awaitable[bool]]]:
        return {
            "f": self.cmd_send,
            "fy": self.cmd_accept,
            "fn": self.cmd_refuse,
            "files": self.cmd_list,
        }

    async def watch_offers(self) -> None:
        """Tell of each file offered, and follow those accepted before a restart."""
        for transfer in await self.peer.transfers():
            if transfer.state in ("offered", "accepted") and (
                transfer.outgoing or transfer.state == "accepted"
            ):
                self._follow(transfer)
        while True:
            offer = await self.peer.next_file()
            self._offers.append(offer)
            await self._show(
                f"{offer.sender} offers {offer.name} ({size_text(offer.size)}): "
                "fy [DIR] to accept, fn to refuse"
            )

    async def close(self) -> None:
        for task in self._watching.values():
            task.cancel()
        await asyncio.gather(*self._watching.values(), return_exceptions=True)

    async def cmd_send(self, argument: str) -> bool:
        user, _, path = argument.partition(" ")
        if not user or not path.strip():
            await self._show("usage: f NAME PATH")
            return True
        source = await asyncio.to_thread(os.path.expanduser, path.strip())
        try:
            transfer = await self.peer.send_file(user, source)
        except OSError as exc:
            await self._show(f"error: cannot read {path.strip()}: {exc.strerror or exc}")
            return True
        await self._show(
            f"offered {transfer.name} ({size_text(transfer.size)}) to {user}; "
            "it goes once they accept, while you both are online"
        )
        self._follow(transfer)
        return True

    async def cmd_accept(self, argument: str) -> bool:
        if not self._offers:
            await self._show("no file offered")
            return True
        offer = self._offers.pop(0)
        directory: Path
        if argument:
            directory = Path(await asyncio.to_thread(os.path.expanduser, argument))
        elif self.downloads is not None:
            directory = self.downloads
        else:
            directory = await asyncio.to_thread(default_downloads)
        try:
            transfer = await offer.accept(directory)
        except OSError as exc:
            await self._show(f"error: cannot write in {directory}: {exc.strerror or exc}")
            self._offers.insert(0, offer)
            return True
        where = transfer.path or directory
        await self._show(f"accepted {offer.name} from {offer.sender}, into {where}")
        self._follow(transfer)
        return True

    async def cmd_refuse(self, _: str) -> bool:
        if not self._offers:
            await self._show("no file offered")
            return True
        offer = self._offers.pop(0)
        await offer.refuse("no thanks")
        await self._show(f"refused {offer.name} from {offer.sender}")
        return True

    async def cmd_list(self, _: str) -> bool:
        transfers = await self.peer.transfers()
        if not transfers:
            await self._show("no transfers")
        for transfer in transfers:
            await self._show(f"{progress_line(transfer, rate=None)} [{transfer.state}]")
        return True

    def _follow(self, transfer: Transfer) -> None:
        if transfer.id not in self._watching:
            self._watching[transfer.id] = asyncio.create_task(self._progress(transfer))

    async def _progress(self, transfer: Transfer) -> None:
        """Show ``transfer``'s progress until it ends, then how it ended."""
        ending = asyncio.ensure_future(transfer.wait())
        shown_tenth = -1
        began, first = time.monotonic(), transfer.done
        last_drawn = 0.0

        async def draw(final: bool = False) -> None:
            nonlocal shown_tenth, last_drawn
            elapsed = time.monotonic() - began
            rate = (transfer.done - first) / elapsed if elapsed > 0 else None
            line = progress_line(transfer, rate=None if final else rate)
            if self.redraws:
                if final or time.monotonic() - last_drawn >= REDRAW_EVERY:
                    last_drawn = time.monotonic()
                    await self._show_progress(line)
            elif (tenth := transfer.done * 10 // max(transfer.size, 1)) > shown_tenth:
                shown_tenth = tenth
                await self._show(line)

        try:
            while not ending.done():
                changed = asyncio.ensure_future(transfer.changed())
                await asyncio.wait({ending, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if transfer.state == "accepted" and transfer.size:
                    await draw()
            try:
                path = ending.result()
            except P2PChatError as exc:
                await self._show(f"{transfer.name}: {exc}")
            else:
                await draw(final=True)
                what = f"saved as {path}" if path is not None else f"{transfer.contact} has it"
                await self._show(f"{transfer.name}: done, SHA-256 checked; {what}")
        finally:
            ending.cancel()
            with contextlib.suppress(asyncio.CancelledError, P2PChatError):
                await ending
            self._watching.pop(transfer.id, None)
