"""The web page's door: the aiohttp application, and who may come through it.

Everything is served under one random path of its own (``/<instance>/``), and the secret
token, given once in the page's address, is then kept in an ``HttpOnly``,
``SameSite=Strict`` cookie scoped to that path. Browsers send a cookie for 127.0.0.1 to
every port of 127.0.0.1, so without the path another local server (someone else's, on
another port) would receive the token; with it, the cookie goes only where this page is.
Two peers' pages open in one browser, or a peer restarted on the same port, each have
their own cookie for the same reason.

On every request, in this order:

- ``Host`` must name this server: an IP address, ``localhost`` or the name it was told
  to listen on, with its port. A site that points a name of its own at 127.0.0.1 (DNS
  rebinding) uses that name, and gets ``403``;
- the token (in the address, else the cookie) must match: ``401`` and no data otherwise;
- a WebSocket's (or an upload's) ``Origin`` must be this very page (``http://`` + its
  ``Host``): ``403`` otherwise, so no other site open in the same browser can connect or
  send a file, cookie or not;
- every answer, errors included, carries the security headers below: a
  Content-Security-Policy with no inline script and no framing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import secrets
from importlib import resources
from typing import Any, Final, Protocol

import msgspec
from aiohttp import WSMsgType, web

from ..shared.tasks import cancel_and_wait
from . import webevents as ev

__all__ = ["ASSETS", "SECURITY_HEADERS", "Door", "Tab", "make_app"]

logger = logging.getLogger(__name__)

COOKIE: Final = "p2pchat_token"
ASSETS: Final = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "connection.js": "text/javascript",
    "state.js": "text/javascript",
    "view.js": "text/javascript",
    "style.css": "text/css",
    "icon.svg": "image/svg+xml",
}
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


class Door:
    """Who may use the page: its path, its token, and the ``Host`` names it answers to."""

    def __init__(self, host: str, *, token: str | None = None) -> None:
        self.host = host
        self.port = 0
        self.token = token or secrets.token_urlsafe(16)  # 128 bits
        self.path = f"/{secrets.token_urlsafe(9)}/"
        """Where the page lives; not a secret, but nobody else's server knows it."""

    @property
    def exposed(self) -> bool:
        """Reachable from other machines (not bound to loopback only)."""
        return not _is_loopback(self.host)

    def allows_host(self, header: str) -> bool:
        """Whether a ``Host`` header names this server (anything else: DNS rebinding)."""
        name, _, port = header.rpartition(":")
        if not port.isdigit() or int(port) != self.port:
            return False
        name = name.removeprefix("[").removesuffix("]")
        if name == self.host:
            return True
        wildcard = self.host in ("0.0.0.0", "::", "")
        if name == "localhost":
            return wildcard or _is_loopback(self.host)
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False  # a name we were not told of: whoever resolved it is not us
        return wildcard or (address.is_loopback and _is_loopback(self.host))

    def authorized(self, request: web.Request) -> bool:
        given = request.query.get("token") or request.cookies.get(COOKIE) or ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def same_origin(self, request: web.Request) -> bool:
        return request.headers.get("Origin", "") == f"http://{request.host}"


