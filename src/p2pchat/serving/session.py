"""What the server holds for each logged-in peer, and how its presence reaches the store.

``Session`` is one logged-in peer: its connection, name, key, where it can be dialled.
What is sent to it is written to its connection at once (a burst in one write, at the end
of the loop's turn), bounded by ``outbox_bytes`` not yet taken by its socket: answers to
the peer's own requests then wait for room (back-pressure on that peer alone); news
caused by others never waits: a peer that far behind has stopped reading and is dropped.
Mail is news that others can make big at will, so it is pushed only while half the
outbox is free; beyond, the peer is told once that more waits, and collects it (a request:
its answers wait for room), so that no burst of mail drops a peer that keeps reading.
No task and no queue of its own: a server holds many of these.

``Sessions`` are those logged in on this server (this node), as the cluster reaches them:
pushes for a user whose login is under way wait until their ``welcome`` is queued.

``PresenceLog`` writes logins and logouts to the user store in order, off the path of the
news: other peers hear of a login or a logout at once, whatever the disk is doing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final

from ..cluster.base import Entry
from ..errors import ConnectionClosed, P2PChatError
from ..protocol import Mail, Presence, WireMessage, encode
from ..shared.connection import Connection
from ..shared.tasks import cancel_and_wait
from ..store import UserStore
from .settings import DEFAULTS, ServerSettings

__all__ = ["FRAME_BYTES", "PresenceLog", "Session", "Sessions", "dial_addresses"]

FRAME_BYTES: Final = 256
"""What one queued message is counted as, to turn ``outbox_size`` (messages) into bytes."""

NOBODY: Final[frozenset[str]] = frozenset()
"""What a session watches and has collected until it asks: one empty set for them all (an
empty set of its own costs each of many sessions 216 bytes)."""

MORE_MAIL: Final = Mail(items=[], more=True)
"""Pushed instead of mail that does not fit: more waits in the mailbox; collect it."""

logger = logging.getLogger(__name__)


class Session:
    """One logged-in peer: its connection, its name and key, and the outbox written to it."""

    __slots__ = (
        "addresses",
        "certificate",
        "collected",
        "connection",
        "key",
        "leaving",
        "mail_waiting",
        "name",
        "observed",
        "outbox_bytes",
        "pinged",
        "serving",
        "traversal",
        "watching",
    )

    def __init__(
        self,
        connection: Connection,
        *,
        name: str,
        key: str,
        certificate: str,
        addresses: list[tuple[str, int]],
        outbox_size: int,
        traversal: bool = False,
    ) -> None:
        self.connection = connection
        self.name = name
        self.key = key
        self.certificate = certificate
        self.addresses = addresses
        self.observed = connection.remote_address
        """Where the peer's connection comes from: behind a NAT, the NAT's mapping of it
        (of the peer's listening port, if the peer connects from there)."""
        self.traversal = traversal
        """The peer takes part in connection reversal and hole punching."""
        self.outbox_bytes = outbox_size * FRAME_BYTES
        """Bytes not yet taken by the peer's socket beyond which it is behind: answers wait,
        news drops it."""
        self.watching = NOBODY
        """Users whose logins and logouts this peer hears of, however many are online."""
        self.mail_waiting = False
        """Told that mail waits for it to collect: none is pushed until it does."""
        self.collected = NOBODY
        """Mail items handed to it by ``collect`` and not settled: the next page skips them
        (a new set each time it changes: rarely, and most sessions never collect)."""
        self.pinged = 0.0  # when the keepalive last pinged it (monotonic)
        self.serving = asyncio.current_task()  # the task reading this peer's requests
        self.leaving = False

    async def reply(self, message: WireMessage) -> None:
        """Send an answer to this peer's own request, waiting while it is behind: a peer
        that does not read its answers stops being read, and nobody else waits for it."""
        connection = self.connection
        if connection.closing:
            raise ConnectionClosed(f"{self.name} is disconnected")
        connection.write_soon(encode(message, max_frame=connection.max_frame))
        if connection.pending > self.outbox_bytes:
            await connection.drain()

    def push(self, message: WireMessage | bytes) -> None:
        """Send news caused by someone else, never waiting: a peer that far behind has
        stopped reading and is disconnected. (``bytes``: frames encoded already.)"""
        connection = self.connection
        if connection.closing:
            return
        data = message if isinstance(message, bytes) else encode(message)
        if connection.pending + len(data) > self.outbox_bytes:
            self.drop(f"{self.name} is not reading; disconnecting it")
            return
        connection.write_soon(data)

    def push_mail(self, mail: Mail) -> None:
        """Push mail deposited for this peer while half the outbox is free; beyond, tell it
        once that more waits (``mail{items: [], more: true}``) and push none until it
        collects: what is not pushed waits in the mailbox, in order."""
        connection = self.connection
        if connection.closing or self.mail_waiting:
            return
        data = encode(mail)
        if connection.pending + len(data) <= self.outbox_bytes // 2:
            connection.write_soon(data)
            return
        self.mail_waiting = True
        self.push(MORE_MAIL)

    def drop(self, reason: str) -> None:
        """Disconnect at once, also stopping a reader that waits for room."""
        self.connection.log.warning("%s", reason)
        self.connection.abort()
        if (
            self.serving is not None
            and self.serving is not asyncio.current_task()
            and not self.leaving  # it is logging out: it must get to the end of that
        ):
            self.serving.cancel()


class Sessions:
    """The sessions of this node by name: what the cluster delivers to (``cluster.Node``)."""

    def __init__(self, node_id: str, *, settings: ServerSettings = DEFAULTS) -> None:
        self.node_id = node_id
        self.by_name: dict[str, Session] = {}
        self.settings = settings
        """Its limits: ``outbox_size`` pushes held for a login under way; while at most
        ``presence_broadcast`` are logged in here, every one hears of every login and
        logout; beyond, only those who watch that user (telling everyone of everyone costs
        the square of the number online). None: everyone, always."""
        self._watchers: dict[str, set[Session]] = {}
        self._early: dict[str, list[WireMessage]] = {}  # logins under way: pushes held
        self._tokens: dict[str, str] = {}  # name -> the token of its login here
        self.closing = False
        """Set while the server closes: no more presence news to its own sessions."""
        self.on_reaped: Callable[[str], Awaitable[None]] | None = None

    def __len__(self) -> int:
        return len(self.by_name)

    def __contains__(self, name: object) -> bool:
        return name in self.by_name or name in self._early

    def get(self, name: str) -> Session | None:
        return self.by_name.get(name)

    def expect(self, name: str, token: str = "") -> None:
        """A login of ``name`` (``token``: its own id, ``cluster.Entry.token``) is under
        way: hold what is pushed to it until ``add()``."""
        self._early[name] = []
        self._tokens[name] = token

    def forget(self, name: str) -> None:
        """The login of ``name`` did not go through: drop what was held for it. (Nothing,
        once it is added.)"""
        if name not in self.by_name:
            self._early.pop(name, None)
            self._tokens.pop(name, None)

    def add(self, session: Session) -> None:
        """``session`` is welcomed (its ``welcome`` is queued): it gets what was held."""
        self.by_name[session.name] = session
        for message in self._early.pop(session.name, ()):
            _hand(session, message)

    def remove(self, session: Session) -> str | None:
        """``session`` leaves: its login's token, or None if it was not here (any more)."""
        if self.by_name.get(session.name) is not session:
            return None
        del self.by_name[session.name]
        self.watch(session, ())
        return self._tokens.pop(session.name, "")

    def watch(self, session: Session, users: Iterable[str]) -> None:
        """``session`` hears of these users' logins and logouts from now on (instead of
        the ones it watched before)."""
        wanted = frozenset(users)
        for user in session.watching - wanted:
            if (watchers := self._watchers.get(user)) is not None:
                watchers.discard(session)
                if not watchers:
                    del self._watchers[user]
        for user in wanted - session.watching:
            self._watchers.setdefault(user, set()).add(session)
        session.watching = wanted

    # What the cluster calls (cluster.Node).

    def deliver(self, name: str, message: WireMessage) -> bool:
        session = self.by_name.get(name)
        if session is not None:
            _hand(session, message)
            return True
        held = self._early.get(name)
        if held is not None and _is_mail(message):
            # Not held: it is in the mailbox, which a peer collects after each login.
            if MORE_MAIL not in held and len(held) < self.settings.outbox_size:
                held.append(MORE_MAIL)
            return True
        if held is not None and len(held) < self.settings.outbox_size:
            held.append(message)
            return True
        return False

    def broadcast(self, news: Sequence[Presence]) -> None:
        """Every session gets the news (but its own), encoded once, in one push; beyond
        ``presence_broadcast`` sessions, only those who watch the users it is about."""
        if self.closing or not news:
            return
        # Counted without the one logging in or out (not yet, or no longer, in by_name):
        # beyond the limit, the news is for watchers only.
        if (most := self.settings.presence_broadcast) is not None and len(self.by_name) >= most:
            for item in news:
                if watchers := self._watchers.get(item.user):
                    frame = encode(item)
                    for session in list(watchers):
                        session.push(frame)
            return
        frames = [encode(item) for item in news]
        together = b"".join(frames)
        subjects = {item.user for item in news}
        for name, session in list(self.by_name.items()):
            if name not in subjects:
                session.push(together)
            elif mine := b"".join(f for f, n in zip(frames, news, strict=True) if n.user != name):
                session.push(mine)

    def held(self) -> list[Entry]:
        return [
            Entry(
                name=s.name,
                node=self.node_id,
                certificate=s.certificate,
                addresses=s.addresses,
                traversal=s.traversal,
                token=self._tokens.get(s.name, ""),
            )
            for s in self.by_name.values()
        ]

    def holds(self, name: str, token: str) -> bool:
        return self._tokens.get(name) == token

    def evict(self, name: str, reason: str) -> None:
        session = self.by_name.get(name)
        if session is not None:
            session.drop(reason)

    async def reaped(self, name: str) -> None:
        if self.on_reaped is not None:
            await self.on_reaped(name)


def _is_mail(message: WireMessage) -> bool:
    """A mail push (not an answer to ``collect``)."""
    return isinstance(message, Mail) and message.id is None


def _hand(session: Session, message: WireMessage) -> None:
    """Push news caused by someone else to ``session``; mail only while it has room."""
    if isinstance(message, Mail) and message.id is None:
        session.push_mail(message)
    else:
        session.push(message)


class PresenceLog:
    """Writes logins and logouts to the user store in the order they happened, in the
    background. The store is what a restarted server starts from; the news does not wait
    for it."""

    def __init__(self, store: UserStore, *, clock: Callable[[], float], size: int = 4096):
        self.store = store
        self.clock = clock
        self._queue: asyncio.Queue[tuple[str, list[tuple[str, int]] | None, float]] = asyncio.Queue(
            size
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._write())

    async def online(self, name: str, addresses: list[tuple[str, int]]) -> None:
        await self._queue.put((name, addresses, self.clock()))

    async def offline(self, name: str) -> None:
        await self._queue.put((name, None, self.clock()))

    async def _write(self) -> None:
        """Everything queued since the last write goes at once, in order: the writes are
        made together (a store that commits in groups, as the SQLite one does, puts them
        in one transaction), so that a burst of logins is not written one commit each."""
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await asyncio.gather(*(self._record(*item) for item in batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _record(self, name: str, addresses: list[tuple[str, int]] | None, now: float) -> None:
        try:
            if addresses is None:
                await self.store.set_offline(name, now=now)
            else:
                await self.store.set_online(name, addresses, now=now)
        except (P2PChatError, OSError) as exc:
            logger.error("cannot record the presence of %s: %s", name, exc)

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        await cancel_and_wait(self._task)
        self._task = None


def dial_addresses(
    advertised: list[tuple[str, int]], observed: tuple[str, int] | None
) -> list[tuple[str, int]]:
    """Where others may dial a peer: what it advertised, wildcard hosts made concrete, the
    observed host first.

    A wildcard host (empty, ``0.0.0.0``, ``::``) becomes the observed host if that is of
    the same family (empty: either); a wildcard of the other family is dropped, since the
    server cannot know the peer's address in it. Dropped too: host names and anything
    else that is not an IP address in its standard form (a name could resolve to
    anything), port 0, multicast and unspecified hosts, and loopback hosts (IPv4-mapped
    ones too) unless the peer itself came from loopback. A
    peer cannot have others dial their own machine's services by advertising 127.0.0.1.
    """
    observed_host = observed[0] if observed is not None else None
    observed_ip = _ip(observed_host) if observed_host else None
    local = observed_ip is not None and observed_ip.is_loopback
    addresses: list[tuple[str, int]] = []
    for host, port in advertised:
        ip = _ip(host) if host else None
        if host and ip is None:
            continue  # a name, or an odd form of an address: not passed on
        if ip is None or ip.is_unspecified:
            if observed_host is None or not _same_family(ip, observed_ip):
                continue
            host, ip = observed_host, observed_ip
        if port == 0 or (ip is not None and (ip.is_multicast or (ip.is_loopback and not local))):
            continue
        if (host, port) not in addresses:
            addresses.append((host, port))
    addresses.sort(key=lambda address: address[0] != observed_host)  # stable: observed first
    return addresses


def _same_family(
    wildcard: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    observed: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
) -> bool:
    """A wildcard (None: the empty host, any family) can stand for the observed host."""
    return wildcard is None or observed is None or wildcard.version == observed.version


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip
