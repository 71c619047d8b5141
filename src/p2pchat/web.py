"""The chat in a web page: a small local web server for one ``Peer``.

``WebUI(peer, host, port)`` serves the page (``p2pchat/web/``: one HTML file, ES modules,
one stylesheet; no build step, nothing from elsewhere) and one WebSocket that carries
typed events both ways (``webevents.py``). It uses the public ``Peer`` API only, like the
console: it is another front end, not another peer.

The page is a door into the user's chats, so:

- it listens on 127.0.0.1 unless told otherwise (and says so loudly if not);
- every request needs the secret token: given once in the URL, then kept in an HttpOnly,
  SameSite=Strict cookie (the URL is stripped of it by a redirect). Without it: 401, and
  no data;
- the ``Host`` header must name this server (against DNS rebinding), and a WebSocket's
  ``Origin`` must be this page (another site cannot open one): 403 otherwise;
- the Content-Security-Policy allows this origin's scripts and styles only, no inline
  script, no framing; the page builds its DOM with ``textContent``, never HTML from data;
- each browser tab's outgoing events are queued in a bounded queue: a tab that stops
  reading is disconnected, not buffered for without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Coroutine
from importlib import resources
from typing import Any, Final

import msgspec
from aiohttp import WSMsgType, web

from . import (
    Conversation,
    Invitation,
    InviteRefused,
    InviteTimeout,
    KeyChanged,
    P2PChatError,
    Peer,
    PeerUnreachable,
    UserOffline,
)
from . import webevents as ev

__all__ = ["WebUI"]

logger = logging.getLogger(__name__)

COOKIE: Final = "p2pchat_token"
HISTORY: Final = 200
"""Messages shown when a conversation opens."""
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


class _Tab:
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


class WebUI:
    """Serves the web page of ``peer`` at ``url`` (``start()``/``close()`` or ``async with``).

    The peer must be started; the page is its only front end (it reads its invitations
    and its mail). ``host`` defaults to 127.0.0.1; ``port`` 0 picks a free one.
    """

    def __init__(
        self,
        peer: Peer,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        # Limits
        max_tabs: int = 8,
        tab_queue: int = 1024,
        max_event_size: int = 64 * 1024,
        # Timeouts
        heartbeat: float = 20.0,
        invite_timeout: float = 60.0,
    ) -> None:
        self.peer = peer
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(16)  # 128 bits
        self.max_tabs = max_tabs
        self.tab_queue = tab_queue
        self.max_event_size = max_event_size
        self.heartbeat = heartbeat
        self.invite_timeout = invite_timeout
        self._runner: web.AppRunner | None = None
        self._tabs: set[_Tab] = set()
        self._invitations: dict[str, Invitation] = {}
        self._talks: dict[str, Conversation] = {}
        self._contacts: dict[str, int] = {}  # users shown as a talk -> unread while no page
        self._tasks: set[asyncio.Task[Any]] = set()
        self._online: set[str] = set()

    # Lifecycle.

    async def start(self) -> None:
        if self._runner is not None:
            return
        if not _is_loopback(self.host):
            logger.warning(
                "the web page of %s is served on %s: anyone who can reach it there and "
                "learns its token can read and write this user's chats",
                self.peer.name,
                self.host,
            )
        runner = web.AppRunner(make_app(self), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = _bound_port(runner, self.port)
        peer = self.peer
        peer.on_presence = self._presence
        peer.on_state = lambda state: self._broadcast(ev.State(state=state))
        peer.on_shipped = lambda user, ids: self._broadcast(ev.Shipped(user=user, ids=ids))
        peer.on_invitation_cancelled = self._withdrawn
        self._spawn(self._watch_invitations())
        self._spawn(self._watch_mail())
        self._spawn(self._refresh_online())
        logger.info("web page of %s at http://%s:%d/", peer.name, self.host, self.port)

    @property
    def url(self) -> str:
        """The page's address with its token: open it once; the token then lives in a
        cookie."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    async def close(self) -> None:
        for tab in list(self._tabs):
            await tab.socket.close(code=1001, message=b"the peer is leaving")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> WebUI:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # What happens to the peer, told to every tab.

    def _broadcast(self, event: ev.Event) -> None:
        for tab in list(self._tabs):
            if not tab.send(event):
                logger.warning("a page of %s does not keep up; closing it", self.peer.name)
                self._tabs.discard(tab)
                self._spawn(tab.socket.close(code=1008, message=b"too slow"))

    def _presence(self, user: str, online: bool) -> None:
        (self._online.add if online else self._online.discard)(user)
        self._broadcast(ev.Presence(user=user, online=online))

    def _withdrawn(self, invitation: Invitation) -> None:
        self._invitations.pop(invitation.id, None)
        reason = invitation.cancelled or "withdrawn"
        self._broadcast(ev.InvitationGone(id=invitation.id, reason=reason))

    async def _refresh_online(self) -> None:
        with contextlib.suppress(P2PChatError):
            self._online = set(await self.peer.online())
            self._broadcast(ev.Online(users=sorted(self._online)))

    async def _watch_invitations(self) -> None:
        while True:
            invitation = await self.peer.next_invitation()
            self._invitations[invitation.id] = invitation
            self._broadcast(ev.Invited(invitation=_info(invitation)))

    async def _watch_mail(self) -> None:
        while True:
            message = await self.peer.next_message()
            self._seen(message.sender, unread=1)
            event = ev.NewMessage(user=message.sender, message=ev.WebMessage.of(message), mail=True)
            self._broadcast(event)

    def _seen(self, user: str, *, unread: int = 0) -> None:
        """``user`` has a talk on the page; ``unread`` more if no page is open to see it."""
        count = self._contacts.get(user, 0) + (unread if not self._tabs else 0)
        self._contacts[user] = count
        while len(self._contacts) > 256:  # the oldest go: their history stays in the store
            del self._contacts[next(iter(self._contacts))]

    async def _attach(self, chat: Conversation) -> None:
        """A conversation is open: show it with its history, then what arrives."""
        self._talks[chat.peer] = chat
        self._seen(chat.peer)
        history = await self.peer.history(chat.peer, limit=HISTORY)
        info = ev.TalkInfo(
            user=chat.peer,
            live=True,
            route=chat.route,
            via=chat.via,
            history=[ev.WebMessage.of(m) for m in history],
        )
        self._broadcast(ev.Talk(talk=info))
        self._spawn(self._read(chat))

    async def _read(self, chat: Conversation) -> None:
        async for message in chat:
            self._seen(chat.peer, unread=1)
            self._broadcast(ev.NewMessage(user=chat.peer, message=ev.WebMessage.of(message)))
        if self._talks.get(chat.peer) is chat:
            del self._talks[chat.peer]
        self._broadcast(ev.TalkEnded(user=chat.peer, reason=chat.close_reason))

    # What a tab asks for.

    async def snapshot(self) -> ev.Snapshot:
        talks = []
        for user, unread in list(self._contacts.items()):
            chat = self._talks.get(user)
            history = await self.peer.history(user, limit=HISTORY)
            talks.append(
                ev.TalkInfo(
                    user=user,
                    live=chat is not None and not chat.closed,
                    route=chat.route if chat is not None else "",
                    via=chat.via if chat is not None else "",
                    history=[ev.WebMessage.of(m) for m in history],
                    unread=unread,
                )
            )
            self._contacts[user] = 0  # a page shows them now
        return ev.Snapshot(
            name=self.peer.name,
            fingerprint=self.peer.fingerprint,
            state=self.peer.state,
            online=sorted(self._online),
            invitations=[_info(i) for i in self._invitations.values() if _standing(i)],
            talks=talks,
        )

    async def handle(self, tab: _Tab, command: ev.Command) -> None:
        """Carry out one command from a page; what fails is told as an error event."""
        try:
            if isinstance(command, ev.Invite):
                self._spawn(self._invite(command.user, command.trust))
            elif isinstance(command, ev.Accept):
                self._spawn(self._accept(command.id, command.trust))
            elif isinstance(command, ev.Refuse):
                invitation = self._invitations.pop(command.id, None)
                if invitation is None:
                    raise P2PChatError("that invitation is gone")
                await invitation.refuse("no, thanks")
                self._broadcast(ev.InvitationGone(id=command.id, reason="refused"))
            elif isinstance(command, ev.Send):
                message = await self.peer.send(command.user, command.body)
                self._seen(command.user)
                self._broadcast(ev.NewMessage(user=command.user, message=ev.WebMessage.of(message)))
            elif isinstance(command, ev.Leave):
                if (chat := self._talks.get(command.user)) is not None:
                    await chat.close("left")
            elif isinstance(command, ev.Open):
                self._seen(command.user)
                history = await self.peer.history(command.user, limit=HISTORY)
                chat = self._talks.get(command.user)
                live = chat is not None and not chat.closed
                info = ev.TalkInfo(
                    user=command.user,
                    live=live,
                    route=chat.route if chat is not None else "",
                    via=chat.via if chat is not None else "",
                    history=[ev.WebMessage.of(m) for m in history],
                )
                tab.send(ev.Talk(talk=info))
            elif isinstance(command, ev.Refresh):
                await self._refresh_online()
        except P2PChatError as exc:
            tab.send(ev.Error(reason=str(exc)))

    async def _invite(self, user: str, trust: bool) -> None:
        try:
            chat = await self.peer.invite(user, timeout=self.invite_timeout, trust_new_key=trust)
        except KeyChanged as exc:
            self._broadcast(
                ev.KeyChanged(
                    user=user, old=exc.old_fingerprint, new=exc.new_fingerprint, action="invite"
                )
            )
        except InviteRefused as exc:
            self._broadcast(ev.Outcome(user=user, outcome="refused", reason=exc.reason))
        except UserOffline:
            self._broadcast(ev.Outcome(user=user, outcome="offline"))
        except InviteTimeout:
            self._broadcast(ev.Outcome(user=user, outcome="timed_out"))
        except PeerUnreachable as exc:
            self._broadcast(ev.Outcome(user=user, outcome="unreachable", reason=str(exc)))
        except P2PChatError as exc:
            self._broadcast(ev.Outcome(user=user, outcome="error", reason=str(exc)))
        else:
            self._broadcast(ev.Outcome(user=user, outcome="talking"))
            await self._attach(chat)

    async def _accept(self, invitation_id: str, trust: bool) -> None:
        invitation = self._invitations.get(invitation_id)
        if invitation is None:
            self._broadcast(ev.InvitationGone(id=invitation_id, reason="no longer standing"))
            return
        try:
            chat = await invitation.accept(trust_new_key=trust)
        except KeyChanged as exc:
            self._broadcast(
                ev.KeyChanged(
                    user=invitation.sender,
                    old=exc.old_fingerprint,
                    new=exc.new_fingerprint,
                    action="accept",
                    id=invitation_id,
                )
            )
            return
        except P2PChatError as exc:
            self._invitations.pop(invitation_id, None)
            self._broadcast(ev.InvitationGone(id=invitation_id, reason=str(exc)))
            return
        self._invitations.pop(invitation_id, None)
        self._broadcast(ev.InvitationGone(id=invitation_id, reason="accepted"))
        await self._attach(chat)

    # HTTP.

    def allowed_hosts(self) -> set[str]:
        """``Host`` values that name this server (anything else: DNS rebinding)."""
        names = {self.host, f"[{self.host}]"}
        if _is_loopback(self.host) or self.host in ("0.0.0.0", "::"):
            names |= {"localhost", "127.0.0.1", "[::1]"}
        return {f"{name}:{self.port}" for name in names}

    def authorized(self, request: web.Request) -> bool:
        given = request.cookies.get(COOKIE) or request.query.get("token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())


UI: Final = web.AppKey("ui", WebUI)


def make_app(ui: WebUI) -> web.Application:
    """The aiohttp application of ``ui``: the page, its assets, and the WebSocket."""
    app = web.Application(middlewares=[_guard], client_max_size=16 * 1024)
    app[UI] = ui
    app.router.add_get("/", _page)
    app.router.add_get("/ws", _socket)
    app.router.add_get("/{name}", _asset)
    app.on_shutdown.append(_close_tabs)
    return app


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Host, then token, on every request; security headers on every answer."""
    ui = request.app[UI]
    if request.host not in ui.allowed_hosts():
        response: web.StreamResponse = web.Response(status=403, text="unknown host\n")
    elif not ui.authorized(request):
        response = web.Response(status=401, text="this page needs its token: open its URL\n")
    else:
        response = await handler(request)
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response


async def _page(request: web.Request) -> web.StreamResponse:
    ui = request.app[UI]
    if "token" in request.query:  # keep it in a cookie, and out of the address bar
        response = web.HTTPSeeOther("/")
        response.set_cookie(
            COOKIE, ui.token, httponly=True, samesite="Strict", path="/", max_age=30 * 86400
        )
        response.headers.update(SECURITY_HEADERS)
        raise response
    return _serve("index.html")


async def _asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return _serve(name)


def _serve(name: str) -> web.Response:
    data = resources.files("p2pchat").joinpath(f"web/{name}").read_bytes()
    return web.Response(body=data, content_type=ASSETS[name], charset="utf-8")


async def _socket(request: web.Request) -> web.StreamResponse:
    ui = request.app[UI]
    origin = request.headers.get("Origin", "")
    if origin not in {f"http://{host}" for host in ui.allowed_hosts()}:
        logger.warning("refused a WebSocket from another origin: %r", origin)
        return web.Response(status=403, text="not from this page\n")
    if len(ui._tabs) >= ui.max_tabs:
        return web.Response(status=503, text="too many pages open\n")
    socket = web.WebSocketResponse(heartbeat=ui.heartbeat, max_msg_size=ui.max_event_size)
    await socket.prepare(request)
    tab = _Tab(socket, ui.tab_queue)
    tab.send(await ui.snapshot())
    ui._tabs.add(tab)
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
        ui._tabs.discard(tab)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    return socket


async def _close_tabs(app: web.Application) -> None:
    for tab in list(app[UI]._tabs):
        await tab.socket.close(code=1001, message=b"closing")


def _info(invitation: Invitation) -> ev.InvitationInfo:
    return ev.InvitationInfo(
        id=invitation.id, sender=invitation.sender, fingerprint=invitation.fingerprint
    )


def _standing(invitation: Invitation) -> bool:
    return not invitation.answered and invitation.cancelled is None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        return int(address[1])
    return asked
