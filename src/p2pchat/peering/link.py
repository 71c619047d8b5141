"""The peer's session with the signalling server: logging in, requests, pushes, and
logging in again whenever the connection drops.

``ServerLink`` is one logged-in connection. ``ServerSession`` keeps one up for as long as
the peer runs: it logs in again with exponential backoff and jitter after a drop, so that
a restarted server is not hit by every peer at once, and reports ``state`` (connected,
reconnecting, offline). Conversations do not depend on it: they are direct connections.

Given several servers (the nodes of one deployment), it logs in to the first that takes
it, and after a drop moves on to the next one, in turn, with the same backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import ssl
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..errors import (
    AuthenticationError,
    ConnectionClosed,
    P2PChatError,
    ProtocolError,
    RemoteProtocolError,
    ServerBusy,
    ServerUnavailable,
    TooManyConnections,
    error_for_code,
)
from ..protocol import (
    PROTOCOL_VERSION,
    Auth,
    Bye,
    Challenge,
    Error,
    Hello,
    Ping,
    Pong,
    Request,
    Welcome,
    WireMessage,
)
from ..shared.connection import Connection, keep_alive
from ..shared.identity import Identity, b64encode, login_challenge_payload
from ..shared.tasks import cancel_and_wait
from .settings import PEER_DEFAULTS, PeerSettings

__all__ = ["ServerLink", "ServerSession", "server_list"]

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=WireMessage)


class ServerLink:
    """One logged-in connection to the server: requests and their answers, and pushes.

    Answers are matched to requests by id; everything else the server sends is a push,
    handed to ``on_push`` in the order it arrives.
    """

    def __init__(
        self,
        connection: Connection,
        on_push: Callable[[WireMessage], None],
        *,
        settings: PeerSettings = PEER_DEFAULTS,
    ) -> None:
        self.connection = connection
        self.on_push = on_push
        self.settings = settings
        """Its limits: ``request_timeout``, ``ping_interval``, ``ping_timeout``."""
        self._watchdog: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[
            str, tuple[asyncio.Future[WireMessage], Callable[[Any], None] | None]
        ] = {}
        self._abandoned: dict[str, None] = {}  # ids of requests given up, oldest first
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.features: frozenset[str] = frozenset()
        """What the server said it understands beyond the base protocol (``welcome``)."""

    def next_id(self) -> str:
        return str(next(self._ids))

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())
        self._watchdog = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        reason = await keep_alive(
            self.connection,
            interval=self.settings.ping_interval,
            timeout=self.settings.ping_timeout,
        )
        logger.warning("the signalling server is silent (%s); dropping the connection", reason)
        self.connection.abort()

    async def request(
        self,
        message: Request,
        answer: type[R],
        *,
        on_answer: Callable[[R], None] | None = None,
    ) -> R:
        """Send ``message`` and return its answer. ``on_answer`` runs as soon as it is read,
        before any later message from the server is handled."""
        if self.closed.is_set():
            raise ConnectionClosed("not connected to the signalling server")
        future: asyncio.Future[WireMessage] = asyncio.get_running_loop().create_future()
        self._waiting[message.id] = (future, on_answer)
        try:
            await self.connection.send(message)
            async with asyncio.timeout(self.settings.request_timeout):
                reply = await future
        except TimeoutError:
            raise ConnectionClosed(
                f"the signalling server did not answer within {self.settings.request_timeout:g} s"
            ) from None
        finally:
            if self._waiting.pop(message.id, None) is not None:  # not answered (yet)
                self._abandoned[message.id] = None  # its answer may still come: not a push
                while len(self._abandoned) > 256:
                    del self._abandoned[next(iter(self._abandoned))]
        if not isinstance(reply, answer):
            raise ProtocolError(f"expected {answer.__name__.lower()}, got {type(reply).__name__}")
        return reply

    async def _read(self) -> None:
        reason: str = "connection closed"
        try:
            while True:
                message = await self.connection.recv()
                answered = getattr(message, "id", None)
                if isinstance(message, Ping):
                    await self.connection.send(Pong(id=message.id))
                elif isinstance(message, Pong) and answered not in self._waiting:
                    pass  # our keepalive was answered
                elif answered is not None and answered in self._waiting:
                    future, on_answer = self._waiting.pop(answered)
                    if isinstance(message, Error):
                        if not future.done():  # done: its asker was cancelled meanwhile
                            future.set_exception(error_for_code(message.code, message.reason))
                    else:
                        if on_answer is not None:
                            on_answer(message)
                        if not future.done():
                            future.set_result(message)
                elif answered is not None and self._abandoned.pop(answered, 0) is None:
                    pass  # the answer to a request whose asker gave up
                elif isinstance(message, Error):
                    raise error_for_code(message.code, message.reason)
                elif isinstance(message, Bye):
                    reason = f"the server said bye: {message.reason}"
                    return
                else:
                    self.on_push(message)
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            if not isinstance(exc, RemoteProtocolError):
                await self.connection.fail(exc)
        except (ConnectionClosed, P2PChatError) as exc:
            reason = str(exc)
        finally:
            logger.info("signalling server session ended: %s", reason)
            if self._watchdog is not None:
                self._watchdog.cancel()
            self.closed.set()
            for future, _ in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionClosed(f"signalling server: {reason}"))
            self._waiting.clear()
            await self.connection.close()

    async def close(self) -> None:
        """Say bye and close."""
        if not self.closed.is_set():
            with contextlib.suppress(ConnectionClosed, ProtocolError):
                await self.connection.send(Bye(reason="logging out"))
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(2.0):
                    await asyncio.shield(self._reader)
            await cancel_and_wait(self._reader)
        await self.connection.close()


class ServerSession:
    """Keeps this peer logged in to one of its servers. ``link()`` is the current
    connection, ``server`` the address it is (or was last) connected to."""

    def __init__(
        self,
        name: str,
        identity: Identity,
        servers: Sequence[tuple[str, int]],
        *,
        addresses: Callable[[], Sequence[tuple[str, int]]],
        on_push: Callable[[WireMessage], None],
        sources: Callable[[], Sequence[tuple[str, int]]] = list,
        traversal: bool = False,
        ssl: ssl.SSLContext | None = None,
        settings: PeerSettings = PEER_DEFAULTS,
    ) -> None:
        if not servers:
            raise ValueError("a peer needs at least one server")
        self.name = name
        self.identity = identity
        self.servers = list(servers)
        self._current = 0
        self.addresses = addresses
        """Where this peer can be dialled, asked at each login."""
        self.sources = sources
        """Where to connect from if possible (the listening port: the NAT mapping the
        server observes is then the listener's, which a hole punch can use)."""
        self.traversal = traversal
        self.observed: tuple[str, int] | None = None
        """Where the server saw this peer come from at the last login."""
        self.on_push = on_push
        self.ssl = ssl
        self.settings = settings
        """Its limits: ``max_frame``, ``connect_timeout``, ``request_timeout``, the pings
        and ``reconnect_delay``."""
        self.state = "offline"
        self.on_state: Callable[[str], None] | None = None
        self.on_login: Callable[[], None] | None = None
        """Called after each login (the first and every one after a drop)."""
        self._link: ServerLink | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._link is not None and not self._link.closed.is_set()

    @property
    def server(self) -> tuple[str, int]:
        """The server in use now (or tried next)."""
        return self.servers[self._current]

    def _next_server(self) -> None:
        self._current = (self._current + 1) % len(self.servers)

    def link(self) -> ServerLink:
        """The live link; raises ConnectionClosed while there is none."""
        if self._link is None or self._link.closed.is_set():
            raise ConnectionClosed(
                f"{self.name} is not connected to the signalling server ({self.state})"
            )
        return self._link

    async def start(self) -> None:
        """Log in to the first server that takes us (raising what stopped the last one, or
        at once a refusal that another node would repeat), then stay logged in."""
        self._closing = False
        for attempt in range(len(self.servers)):
            try:
                self._link = await self._log_in()
                break
            except (OSError, ConnectionClosed, ServerBusy, ServerUnavailable, TooManyConnections):
                if attempt == len(self.servers) - 1:
                    raise
                logger.info("%s: %s:%d does not take us; trying the next", self.name, *self.server)
                self._next_server()
        self._logged_in()
        self._supervisor = asyncio.create_task(self._stay_connected())

    def _logged_in(self) -> None:
        if self.on_login is not None:
            self.on_login()
        self._set_state("connected")

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_state is not None:
                self.on_state(state)

    async def _stay_connected(self) -> None:
        """Whenever the connection drops, log in again: exponential backoff with jitter."""
        while True:
            assert self._link is not None
            await self._link.closed.wait()
            if self._closing:
                return
            if self.settings.reconnect_delay is None:
                self._set_state("offline")
                return
            self._set_state("reconnecting")
            initial, cap = self.settings.reconnect_delay
            for attempt in itertools.count():
                self._next_server()  # the one we lost (or could not reach): try another
                await asyncio.sleep(min(cap, initial * 2**attempt) * random.uniform(0.5, 1.0))
                try:
                    link = await self._log_in()
                except AuthenticationError as exc:
                    logger.error("%s cannot log in again: %s; giving up", self.name, exc)
                    self._set_state("offline")
                    return
                except (P2PChatError, OSError) as exc:
                    host, port = self.server
                    logger.info(
                        "%s: reconnecting to %s:%d (attempt %d): %s",
                        self.name,
                        host,
                        port,
                        attempt + 1,
                        exc,
                    )
                    continue
                if self._closing:
                    await link.close()
                    return
                self._link = link
                break
            logger.info("%s is logged in again", self.name)
            self._logged_in()

    async def _log_in(self) -> ServerLink:
        host, port = self.server
        connection = await Connection.open(
            host,
            port,
            max_frame=self.settings.max_frame,
            timeout=self.settings.connect_timeout,
            tls=self.ssl,
            sources=self.sources(),
        )
        try:
            await connection.send(
                Hello(
                    version=PROTOCOL_VERSION,
                    name=self.name,
                    addresses=list(self.addresses())[:8],
                    certificate=b64encode(self.identity.certificate),
                    mailbox_key=self.identity.mailbox_key,
                    mailbox_sig=self.identity.mailbox_signature,
                    traversal=self.traversal,
                )
            )
            async with asyncio.timeout(self.settings.request_timeout):
                challenge = await connection.expect(Challenge)
                payload = login_challenge_payload(challenge.nonce, self.name, self.identity.key)
                await connection.send(Auth(signature=self.identity.sign(payload)))
                welcome = await connection.expect(Welcome)
            self.observed = (welcome.observed, welcome.observed_port) if welcome.observed else None
        except TimeoutError:
            await connection.close()
            raise ConnectionClosed("the signalling server did not answer the login") from None
        except BaseException:
            await connection.close()
            raise
        link = ServerLink(
            connection,
            self.on_push,
            settings=self.settings,
        )
        link.features = frozenset(welcome.features)
        link.start()
        return link

    async def close(self) -> None:
        """Log out and stop logging in again."""
        self._closing = True
        await cancel_and_wait(self._supervisor)
        self._supervisor = None
        if self._link is not None:
            link, self._link = self._link, None
            await link.close()
        self._set_state("offline")


def server_list(server: tuple[str, int] | Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """One (host, port), or several, as a list; at least one."""
    if not server:
        raise ValueError("a peer needs at least one server")
    first, *rest = server
    if isinstance(first, str) and len(rest) == 1 and isinstance(rest[0], int):
        return [(first, rest[0])]
    servers = [address for address in server if isinstance(address, tuple | list)]
    return [(str(host), int(port)) for host, port in servers]