class Tab:
    """One connected page, with its bounded queue of events to send."""

    def __init__(self, socket: web.WebSocketResponse, size: int) -> None:
        self.socket = socket
        self.queue: asyncio.Queue[str] = asyncio.Queue(size)

    def send(self, event: ev.Event) -> bool:
        """Queue ``event``; False if the tab does not keep up (it is then closed)."""
        try:
            self.queue.put_nowait(ev.encode_event(event))
        except asyncio.QueueFull:
            return False
        return True

    async def write(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                await self.socket.send_str(await self.queue.get())


class Page(Protocol):
    """What the HTTP side needs of the page's state (``web.WebUI`` is one): a protocol,
    so that this module, which ``web`` builds on, does not import it back."""

    opening: int

    @property
    def door(self) -> Door: ...
    @property
    def tabs(self) -> set[Tab]: ...
    @property
    def max_tabs(self) -> int: ...
    @property
    def tab_queue(self) -> int: ...
    @property
    def max_event_size(self) -> int: ...
    @property
    def heartbeat(self) -> float: ...
    @property
    def files(self) -> Files: ...
    async def greeting(self) -> list[ev.Event]: ...
    async def handle(self, tab: Tab, command: ev.Command) -> None: ...


class Files(Protocol):
    """The file side of the page (``webfiles.WebFiles``): upload and download."""

    async def upload(self, request: web.Request) -> web.StreamResponse: ...
    async def download(self, request: web.Request) -> web.StreamResponse: ...


UI: Final = web.AppKey["Page"]("ui")


def make_app(ui: Page) -> web.Application:
    """The aiohttp application of ``ui``: the page, its assets, and the WebSocket."""
    app = web.Application(middlewares=[_guard], client_max_size=16 * 1024)
    app[UI] = ui
    path = ui.door.path
    app.router.add_get(path, _page)
    app.router.add_get(path + "ws", _socket)
    app.router.add_post(path + "upload", _upload)
    app.router.add_get(path + "files/{id}", _download)
    app.router.add_get(path + "{name}", _asset)
    app.on_shutdown.append(_close_tabs)
    return app


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Host, then token, on every request; security headers on every answer."""
    door = request.app[UI].door
    response: web.StreamResponse
    if not door.allows_host(request.host):
        response = web.Response(status=403, text="unknown host\n")
    elif not door.authorized(request):
        response = web.Response(status=401, text="this page needs its token: open its URL\n")
    else:
        try:
            response = await handler(request)
        except web.HTTPException as answer:  # 404, 405...: answers, with the headers too
            response = web.Response(status=answer.status, text=f"{answer.reason}\n")
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response


async def _page(request: web.Request) -> web.StreamResponse:
    door = request.app[UI].door
    if "token" in request.query:  # keep it in a cookie, and out of the address bar
        response = web.Response(status=303, headers={"Location": door.path})
        response.set_cookie(
            COOKIE, door.token, httponly=True, samesite="Strict", path=door.path, max_age=86400
        )
        return response
    return _serve("index.html")


async def _asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return _serve(name)


def _serve(name: str) -> web.Response:
    data = resources.files("p2pchat.frontends").joinpath(f"web/{name}").read_bytes()
    return web.Response(body=data, content_type=ASSETS[name], charset="utf-8")


async def _socket(request: web.Request) -> web.StreamResponse:
    ui = request.app[UI]
    if not ui.door.same_origin(request):
        logger.warning("refused a WebSocket from another origin: %r", request.headers.get("Origin"))
        return web.Response(status=403, text="not from this page\n")
    if len(ui.tabs) + ui.opening >= ui.max_tabs:  # counted before any wait: many at once
        return web.Response(status=503, text="too many pages open\n")
    ui.opening += 1
    try:
        socket = web.WebSocketResponse(heartbeat=ui.heartbeat, max_msg_size=ui.max_event_size)
        await socket.prepare(request)
        tab = Tab(socket, ui.tab_queue)
        for event in await ui.greeting():
            tab.send(event)
    finally:
        ui.opening -= 1
    ui.tabs.add(tab)
    writer = asyncio.create_task(tab.write())
    try:
        async for frame in socket:
            if frame.type != WSMsgType.TEXT:
                continue
            try:
                command = ev.decode_command(frame.data)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                tab.send(ev.Error(reason=f"not a command: {exc}"))
                continue
            await ui.handle(tab, command)
    finally:
        ui.tabs.discard(tab)
        await cancel_and_wait(writer)
    return socket


async def _upload(request: web.Request) -> web.StreamResponse:
    """A file from the page, to offer: from this very page only (``Origin``)."""
    ui = request.app[UI]
    if not ui.door.same_origin(request):
        logger.warning("refused an upload from another origin: %r", request.headers.get("Origin"))
        return web.Response(status=403, text="not from this page\n")
    return await ui.files.upload(request)


async def _download(request: web.Request) -> web.StreamResponse:
    return await request.app[UI].files.download(request)


async def _close_tabs(app: web.Application) -> None:
    for tab in list(app[UI].tabs):
        await tab.socket.close(code=1001, message=b"closing")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
