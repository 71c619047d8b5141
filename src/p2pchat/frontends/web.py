"""The chat in a web page: a small local web server for one ``Peer``.

``WebUI(peer, host, port)`` serves the page (``p2pchat/frontends/web/``: one HTML file, ES modules,
one stylesheet; no build step, nothing from elsewhere) and one WebSocket that carries
typed events both ways (``webevents.py``). It uses the public ``Peer`` API only, like the
console: it is another front end, not another peer. Who may come in (the token, ``Host``,
``Origin``, the security headers) is ``webhttp.py``'s job; this module is what the page
shows and what its commands do. Each page's events wait in a bounded queue: a page that
stops reading is disconnected, not buffered for without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Final

import msgspec
from aiohttp import web

from .. import (
    Conversation,
    Invitation,
    InviteRefused,
    InviteTimeout,
    KeyChanged,
    Message,
    P2PChatError,
    Peer,
    PeerUnreachable,
    UserOffline,
)
from . import webevents as ev
from .webfiles import WebFiles
from .webgroups import WebGroups
from .webhttp import Door, Tab, make_app
from .websearch import found

__all__ = ["WebUI"]

logger = logging.getLogger(__name__)

HISTORY: Final = 200
"""Messages shown when a conversation opens, and sent at most for each ``older``."""
MAX_TALKS: Final = 64
"""Conversations listed on the page at most (the oldest go; their history stays)."""
PAST_TALKS: Final = 20
"""Earlier conversations (from the store) listed when the page starts."""
EVENT_SLACK: Final = 1024
"""Bytes of an event kept free of history, for its other fields."""


class WebUI:
    """Serves the web page of ``peer`` at ``url`` (``start()``/``close()`` or ``async with``).

    The peer must be started; the page is its only front end (it reads its invitations,
    its mail and its file offers). ``host`` defaults to 127.0.0.1; ``port`` 0 picks a free
    one. Files accepted from the page go to ``downloads`` (default: the user's downloads
    directory); files sent from it wait in ``uploads`` (default: a private temporary
    directory, removed at ``close()``).
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
        downloads: Path | None = None,
        uploads: Path | None = None,
    ) -> None:
        self.peer = peer
        self.host = host
        self.port = port
        self.door = Door(host, token=token)
        """Who may use the page (``webhttp.Door``): its path, token and host names."""
        self.max_tabs = max_tabs
        self.tab_queue = tab_queue
        self.max_event_size = max_event_size
        self.heartbeat = heartbeat
        self.invite_timeout = invite_timeout
        self._runner: web.AppRunner | None = None
        self.tabs: set[Tab] = set()
        """The pages connected now."""
        self.opening = 0
        """Pages being connected (counted against ``max_tabs`` with those connected)."""
        self._invitations: dict[str, Invitation] = {}
        self._talks: dict[str, Conversation] = {}
        self._leaving: set[Conversation] = set()  # closed from a page: "you left"
        self._contacts: dict[str, int] = {}  # users shown as a talk -> unread while no page
        self._tasks: set[asyncio.Task[Any]] = set()
        self._online: set[str] = set()
        self.files = WebFiles(
            peer, self._broadcast, self._spawn, downloads=downloads, uploads=uploads
        )
        """Files sent from the page, offers, progress and downloads (``webfiles.py``)."""
        self.groups = WebGroups(
            peer,
            broadcast=self._broadcast,
            spawn=self._spawn,
            watched=lambda: bool(self.tabs),
            fit=lambda stored: (
                _newest_within(stored, self.max_event_size - EVENT_SLACK) or stored[-1:]
            ),
        )
        """The groups the page shows, and its group commands."""

    # Lifecycle.

    async def start(self) -> None:
        if self._runner is not None:
            return
        if self.door.exposed:
            logger.warning(
                "the web page of %s is served on %s, not only to this machine: anyone who "
                "can reach it there and learns its address can read and write this user's "
                "chats (it is plain HTTP: use it only on a network you trust)",
                self.peer.name,
                self.host,
            )
        runner = web.AppRunner(make_app(self), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = self.door.port = _bound_port(runner, self.port)
        for user in await self.peer.correspondents(limit=PAST_TALKS):
            self._contacts.setdefault(user, 0)
        peer = self.peer
        peer.on_presence = self._presence
        peer.on_state = lambda state: self._broadcast(ev.State(state=state))
        peer.on_shipped = self._shipped
        peer.on_route = lambda chat: self._broadcast(
            ev.Route(user=chat.peer, route=chat.route, via=chat.via)
        )
        peer.on_invitation_cancelled = self._withdrawn
        self._spawn(self._watch_invitations())
        self._spawn(self._watch_mail())
        self._spawn(self._refresh_online())
        await self.files.start()
        await self.groups.start()
        logger.info("web page of %s at %s", peer.name, self.url.split("?", 1)[0])

    @property
    def token(self) -> str:
        return self.door.token

    @property
    def url(self) -> str:
        """The page's address with its token: open it once; the token then lives in a
        cookie of this page's own."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.door.path}?token={self.door.token}"

    async def close(self) -> None:
        for tab in list(self.tabs):
            await tab.socket.close(code=1001, message=b"the peer is leaving")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        await self.files.close()

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
        for tab in list(self.tabs):
            if not tab.send(event):
                logger.warning("a page of %s does not keep up; closing it", self.peer.name)
                self.tabs.discard(tab)
                self._spawn(tab.socket.close(code=1008, message=b"too slow"))

    def _presence(self, user: str, online: bool) -> None:
        (self._online.add if online else self._online.discard)(user)
        self._broadcast(ev.Presence(user=user, online=online))

    def _shipped(self, user: str, ids: list[str]) -> None:
        """``user`` has stored these: one-to-one, or a copy of a group message."""
        if ones := self.groups.receipts(ids):
            self._broadcast(ev.Shipped(user=user, ids=ones))

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
        count = self._contacts.get(user, 0) + (unread if not self.tabs else 0)
        self._contacts[user] = count
        while len(self._contacts) > MAX_TALKS:  # the oldest go: their history stays in the store
            del self._contacts[next(iter(self._contacts))]

    async def _attach(self, chat: Conversation) -> None:
        """A conversation is open: show it with its history, then what arrives."""
        self._talks[chat.peer] = chat
        self._seen(chat.peer)
        self._broadcast(ev.Talk(talk=await self._talk_info(chat.peer)))
        self._spawn(self._read(chat))

    async def _talk_info(
        self, user: str, *, unread: int = 0, history: list[ev.WebMessage] | None = None
    ) -> ev.TalkInfo:
        """``user``'s talk with ``history``, by default its newest messages that fit in one
        event (``max_event_size``; the newest one always)."""
        chat = self._talks.get(user)
        older = False
        if history is None:
            stored, older = await self._history(user)
            history = _newest_within(stored, self.max_event_size - EVENT_SLACK) or stored[-1:]
            older = older or len(history) < len(stored)
        return ev.TalkInfo(
            user=user,
            live=chat is not None and not chat.closed,
            route=chat.route if chat is not None else "",
            via=chat.via if chat is not None else "",
            history=history,
            older=older,
            unread=unread,
        )

    async def _history(
        self, user: str, before: ev.Position | None = None
    ) -> tuple[list[ev.WebMessage], bool]:
        """The last HISTORY messages with ``user`` (before ``before``), and whether the
        store holds older ones."""
        edge = None
        if before is not None:
            me = self.peer.name
            recipient = user if before.sender == me else me
            edge = Message(
                id=before.id,
                sender=before.sender,
                recipient=recipient,
                body="",
                sent_at=before.sent_at,
            )
        stored = await self.peer.history(user, before=edge, limit=HISTORY + 1)
        return [ev.WebMessage.of(m) for m in stored[-HISTORY:]], len(stored) > HISTORY

    async def _older(self, user: str, before: ev.Position) -> ev.History:
        """The newest messages before ``before`` that fit in one event (one at least)."""
        stored, older = await self._history(user, before)
        shown = _newest_within(stored, self.max_event_size - EVENT_SLACK) or stored[-1:]
        return ev.History(user=user, messages=shown, older=older or len(shown) < len(stored))

    async def _read(self, chat: Conversation) -> None:
        async for message in chat:
            self._seen(chat.peer, unread=1)
            self._broadcast(ev.NewMessage(user=chat.peer, message=ev.WebMessage.of(message)))
        if self._talks.get(chat.peer) is chat:
            del self._talks[chat.peer]
        by_me = chat in self._leaving
        self._leaving.discard(chat)
        self._broadcast(ev.TalkEnded(user=chat.peer, reason=chat.close_reason, by_me=by_me))

    # What a tab asks for.

    async def greeting(self) -> list[ev.Event]:
        """What a page is sent as it connects: the snapshot, then its groups."""
        return [await self.snapshot(), *self.groups.greeting()]

    async def snapshot(self) -> ev.Snapshot:
        """Everything the page shows, in one event of at most ``max_event_size`` bytes:
        the talks share what the rest leaves, a message at a time from each, newest first
        (mail from many accounts cannot make it grow without end)."""
        contacts = list(self._contacts.items())
        for user, _ in contacts:
            self._contacts[user] = 0  # a page shows them now
        talks = [await self._talk_info(user, unread=n, history=[]) for user, n in contacts]
        stored = [await self._history(user) for user, _ in contacts]
        histories = [history for history, _ in stored]
        snapshot = ev.Snapshot(
            name=self.peer.name,
            fingerprint=self.peer.fingerprint,
            state=self.peer.state,
            online=sorted(self._online),
            invitations=[_info(i) for i in self._invitations.values() if _standing(i)],
            talks=talks,
            files=await self.files.snapshot(),
        )
        left = self.max_event_size - EVENT_SLACK - len(ev.encode_event(snapshot))
        shown = [0] * len(histories)  # the newest shown[i] messages of talk i
        full = [not history for history in histories]
        while not all(full):
            for i, history in enumerate(histories):
                if full[i]:
                    continue
                cost = _size(history[-1 - shown[i]])
                if cost > left:
                    full[i] = True  # no gap: its older ones are not taken either
                    continue
                left -= cost
                shown[i] += 1
                full[i] = shown[i] == len(history)
        talks = [
            msgspec.structs.replace(
                talk, history=history[len(history) - n :], older=n < len(history) or more
            )
            for talk, (history, more), n in zip(talks, stored, shown, strict=True)
        ]
        return msgspec.structs.replace(snapshot, talks=talks)

    async def handle(self, tab: Tab, command: ev.Command) -> None:
        """Carry out one command from a page; what fails is told as an error event."""
        try:
            if isinstance(command, ev.Invite):
                if (chat := self._talks.get(command.user)) is not None and not chat.closed:
                    tab.send(ev.Talk(talk=await self._talk_info(command.user)))  # go back to it
                else:
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
                    self._leaving.add(chat)
                    await chat.close("closed the talk")
            elif isinstance(command, ev.Open):
                self._seen(command.user)
                tab.send(ev.Talk(talk=await self._talk_info(command.user)))
            elif isinstance(command, ev.Refresh):
                await self._refresh_online()
            elif isinstance(command, ev.Search):
                budget = self.max_event_size - EVENT_SLACK
                names = self.groups.name_of
                tab.send(await found(self.peer, command.text, budget=budget, group_name=names))
            elif isinstance(command, ev.Older):
                tab.send(await self._older(command.user, command.before))
            elif isinstance(command, ev.FileAnswer):
                await self.files.answer(command.id, command.accept)
            elif isinstance(command, ev.FileCancel):
                await self.files.cancel(command.id)
            else:
                for event in await self.groups.handle(command):
                    tab.send(event)
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


def _info(invitation: Invitation) -> ev.InvitationInfo:
    return ev.InvitationInfo(
        id=invitation.id, sender=invitation.sender, fingerprint=invitation.fingerprint
    )


def _standing(invitation: Invitation) -> bool:
    return not invitation.answered and invitation.cancelled is None


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        return int(address[1])
    return asked


def _size(message: ev.WebMessage) -> int:
    """The bytes ``message`` adds to a list in an event (its JSON, and a comma)."""
    return len(ev.encode_messages([message])) - 1


def _newest_within(messages: list[ev.WebMessage], budget: int) -> list[ev.WebMessage]:
    """The newest of ``messages`` (oldest first) whose JSON fits in ``budget`` bytes."""
    used = 2  # []
    start = len(messages)
    while start > 0 and used + _size(messages[start - 1]) <= budget:
        used += _size(messages[start - 1])
        start -= 1
    return messages[start:]
