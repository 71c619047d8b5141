"""Files on the web page: a file the page uploads is offered to a user, offers come in,
are accepted (into a downloads directory) or refused, every transfer's progress goes to
the pages, and a received file is given back to the page as a download
(``Content-Disposition: attachment``). Public API only, like the rest of the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final

import platformdirs
from aiohttp import web

from .. import FileOffer, InvalidName, P2PChatError, Peer, Transfer, check_file_name, check_name
from . import webevents as ev

__all__ = ["WebFiles"]

logger = logging.getLogger(__name__)

UPDATE_EVERY: Final = 0.2
"""Seconds between two progress events of one transfer (its end is always told)."""
SHOWN: Final = 50
"""Transfers listed when a page connects."""
UPLOAD_BLOCK: Final = 256 * 1024


def info(transfer: Transfer) -> ev.FileInfo:
    done = transfer.state == "done" and not transfer.outgoing
    error = transfer.error
    return ev.FileInfo(
        id=transfer.id,
        user=transfer.contact,
        name=transfer.name,
        size=transfer.size,
        done=transfer.done,
        state=transfer.state,
        outgoing=transfer.outgoing,
        error=str(error) if error is not None else "",
        download=f"files/{urllib.parse.quote(transfer.id)}" if done else "",
    )


def offered(offer: FileOffer) -> ev.FileInfo:
    return ev.FileInfo(
        id=offer.id,
        user=offer.sender,
        name=offer.name,
        size=offer.size,
        done=0,
        state="offered",
        outgoing=False,
    )


class WebFiles:
    """The file side of one peer's web page. ``broadcast`` tells every page;
    ``spawn`` runs a task for as long as the page's server runs."""

    def __init__(
        self,
        peer: Peer,
        broadcast: Callable[[ev.Event], None],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        *,
        downloads: Path | None = None,
        uploads: Path | None = None,
    ) -> None:
        self.peer = peer
        self._broadcast = broadcast
        self._spawn = spawn
        self.downloads = downloads
        """Where accepted files go (default: the user's downloads directory)."""
        self.uploads = uploads
        """Where uploaded files wait until they are sent (default: a private temporary
        directory, removed with the page's server)."""
        self._made_uploads = False
        self._offers: dict[str, FileOffer] = {}
        self._followed: set[str] = set()

    async def start(self) -> None:
        if self.uploads is None:
            self.uploads = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="p2pchat-up-"))
            self._made_uploads = True
        else:
            await asyncio.to_thread(self.uploads.mkdir, mode=0o700, parents=True, exist_ok=True)
        for transfer in await self.peer.transfers():
            if transfer.state == "accepted" or (transfer.outgoing and transfer.state == "offered"):
                self.follow(transfer)
        self._spawn(self._watch_offers())

    async def close(self) -> None:
        if self._made_uploads and self.uploads is not None:
            await asyncio.to_thread(shutil.rmtree, self.uploads, True)

    async def snapshot(self) -> list[ev.FileInfo]:
        return [info(t) for t in (await self.peer.transfers())[:SHOWN]]

    async def _watch_offers(self) -> None:
        while True:
            offer = await self.peer.next_file()
            self._offers[offer.id] = offer
            self._broadcast(ev.FileUpdate(file=offered(offer)))

    def follow(self, transfer: Transfer) -> None:
        if transfer.id not in self._followed:
            self._followed.add(transfer.id)
            self._spawn(self._progress(transfer))

    async def _progress(self, transfer: Transfer) -> None:
        """Tell the pages of ``transfer`` as it moves, at most every ``UPDATE_EVERY``."""
        ending = asyncio.ensure_future(transfer.wait())
        told = 0.0
        try:
            self._broadcast(ev.FileUpdate(file=info(transfer)))
            while not ending.done():
                changed = asyncio.ensure_future(transfer.changed())
                await asyncio.wait({ending, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if time.monotonic() - told >= UPDATE_EVERY:
                    told = time.monotonic()
                    self._broadcast(ev.FileUpdate(file=info(transfer)))
            with contextlib.suppress(P2PChatError):
                ending.result()
            self._broadcast(ev.FileUpdate(file=info(transfer)))
        finally:
            ending.cancel()
            with contextlib.suppress(asyncio.CancelledError, P2PChatError):
                await ending
            self._followed.discard(transfer.id)

    async def answer(self, id: str, accept: bool) -> None:
        offer = self._offers.pop(id, None)
        if offer is None:
            raise P2PChatError("that file is no longer offered")
        if not accept:
            await offer.refuse("no thanks")
            self._broadcast(ev.FileUpdate(file=info(await self._transfer(id))))
            return
        directory = self.downloads or Path(await asyncio.to_thread(platformdirs.user_downloads_dir))
        try:
            transfer = await offer.accept(directory)
        finally:
            self._broadcast(ev.FileUpdate(file=info(await self._transfer(id))))
        self.follow(transfer)

    async def cancel(self, id: str) -> None:
        await (await self._transfer(id)).cancel("cancelled from the page")

    async def _transfer(self, id: str) -> Transfer:
        for transfer in await self.peer.transfers():
            if transfer.id == id:
                return transfer
        raise P2PChatError("no such transfer")

    # HTTP.

    async def upload(self, request: web.Request) -> web.StreamResponse:
        """``POST upload?user=NAME&name=FILE``, the file as the body: stored in the
        uploads directory, then offered to NAME. Answers the transfer's id."""
        try:
            user = check_name(request.query.get("user", ""))
            name = check_file_name(request.query.get("name", ""))
        except (InvalidName, P2PChatError) as exc:
            return web.Response(status=400, text=f"{exc}\n")
        limit = self.peer.settings.max_file_size
        if request.content_length is not None and request.content_length > limit:
            return web.Response(status=413, text=f"over max_file_size ({limit} bytes)\n")
        assert self.uploads is not None
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, dir=self.uploads))
        path = folder / name
        try:
            size = await self._receive(request, path, limit)
        except OSError as exc:
            await asyncio.to_thread(shutil.rmtree, folder, True)
            return web.Response(status=507, text=f"cannot store the upload: {exc.strerror}\n")
        if size is None:
            await asyncio.to_thread(shutil.rmtree, folder, True)
            return web.Response(status=413, text=f"over max_file_size ({limit} bytes)\n")
        try:
            transfer = await self.peer.send_file(user, path)
        except P2PChatError as exc:
            await asyncio.to_thread(shutil.rmtree, folder, True)
            return web.Response(status=400, text=f"{exc}\n")
        self.follow(transfer)
        return web.json_response({"id": transfer.id})

    @staticmethod
    async def _receive(request: web.Request, path: Path, limit: int) -> int | None:
        """Write the request's body to ``path``: its size, or None past ``limit``."""
        fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        size = 0
        try:
            async for block in request.content.iter_chunked(UPLOAD_BLOCK):
                size += len(block)
                if size > limit:
                    return None
                await asyncio.to_thread(os.write, fd, block)
        finally:
            os.close(fd)
        return size

    async def download(self, request: web.Request) -> web.StreamResponse:
        """``GET files/ID``: a file received whole (SHA-256 checked), as an attachment."""
        id = request.match_info["id"]
        transfer = next((t for t in await self.peer.transfers() if t.id == id), None)
        if transfer is None or transfer.outgoing or transfer.state != "done":
            raise web.HTTPNotFound()
        path = transfer.path
        if path is None or not await asyncio.to_thread(path.is_file):
            raise web.HTTPNotFound()
        quoted = urllib.parse.quote(path.name, safe="")
        return web.FileResponse(
            path,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f"attachment; filename*=UTF-8''{quoted}",
            },
        )
