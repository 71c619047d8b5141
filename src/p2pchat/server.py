"""The signalling server: who is online, where they can be dialled, and invitations.

It never sees chat content: peers talk over direct connections, encrypted end to end.
Names are bound to keys on first use: a login proves the key by signing a fresh challenge,
and a name bound to one key (whatever its case) is refused to every other. For each peer
connection the server reads messages and dispatches them by type
(``serving/request_loop.py``); answers and pushes are written by the session, bounded
(``serving/session.py``). Invitations live in ``stores/invitations.py``, relays in
``serving/relay.py``, per-address bounds in ``serving/limits.py``, logouts in
``serving/departures.py``: this module puts the parts in ``serving/`` together.

Alone, a server keeps who is online and the pending invitations in its own memory. Given
``redis=URL`` it is one node of several: users and keys, the mailbox, pending invitations
and who is logged in where live in that Redis (``cluster/redis_store.py``,
``cluster/redis_cluster.py``): any node serves any user, a push reaches them on whichever
node they are, and the domain logic only talks to the ``Cluster`` interface
(``cluster/base.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import ssl
import time
from collections.abc import Callable
from typing import Any, Unpack

from .cluster.base import Cluster, LocalCluster
from .cluster.redis_client import RedisClient
from .errors import (
    ConnectionClosed,
    ProtocolError,
    RateLimited,
    TooManyConnections,
)
from .protocol import (
    DEFAULT_PORT,
    Bye,
    Error,
    Relay,
)
from .serving.departures import Departures
from .serving.directory import Directory
from .serving.limits import AddressLimits
from .serving.login import LoginDesk
from .serving.mailbox import MailService
from .serving.rates import RedisRates
from .serving.relay import RelayHub
from .serving.rendezvous import Rendezvous
from .serving.request_loop import RequestLoop
from .serving.session import PresenceLog, Session, Sessions
from .serving.settings import ServerLimits, ServerSettings
from .serving.stats import ServerStats
from .shared.connection import Connection
from .shared.sockets import format_address, is_wildcard, listen
from .store import Mailbox, MemoryUserStore, UserStore
from .stores.invitations import InvitationBook, Invitations, LocalInvitations
from .stores.sqlite_server import mailbox_for

__all__ = ["DEFAULT_PORT", "ServerLimits", "ServerSettings", "SignallingServer"]

logger = logging.getLogger(__name__)

NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


class SignallingServer:
    """Accepts peers, keeps presence, passes invitations between them, keeps sealed mail.

    ``store`` (default: in memory) and ``mailbox`` (default: a SqliteMailbox beside a
    SqliteUserStore, else in memory) are opened by start() and closed by close(), or by
    ``async with SignallingServer(...) as server``.

    ``redis="redis://HOST:PORT/DB"`` (or ``rediss://`` for TLS, ``unix://PATH``) makes this
    server one node of several sharing that Redis (under ``redis_prefix``): then ``store``
    and ``mailbox`` are the Redis ones. ``node_id`` names this node (default: random);
    ``advertise`` is the address other peers reach this node at, named in relay tickets
    (default with Redis: the address it listens on; a wildcard host needs it, else
    ValueError). ``metrics=(host, port)`` serves Prometheus metrics and ``/healthz`` there
    (``serving/metrics.py``; needs prometheus-client).

    Limits and timeouts are keywords (``ServerLimits``; defaults and ranges in
    ``ServerSettings``), or one ``settings=ServerSettings(...)`` that keywords beside it
    override; checked once, kept as ``server.settings`` and handed to the parts.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        store: UserStore | None = None,
        *,
        mailbox: Mailbox | None = None,
        ssl: ssl.SSLContext | None = None,
        redis: str | None = None,
        redis_prefix: str = "p2pchat",
        node_id: str | None = None,
        advertise: tuple[str, int] | None = None,
        metrics: tuple[str, int] | None = None,
        clock: Callable[[], float] = time.time,
        settings: ServerSettings | None = None,
        **limits: Unpack[ServerLimits],
    ) -> None:
        self.settings = ServerSettings.build(settings, limits)
        """Every limit and timeout, checked once (ValueError for one out of range): each a
        keyword (``ServerLimits``), or all in ``settings``, which keywords given beside
        override. Each part below reads its own from it."""
        node_id = node_id if node_id is not None else secrets.token_hex(4)
        if NODE_ID.match(node_id) is None:
            raise ValueError(f"invalid node id {node_id!r}: 1 to 64 letters, digits, . _ -")
        if redis is not None and advertise is None and is_wildcard(host):
            # Relay tickets name this node's address: a wildcard names no address at all.
            raise ValueError(
                f"a node of several listening on every address ({host or '*'}) must be told "
                "where peers reach it, named in its relay tickets: --advertise HOST:PORT "
                "(advertise=(host, port))"
            )
        self.host = host
        self.requested_port = port
        self.ssl = ssl
        self.node_id = node_id
        self.advertise = advertise
        self.metrics_address = metrics
        self.clock = clock
        self.started_at = 0.0
        self._servers: list[asyncio.Server] = []  # one per family for a wildcard host
        self._metrics: Any = None  # metrics.MetricsServer, when serving metrics
        self._connections: set[asyncio.Task[None]] = set()
        self._assemble(self.settings, store, mailbox, redis, redis_prefix)

    def _assemble(
        self,
        settings: ServerSettings,
        store: UserStore | None,
        mailbox: Mailbox | None,
        redis: str | None,
        redis_prefix: str,
    ) -> None:
        """Make the parts, each handed the settings it reads its limits from."""
        self.address_limits = AddressLimits(settings)
        """Per address (an IPv6 /64): connections at once, and new names over time. Not
        applied to ``trusted_networks`` (default: loopback). With several nodes, each node
        applies them to its own connections."""
        self.invitations = InvitationBook(
            max_sent=settings.max_invitations,
            max_received=settings.max_invitations,
            max_per_pair=settings.max_invitations_per_pair,
        )
        """Invitations pending on this server alone (with Redis they are kept there)."""
        book: Invitations = LocalInvitations(self.invitations)
        self.cluster: Cluster = LocalCluster(self.node_id)
        self.redis: RedisClient | None = None
        if redis is not None:
            if store is not None or mailbox is not None:
                raise ValueError("with redis=..., users and mail are kept in Redis: no store")
            from .cluster.redis_cluster import redis_backends

            self.redis, store, mailbox, book, self.cluster = redis_backends(
                redis,
                prefix=redis_prefix,
                node_id=self.node_id,
                max_connections=settings.redis_connections,
                timeout=settings.redis_timeout,
                heartbeat_interval=settings.heartbeat_interval,
                node_ttl=settings.node_ttl,
                max_invitations=settings.max_invitations,
                max_invitations_per_pair=settings.max_invitations_per_pair,
            )
        self.store: UserStore = store if store is not None else MemoryUserStore()
        self.stats = ServerStats()
        self.sessions = Sessions(self.node_id, settings=settings)
        """Logged in on this server: they get news and invitations."""
        self.cluster.attach(self.sessions)
        self.relays = RelayHub(settings)
        self.rendezvous = Rendezvous(
            self.cluster, self.store, book, self.relays, stats=self.stats, settings=settings
        )
        self.mail = MailService(
            self.cluster,
            self.store,
            mailbox if mailbox is not None else mailbox_for(self.store),
            settings=settings,
            rates=RedisRates(self.redis) if self.redis is not None else None,
            clock=self.clock,
        )
        """Sealed mail for users who are away (kept by name: in Redis with several nodes)."""
        self._presence = PresenceLog(self.store, clock=self.clock)
        self.logins = LoginDesk(
            store=self.store,
            limits=self.address_limits,
            sessions=self.sessions,
            cluster=self.cluster,
            presence=self._presence,
            stats=self.stats,
            settings=settings,
            clock=self.clock,
        )
        self.departures = Departures(
            sessions=self.sessions,
            cluster=self.cluster,
            rendezvous=self.rendezvous,
            presence=self._presence,
        )
        """Logouts, and the clean-up after users of dead nodes."""
        self.sessions.on_reaped = self.departures.reaped
        directory = Directory(self.store, self.cluster, self.sessions, settings=settings)
        self.requests = RequestLoop(
            {**directory.handlers(), **self.rendezvous.handlers(), **self.mail.handlers()},
            stats=self.stats,
            settings=settings,
        )

    # Lifecycle.

    async def start(self) -> None:
        """Open the stores, join the cluster, then start listening."""
        if self._servers:
            return
        async with contextlib.AsyncExitStack() as undo:
            await self.store.start()
            undo.push_async_callback(self.store.close)
            await self.mail.start()
            undo.push_async_callback(self.mail.close)
            if isinstance(self.cluster, LocalCluster):
                await self.store.reset_presence()  # alone: nobody is logged in yet
            # Joined first (which may wait for a crashed predecessor's heartbeat to
            # expire, then clear what it left): a login taken before would be erased.
            await self.cluster.start()
            undo.push_async_callback(self.cluster.close)
            self._servers = await listen(
                self._serve_connection,
                self.host,
                self.requested_port,
                ssl=self.ssl,
                backlog=self.settings.backlog,
            )
            undo.push_async_callback(self._stop_listening)
            self.rendezvous.relay_address = self._relay_address()  # from the bound address
            if self.metrics_address is not None:
                from .serving.metrics import MetricsServer

                self._metrics = MetricsServer(self, *self.metrics_address)
                await self._metrics.start()
            undo.pop_all()
        self._presence.start()
        self.requests.start(self.sessions)
        self.started_at = time.time()
        logger.info(
            "signalling server %s listening on %s%s",
            self.node_id,
            ", ".join(self.addresses_text()),
            f" (Redis {self.redis!r})" if self.redis is not None else "",
        )

    async def _stop_listening(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
            await server.wait_closed()

    def _relay_address(self) -> tuple[str, int] | None:
        """Where peers join this node's relays: ``advertise``, or with several nodes the
        address listened on (never a wildcard: refused then); alone, none: where they are."""
        if self.advertise is not None:
            return self.advertise
        if isinstance(self.cluster, LocalCluster):
            return None
        return self.addresses()[0]

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
    def metrics_port(self) -> int:
        """The port the metrics are served on (useful with port 0)."""
        if self._metrics is None:
            raise RuntimeError("this server serves no metrics (metrics=(host, port))")
        port: int = self._metrics.port
        return port

    @property
    def connection_count(self) -> int:
        """Connections open now: sessions, logins in progress, relays."""
        return len(self._connections)

    @property
    def online_users(self) -> list[str]:
        """Names logged in to this server (this node) now, sorted."""
        return sorted(self.sessions.by_name)

    async def serve_forever(self) -> None:
        """Start if needed and serve until cancelled; closes cleanly on the way out."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop listening, say bye to every peer, leave the cluster, close the stores."""
        if not self._servers:
            return
        servers, self._servers = self._servers, []
        self.sessions.closing = True  # everyone is leaving: no presence news, no new logins
        for server in servers:
            server.close()
        if self._metrics is not None:
            await self._metrics.close()
            self._metrics = None
        for session in list(self.sessions.by_name.values()):
            session.push(Bye(reason="server shutting down"))  # flushed as each closes
        await self.requests.close()
        self.relays.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self.rendezvous.close()
        for server in servers:
            await server.wait_closed()
        await self._presence.close()
        await self.cluster.close()
        await self.mail.close()
        await self.store.close()
        self.sessions.closing = False
        logger.info("signalling server %s closed", self.node_id)

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
        connection = Connection(reader, writer, max_frame=self.settings.max_frame)
        host = connection.remote_address[0] if connection.remote_address else ""
        if len(self._connections) >= (most := self.settings.max_connections):
            connection.log.warning("refused: %d connections already", most)
            self.stats.refusals["server_busy"] += 1
            await connection.fail("too many connections; try again later", code="server_busy")
            return
        if not self.address_limits.connect(host):
            connection.log.warning("refused: too many connections from %s", host)
            self.stats.refusals[TooManyConnections.code] += 1
            await connection.fail(
                f"too many connections from your address ({host}); close some first",
                code=TooManyConnections.code,
            )
            return
        self._connections.add(task)
        session: Session | None = None
        try:
            first = await self.logins.first_message(connection)
            if isinstance(first, Relay):
                await self.relays.serve(connection, first.ticket)
            elif first is not None:
                session = await self.logins.login(connection, first)
                del first  # the hello: not kept for as long as the session lasts
                if session is not None:
                    await self.requests.serve(session)
        except asyncio.CancelledError:
            pass
        except ProtocolError as exc:
            self.stats.protocol_errors[exc.code] += 1
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
                    await self.departures.logout(session)
                await connection.close()
            except asyncio.CancelledError:
                # Cancelled again while closing: asyncio's handler must not end cancelled.
                connection.abort()
            finally:
                self._connections.discard(task)
                self.address_limits.disconnect(host)
