"""The signalling server: who is online, where they can be dialled, and invitations.

It never sees chat content: peers talk over direct connections, encrypted end to end.
Names are bound to keys on first use: a login proves the key by signing a fresh challenge,
and a name bound to one key (whatever its case) is refused to every other. For each peer
connection the server reads messages and dispatches them by type to a handler; every
answer and every push goes through the session's bounded outbox (``session.py``).
Invitations and their bounds live in ``invitation_book.py``, relays in ``relay.py``, the
per-address bounds in ``limits.py``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .connection import Connection, keep_alive
from .errors import (
    ConnectionClosed,
    NameTaken,
    ProtocolError,
    RateLimited,
    ServerRefused,
    TooManyConnections,
    UnknownUser,
)
from .invitation_book import InvitationBook
from .limits import AddressLimits, TokenBucket
from .login import authenticate
from .mailbox import MailService
from .protocol import (
    DEFAULT_MAX_FRAME,
    DEFAULT_PORT,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    Bye,
    Error,
    Hello,
    Key,
    ListUsers,
    Ping,
    Pong,
    Presence,
    Relay,
    Users,
    Welcome,
    Whois,
    WireMessage,
)
from .relay import RelayHub
from .rendezvous import Rendezvous
from .session import PresenceLog, Session, dial_addresses
from .sockets import format_address, listen
from .store import Mailbox, MemoryMailbox, MemoryUserStore, UserStore

__all__ = ["DEFAULT_PORT", "SignallingServer"]

logger = logging.getLogger(__name__)


class SignallingServer:
    """Accepts peers, keeps presence, passes invitations between them, keeps sealed mail.

    ``store`` (default: a new MemoryUserStore) and ``mailbox`` (default: a new
    MemoryMailbox) are opened by ``start()`` and closed by ``close()``. Use
    ``async with SignallingServer(...) as server`` or start/close. A wildcard ``host``
    (``0.0.0.0``, ``::``) listens on IPv4 and IPv6 both, on one port.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        store: UserStore | None = None,
        *,
        mailbox: Mailbox | None = None,
        ssl: ssl.SSLContext | None = None,
        # Limits
        max_frame: int | None = DEFAULT_MAX_FRAME,
        max_list: int = 1000,
        outbox_size: int = 1024,
        rate_limit: tuple[float, int] | None = (20.0, 200),
        backlog: int = 1024,
        max_connections: int = 4096,
        max_connections_per_address: int | None = 256,
        registration_rate: tuple[float, int] | None = (10 / 3600, 20),
        trusted_networks: Sequence[str] = ("127.0.0.0/8", "::1/128"),
        max_relays: int = 100,
        max_relays_per_user: int = 2,
        relay_rate: int | None = 1 << 20,
        max_punches: int = 6,
        max_invitations: int = 16,
        max_invitations_per_pair: int = 2,
        mailbox_items: int | None = 1000,
        mailbox_bytes: int | None = 8 << 20,
        mail_item_size: int = 32 * 1024,
        deposit_rate: tuple[float, int] | None = (10.0, 100),
        # Timeouts
        hello_timeout: float | None = 10.0,
        invitation_ttl: float = 120.0,
        dial_window: float = 60.0,
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
        relay_timeout: float = 10.0,
        relay_idle: float | None = 60.0,
        relay_lifetime: float | None = 4 * 3600.0,
        mail_ttl: float = 7 * 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.store: UserStore = store if store is not None else MemoryUserStore()
        self.ssl = ssl
        self.max_frame = max_frame
        self.max_list = max_list
        self.outbox_size = outbox_size
        self.rate_limit = rate_limit
        """(requests per second, burst) per connection; None: no limit."""
        self.backlog = backlog
        """Connections waiting to be accepted: a burst of logins beyond it waits for SYN
        retries (about a second each)."""
        self.max_connections = max_connections
        """Connections at once (logged in, logging in, relayed); beyond, server_busy."""
        self.address_limits = AddressLimits(
            max_connections=max_connections_per_address,
            registrations=registration_rate,
            trusted=trusted_networks,
        )
        """Per address (an IPv6 /64): connections at once, and new names over time
        ((per second, burst)). Not applied to ``trusted_networks`` (default: loopback)."""
        self._sessions: dict[str, Session] = {}  # welcomed: they get news and invitations
        self.invitations = InvitationBook(
            max_sent=max_invitations,
            max_received=max_invitations,
            max_per_pair=max_invitations_per_pair,
        )
        """Invitations pending: at most ``max_invitations`` sent and as many received per
        user, and ``max_invitations_per_pair`` from one user to one other."""
        self.relays = RelayHub(
            max_relays=max_relays,
            max_relays_per_user=max_relays_per_user,
            rate=relay_rate,
            join_timeout=relay_timeout,
            idle_timeout=relay_idle,
            lifetime=relay_lifetime,
        )
        """Relayed conversations: bounded in number, bytes per second, silence and lifetime."""
        self.rendezvous = Rendezvous(
            self._sessions,
            self.store,
            self.invitations,
            self.relays,
            invitation_ttl=invitation_ttl,
            dial_window=dial_window,
            max_punches=max_punches,
        )
        self.mail = MailService(
            self._sessions,
            self.store,
            mailbox if mailbox is not None else MemoryMailbox(),
            max_items=mailbox_items,
            max_bytes=mailbox_bytes,
            item_size=mail_item_size,
            deposit_rate=deposit_rate,
            ttl=mail_ttl,
            clock=clock,
        )
        """Sealed mail for users who are away: bounded per recipient (items, bytes), per
        item, per second of deposits, and in time (``mail_ttl``)."""
        self.hello_timeout = hello_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.clock = clock
        self._servers: list[asyncio.Server] = []  # one per family for a wildcard host
        self._closing = False
        self._online: list[str] = []  # the names in _sessions, sorted, for "list"
        self._logging_in: set[str] = set()  # names taken by a login still in progress
        self._presence = PresenceLog(self.store, clock=clock)
        self._connections: set[asyncio.Task[None]] = set()
        self._handlers: dict[type[Any], Callable[[Session, Any], Awaitable[None]]] = {
            ListUsers: self._on_list,
            Whois: self._on_whois,
            Ping: self._on_ping,
            **self.rendezvous.handlers(),
            **self.mail.handlers(),
        }

    # Lifecycle.

    async def start(self) -> None:
        """Open the store and start listening."""
        if self._servers:
            return
        await self.store.start()
        try:
            await self.mail.start()
        except BaseException:
            await self.store.close()
            raise
        try:
            await self.store.reset_presence()
            self._servers = await listen(
                self._serve_connection,
                self.host,
                self.requested_port,
                ssl=self.ssl,
                backlog=self.backlog,
            )
        except BaseException:
            await self.mail.close()
            await self.store.close()
            raise
        self._presence.start()
        logger.info("signalling server listening on %s", ", ".join(self.addresses_text()))

    @property
    def port(self) -> int:
        """The bound port (useful when started with port 0)."""
        return self.addresses()[0][1]

    def addresses(self) -> list[tuple[str, int]]:
        if not self._servers:
            raise RuntimeError("the server is not started")
        return [sock.getsockname()[:2] for server in self._servers for sock in server.sockets]

    def addresses_text(self) -> list[str]:
        return [format_address(h, p) for h, p in self.addresses()]

    @property
    def connection_count(self) -> int:
        """Connections open now: sessions, logins in progress, relays."""
        return len(self._connections)

    @property
    def online_users(self) -> list[str]:
        """Names logged in to this server now, sorted."""
        return list(self._online)

    async def serve_forever(self) -> None:
        """Start if needed and serve until cancelled; closes cleanly on the way out."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop listening, say bye to every peer, close the store."""
        if not self._servers:
            return
        servers, self._servers = self._servers, []
        self._closing = True  # everyone is leaving: no presence news, no new logins
        for server in servers:
            server.close()
        writers = []
        for session in list(self._sessions.values()):
            session.push(Bye(reason="server shutting down"))
            session.finish()
            if session.writer is not None:
                writers.append(session.writer)
        if writers:
            await asyncio.wait(writers, timeout=2.0)
        self.relays.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        self.invitations.clear()
        for server in servers:
            await server.wait_closed()
        await self._presence.close()
        await self.mail.close()
        await self.store.close()
        self._closing = False
        logger.info("signalling server closed")

    async def __aenter__(self) -> SignallingServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Connections.

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        connection = Connection(reader, writer, max_frame=self.max_frame)
        host = connection.remote_address[0] if connection.remote_address else ""
        if len(self._connections) >= self.max_connections:
            connection.log.warning("refused: %d connections already", self.max_connections)
            await connection.fail("too many connections; try again later", code="server_busy")
            return
        if not self.address_limits.connect(host):
            connection.log.warning("refused: too many connections from %s", host)
            await connection.fail(
                f"too many connections from your address ({host}); close some first",
                code=TooManyConnections.code,
            )
            return
        self._connections.add(task)
        session: Session | None = None
        try:
            first = await self._first_message(connection)
            if isinstance(first, Relay):
                await self.relays.serve(connection, first.ticket)
            elif first is not None:
                session = await self._login(connection, first)
                if session is not None:
                    await self._serve_session(session)
        except asyncio.CancelledError:
            pass
        except ProtocolError as exc:
            await connection.fail(exc)
        except RateLimited as exc:
            connection.log.warning("%s", exc)
            if session is not None:  # after the answers already queued, then close
                session.push(Error(code=exc.code, reason=str(exc)))
        except ConnectionClosed as exc:
            connection.log.info("connection ended: %s", exc)
        except Exception:
            connection.log.exception("unexpected error; closing this connection")
        finally:
            try:
                if session is not None:
                    session.leaving = True  # from now on, nothing cancels this cleanup
                    await self._logout(session)
                await connection.close()
            finally:
                self._connections.discard(task)
                self.address_limits.disconnect(host)

    async def _first_message(self, connection: Connection) -> WireMessage | None:
        """The first message (hello, or relay), or None if none came in time."""
        try:
            async with asyncio.timeout(self.hello_timeout):
                return await connection.recv()
        except TimeoutError:
            await connection.fail("no login in time", code="timeout")
            return None

    async def _login(self, connection: Connection, first: WireMessage) -> Session | None:
        """hello, challenge, auth, welcome; None (the connection told why) if refused."""
        try:
            async with asyncio.timeout(self.hello_timeout):
                hello, key = await self._authenticate(connection, first)
        except TimeoutError:
            await connection.fail("no login in time", code="timeout")
            return None
        except ServerRefused as exc:
            await connection.fail(str(exc), code=exc.code)
            return None
        if hello is None:
            return None
        session = Session(
            connection,
            name=hello.name,
            key=key,
            certificate=hello.certificate or "",
            addresses=dial_addresses(hello.addresses, connection.remote_address),
            outbox_size=self.outbox_size,
            traversal=hello.traversal,
        )
        self._logging_in.add(session.name)  # before any await: the name is now taken
        try:
            await self._presence.online(session.name, session.addresses)
        finally:
            self._logging_in.discard(session.name)
        connection.log = type(connection.log)(connection.log.logger, {"conn": session.name})
        host, port = connection.remote_address or ("", 0)
        # Welcome is the first thing queued: only then may news and invitations follow it.
        await session.reply(
            Welcome(version=PROTOCOL_VERSION, name=session.name, observed=host, observed_port=port)
        )
        for other in self._sessions.values():
            other.push(Presence(user=session.name, online=True))
        self._sessions[session.name] = session
        bisect.insort(self._online, session.name)
        session.writer = asyncio.create_task(session.write_outbox())
        connection.log.info("logged in, dialable at %s", session.addresses)
        return session

    async def _authenticate(
        self, connection: Connection, hello: WireMessage
    ) -> tuple[Hello | None, str]:
        """The login proper (``login.py``), then: is that name online already?"""
        hello_checked, key = await authenticate(
            connection, hello, store=self.store, limits=self.address_limits, clock=self.clock
        )
        if hello_checked is not None and (
            hello_checked.name in self._sessions or hello_checked.name in self._logging_in
        ):
            raise NameTaken(f"{hello_checked.name} is logged in already")
        return hello_checked, key

    async def _serve_session(self, session: Session) -> None:
        watchdog = asyncio.create_task(self._watch(session))
        try:
            await self._read_requests(session)
        finally:
            watchdog.cancel()

    async def _watch(self, session: Session) -> None:
        """Drop the session once the peer has been silent too long (gone without a word)."""
        with contextlib.suppress(ConnectionClosed):
            reason = await keep_alive(
                session.connection,
                interval=self.ping_interval,
                timeout=self.ping_timeout,
                send=session.reply,
            )
            session.drop(f"{session.name}: {reason}; dropping it")

    async def _read_requests(self, session: Session) -> None:
        bucket = TokenBucket(*self.rate_limit) if self.rate_limit else None
        warned = 0
        while True:
            message = await session.connection.recv()
            if bucket is not None and not bucket.take():
                warned += 1
                rate = bucket.rate
                if warned > 3:
                    raise RateLimited(f"still more than {rate:g} requests/s; disconnecting")
                request_id = getattr(message, "id", None)
                await session.reply(
                    Error(
                        id=request_id,
                        code=RateLimited.code,
                        reason=f"more than {rate:g} requests/s: slow down",
                    )
                )
                continue
            if isinstance(message, Bye):
                session.connection.log.info("left: %s", message.reason or "bye")
                return
            if isinstance(message, Pong):
                continue  # an answer to our keepalive: hearing it was the point
            handler = self._handlers.get(type(message))
            if handler is None or not isinstance(message, REQUEST_TYPES):
                raise ProtocolError(f"unexpected {type(message).__name__.lower()} message")
            try:
                await handler(session, message)
            except ServerRefused as exc:
                await session.reply(Error(id=message.id, code=exc.code, reason=str(exc)))

    async def _logout(self, session: Session) -> None:
        if self._sessions.get(session.name) is not session:
            return
        del self._sessions[session.name]
        index = bisect.bisect_left(self._online, session.name)
        if index < len(self._online) and self._online[index] == session.name:
            del self._online[index]
        self.rendezvous.logout(session.name)
        self.mail.logout(session.name)
        if not self._closing:
            for other in self._sessions.values():
                other.push(Presence(user=session.name, online=False))
        await session.stop_writer()
        await self._presence.offline(session.name)
        session.connection.log.info("logged out")

    # Requests.

    async def _on_ping(self, session: Session, message: Ping) -> None:
        await session.reply(Pong(id=message.id))

    async def _on_whois(self, session: Session, message: Whois) -> None:
        user = await self.store.get(message.user)
        if user is None or user.key is None:
            raise UnknownUser(f"no user named {message.user} has ever logged in")
        await session.reply(
            Key(
                id=message.id,
                user=user.name,
                key=user.key,
                mailbox_key=user.mailbox_key,
                mailbox_sig=user.mailbox_sig,
            )
        )

    async def _on_list(self, session: Session, message: ListUsers) -> None:
        online = self._online
        await session.reply(
            Users(
                id=message.id, users=online[: self.max_list], truncated=len(online) > self.max_list
            )
        )
