"""The signalling server: who is online, where they can be dialled, and invitations.

It never sees chat content: peers talk over direct connections, encrypted end to end.
Names are bound to keys on first use: a login proves the key by signing a fresh challenge,
and a name bound to one key is refused to every other. For each peer connection
the server reads messages and dispatches them by type to a handler; every answer and every
push goes through the session's bounded outbox, written by one task per session, so that a
peer that stops reading is dropped instead of stalling the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from .connection import Connection, keep_alive
from .errors import (
    AuthenticationError,
    ConnectionClosed,
    IdentityError,
    InvitationGone,
    NameTaken,
    P2PChatError,
    ProtocolError,
    RateLimited,
    RelayUnavailable,
    ServerRefused,
    TooManyInvitations,
    UnknownUser,
    UserOffline,
)
from .identity import (
    b64decode,
    b64encode,
    certificate_key,
    fingerprint,
    login_challenge_payload,
    verify_signature,
)
from .protocol import (
    DEFAULT_MAX_FRAME,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    Accept,
    Accepted,
    Auth,
    Bye,
    Cancel,
    Cancelled,
    Challenge,
    Error,
    Hello,
    Invite,
    Invited,
    Key,
    ListUsers,
    Ok,
    Ping,
    Pong,
    Presence,
    Refuse,
    Refused,
    Relay,
    Relaying,
    RelayOffer,
    RelayRequest,
    RelayTicket,
    Ringing,
    Users,
    Welcome,
    Whois,
    WireMessage,
)
from .store import MemoryUserStore, UserStore

__all__ = ["DEFAULT_PORT", "SignallingServer"]

logger = logging.getLogger(__name__)

DEFAULT_PORT: Final = 5535


class _Session:
    """One logged-in peer: its connection, its name and key, and the outbox written to it."""

    def __init__(self, connection: Connection, hello: Hello, key: str, *, outbox_size: int) -> None:
        self.connection = connection
        self.name = hello.name
        self.key = key
        self.certificate = hello.certificate or ""
        self.addresses = dial_addresses(hello.addresses, connection.remote_address)
        self.outbox: asyncio.Queue[WireMessage | None] = asyncio.Queue(outbox_size)
        self.writer: asyncio.Task[None] | None = None
        self.serving = asyncio.current_task()  # the task reading this peer's requests

    async def reply(self, message: WireMessage) -> None:
        """Queue an answer to this peer's own request, waiting for room: a peer that does
        not read its answers stops being read, and nobody else waits for it."""
        await self.outbox.put(message)

    def push(self, message: WireMessage) -> None:
        """Queue news caused by someone else, never waiting: a peer whose outbox is full
        has stopped reading and is disconnected."""
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            self.drop(f"{self.name} is not reading; disconnecting it")

    def drop(self, reason: str) -> None:
        """Disconnect at once, also stopping a reader that waits for outbox room."""
        self.connection.log.warning("%s", reason)
        self.connection.abort()
        if self.serving is not None and self.serving is not asyncio.current_task():
            self.serving.cancel()

    def finish(self) -> None:
        """Ask the writer to stop once what is queued has been written."""
        try:
            self.outbox.put_nowait(None)
        except asyncio.QueueFull:
            self.drop(f"{self.name} is not reading; disconnecting it")

    async def write_outbox(self) -> None:
        """Write queued messages, a batch per wakeup, until ``finish()`` or a failure."""
        try:
            while True:
                batch = [await self.outbox.get()]
                while not self.outbox.empty():
                    batch.append(self.outbox.get_nowait())
                messages = [m for m in batch if m is not None]
                if messages:
                    await self.connection.send_many(messages)
                if None in batch:
                    return
        except (ConnectionClosed, ProtocolError) as exc:
            self.connection.log.info("cannot write to %s: %s", self.name, exc)
            self.connection.abort()


class _Invitation:
    """An invitation the server has passed on and not yet seen settled."""

    def __init__(self, invitation_id: str, sender: str, recipient: str) -> None:
        self.id = invitation_id
        self.sender = sender
        self.recipient = recipient
        self.accepted = False
        self.expiry: asyncio.TimerHandle | None = None


class _TokenBucket:
    """Allows ``rate`` events per second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class _Relay:
    """Two peers joined through the server: who, their tickets, their connections."""

    def __init__(self, inviter: str, invitee: str) -> None:
        self.users = (inviter, invitee)
        self.tickets = (secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        self.sides: list[Connection] = []
        self.bytes = 0
        self.expiry: asyncio.TimerHandle | None = None
        self.done = asyncio.Event()


def dial_addresses(
    advertised: list[tuple[str, int]], observed: tuple[str, int] | None
) -> list[tuple[str, int]]:
    """Where others can dial a peer: what it advertised, wildcard hosts made concrete."""
    addresses = []
    for host, port in advertised:
        if not host or _is_unspecified(host):
            if observed is None:
                continue
            host = observed[0]
        if (host, port) not in addresses:
            addresses.append((host, port))
    return addresses


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


class SignallingServer:
    """Accepts peers, keeps presence, passes invitations between them.

    ``store`` (default: a new MemoryUserStore) is opened by ``start()`` and closed by
    ``close()``. Use ``async with SignallingServer(...) as server`` or start/close.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        store: UserStore | None = None,
        *,
        ssl: ssl.SSLContext | None = None,
        # Limits
        max_frame: int | None = DEFAULT_MAX_FRAME,
        max_list: int = 1000,
        outbox_size: int = 1024,
        rate_limit: tuple[float, int] | None = (20.0, 200),
        backlog: int = 1024,
        max_connections: int = 4096,
        max_relays: int = 100,
        max_relays_per_user: int = 2,
        max_invitations: int = 16,
        # Timeouts
        hello_timeout: float | None = 10.0,
        invitation_ttl: float = 120.0,
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
        relay_timeout: float = 10.0,
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
        self.max_invitations = max_invitations
        self.backlog = backlog
        self.max_connections = max_connections
        """Connections at once (logged in, logging in, relayed); beyond, server_busy."""
        self.max_relays = max_relays
        """Relayed conversations at once, in total and per user (a relay costs the server
        bandwidth: it is for peers that cannot reach each other, not a default)."""
        self.max_relays_per_user = max_relays_per_user
        """Connections waiting to be accepted: a burst of logins beyond it waits for SYN
        retries (about a second each)."""
        """Invitations pending at once per user, as inviter and as invitee each."""
        self.hello_timeout = hello_timeout
        self.invitation_ttl = invitation_ttl
        self.ping_interval = ping_interval
        self.relay_timeout = relay_timeout
        self.ping_timeout = ping_timeout
        self.clock = clock
        self._server: asyncio.Server | None = None
        self._closing = False
        self._sessions: dict[str, _Session] = {}  # welcomed: they get news and invitations
        self._logging_in: set[str] = set()  # names taken by a login still in progress
        # Who is online, read from the store once and shared by every "list" until the
        # next login or logout here: a burst of lists costs one query, not one each.
        self._online_names: asyncio.Task[list[str]] | None = None
        self._invitations: dict[str, _Invitation] = {}
        self._relays: set[_Relay] = set()
        self._relay_tickets: dict[str, _Relay] = {}
        self._connections: set[asyncio.Task[None]] = set()
        self._handlers: dict[type[Any], Callable[[_Session, Any], Awaitable[None]]] = {
            ListUsers: self._on_list,
            Whois: self._on_whois,
            Invite: self._on_invite,
            Accept: self._on_accept,
            Refuse: self._on_refuse,
            Cancel: self._on_cancel,
            Ping: self._on_ping,
            RelayRequest: self._on_relay_request,
        }

    # Lifecycle.

    async def start(self) -> None:
        """Open the store and start listening."""
        if self._server is not None:
            return
        await self.store.start()
        try:
            await self.store.reset_presence()
            self._server = await asyncio.start_server(
                self._serve_connection,
                self.host,
                self.requested_port,
                ssl=self.ssl,
                backlog=self.backlog,
            )
        except BaseException:
            await self.store.close()
            raise
        logger.info("signalling server listening on %s", ", ".join(self.addresses_text()))

    @property
    def port(self) -> int:
        """The bound port (useful when started with port 0)."""
        return self.addresses()[0][1]

    def addresses(self) -> list[tuple[str, int]]:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return [sock.getsockname()[:2] for sock in self._server.sockets]

    def addresses_text(self) -> list[str]:
        return [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.addresses()]

    @property
    def connection_count(self) -> int:
        """Connections open now: sessions, logins in progress, relays."""
        return len(self._connections)

    @property
    def online_users(self) -> list[str]:
        """Names logged in to this server now, sorted."""
        return sorted(self._sessions)

    async def serve_forever(self) -> None:
        """Start if needed and serve until cancelled; closes cleanly on the way out."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop listening, say bye to every peer, close the store."""
        if self._server is None:
            return
        server, self._server = self._server, None
        self._closing = True  # everyone is leaving: no presence news, no new logins
        server.close()
        writers = []
        for session in list(self._sessions.values()):
            session.push(Bye(reason="server shutting down"))
            session.finish()
            if session.writer is not None:
                writers.append(session.writer)
        if writers:
            await asyncio.wait(writers, timeout=2.0)
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for invitation in self._invitations.values():
            if invitation.expiry is not None:
                invitation.expiry.cancel()
        self._invitations.clear()
        await server.wait_closed()
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
        self._connections.add(task)
        connection = Connection(reader, writer, max_frame=self.max_frame)
        session: _Session | None = None
        if len(self._connections) > self.max_connections:
            connection.log.warning("refused: %d connections already", self.max_connections)
            await connection.fail("too many connections; try again later", code="server_busy")
            self._connections.discard(task)
            return
        try:
            first = await self._first_message(connection)
            if isinstance(first, Relay):
                await self._serve_relay(connection, first)
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
            if session is not None:
                await self._logout(session)
            await connection.close()
            self._connections.discard(task)

    async def _first_message(self, connection: Connection) -> WireMessage | None:
        """The first message (hello, or relay), or None if none came in time."""
        try:
            async with asyncio.timeout(self.hello_timeout):
                return await connection.recv()
        except TimeoutError:
            await connection.fail("no login in time", code="timeout")
            return None

    async def _login(self, connection: Connection, first: WireMessage) -> _Session | None:
        """hello, challenge, auth, welcome; None (the connection told why) if refused."""
        try:
            async with asyncio.timeout(self.hello_timeout):
                hello, key = await self._authenticate(connection, first)
        except TimeoutError:
            await connection.fail("no login in time", code="timeout")
            return None
        except (AuthenticationError, NameTaken) as exc:
            await connection.fail(str(exc), code=exc.code)
            return None
        if hello is None:
            return None
        session = _Session(connection, hello, key, outbox_size=self.outbox_size)
        self._logging_in.add(session.name)  # before any await: the name is now taken
        try:
            await self.store.set_online(session.name, session.addresses, now=self.clock())
        finally:
            self._logging_in.discard(session.name)
        connection.log = type(connection.log)(connection.log.logger, {"conn": session.name})
        observed = connection.remote_address[0] if connection.remote_address else ""
        # Welcome is the first thing queued: only then may news and invitations follow it.
        await session.reply(Welcome(version=PROTOCOL_VERSION, name=session.name, observed=observed))
        for other in self._sessions.values():
            other.push(Presence(user=session.name, online=True))
        self._sessions[session.name] = session
        self._online_names = None
        session.writer = asyncio.create_task(session.write_outbox())
        connection.log.info("logged in, dialable at %s", session.addresses)
        return session

    async def _authenticate(
        self, connection: Connection, hello: WireMessage
    ) -> tuple[Hello | None, str]:
        """Check hello's certificate, and have the peer sign a fresh challenge."""
        if not isinstance(hello, Hello) or hello.invitation is not None:
            raise ProtocolError(f"expected a login hello, got {type(hello).__name__.lower()}")
        if hello.version != PROTOCOL_VERSION:
            await connection.fail(
                f"protocol version {hello.version} is not supported (this server speaks "
                f"{PROTOCOL_VERSION})",
                code="unsupported_version",
            )
            return None, ""
        if not hello.certificate:
            raise AuthenticationError("a login must carry the peer's certificate")
        try:
            key = certificate_key(b64decode(hello.certificate))
        except IdentityError as exc:
            raise AuthenticationError(f"bad certificate: {exc}") from None
        nonce = b64encode(secrets.token_bytes(32))
        await connection.send(Challenge(nonce=nonce))
        auth = await connection.recv()
        if not isinstance(auth, Auth):
            raise ProtocolError(f"expected auth, got {type(auth).__name__.lower()}")
        if not verify_signature(
            key, login_challenge_payload(nonce, hello.name, key), auth.signature
        ):
            connection.log.warning("refused a login as %s: bad signature", hello.name)
            raise AuthenticationError("the signature does not prove that key")
        # The key is checked before the name's presence: an impostor learns nothing more.
        bound = await self.store.bind_key(hello.name, key, now=self.clock())
        if bound != key:
            connection.log.warning(
                "refused a login as %s: key %s presented, %s registered",
                hello.name,
                fingerprint(key),
                fingerprint(bound),
            )
            raise AuthenticationError(f"{hello.name} is registered to another key")
        if hello.name in self._sessions or hello.name in self._logging_in:
            raise NameTaken(f"{hello.name} is logged in already")
        return hello, key

    async def _serve_session(self, session: _Session) -> None:
        watchdog = asyncio.create_task(self._watch(session))
        try:
            await self._read_requests(session)
        finally:
            watchdog.cancel()

    async def _watch(self, session: _Session) -> None:
        """Drop the session once the peer has been silent too long (gone without a word)."""
        reason = await keep_alive(
            session.connection,
            interval=self.ping_interval,
            timeout=self.ping_timeout,
            send=session.reply,
        )
        session.drop(f"{session.name}: {reason}; dropping it")

    async def _read_requests(self, session: _Session) -> None:
        bucket = _TokenBucket(*self.rate_limit, clock=time.monotonic) if self.rate_limit else None
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

    async def _logout(self, session: _Session) -> None:
        if self._sessions.get(session.name) is not session:
            return
        del self._sessions[session.name]
        self._online_names = None
        for invitation in list(self._invitations.values()):
            if invitation.sender == session.name:
                self._settle(
                    invitation,
                    to_recipient=Cancelled(
                        invitation=invitation.id, reason=f"{session.name} went offline"
                    ),
                )
            elif invitation.recipient == session.name:
                self._settle(
                    invitation,
                    to_sender=Refused(
                        invitation=invitation.id, user=session.name, reason="went offline"
                    ),
                )
        if not self._closing:
            for other in self._sessions.values():
                other.push(Presence(user=session.name, online=False))
        if session.writer is not None:
            session.finish()  # what is queued still goes out, briefly
            await asyncio.wait({session.writer}, timeout=1.0)
            session.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session.writer
        with contextlib.suppress(P2PChatError, OSError):
            await self.store.set_offline(session.name, now=self.clock())
        session.connection.log.info("logged out")

    # Requests.

    async def _on_ping(self, session: _Session, message: Ping) -> None:
        await session.reply(Pong(id=message.id))

    async def _on_whois(self, session: _Session, message: Whois) -> None:
        user = await self.store.get(message.user)
        if user is None or user.key is None:
            raise UnknownUser(f"no user named {message.user} has ever logged in")
        await session.reply(Key(id=message.id, user=user.name, key=user.key))

    async def _on_list(self, session: _Session, message: ListUsers) -> None:
        if self._online_names is None:
            self._online_names = asyncio.create_task(self.store.online(limit=self.max_list + 1))
        query = self._online_names
        try:
            names = await asyncio.shield(query)
        except Exception:
            if self._online_names is query:  # not kept: the next list asks the store again
                self._online_names = None
            raise
        await session.reply(
            Users(id=message.id, users=names[: self.max_list], truncated=len(names) > self.max_list)
        )

    async def _on_invite(self, session: _Session, message: Invite) -> None:
        if message.user == session.name:
            raise ServerRefused("you cannot invite yourself")
        invitee = self._sessions.get(message.user)
        if invitee is None:
            if await self.store.get(message.user) is None:
                raise UnknownUser(f"no user named {message.user} has ever logged in")
            raise UserOffline(f"{message.user} is not online")
        for name in (session.name, invitee.name):
            pending = sum(name in (i.sender, i.recipient) for i in self._invitations.values())
            if pending >= self.max_invitations:
                who = "you have" if name == session.name else f"{name} has"
                raise TooManyInvitations(
                    f"{who} {pending} invitations pending already (at most "
                    f"{self.max_invitations}); wait for answers or cancel some"
                )
        invitation = _Invitation(secrets.token_urlsafe(16), session.name, invitee.name)
        self._invitations[invitation.id] = invitation
        invitation.expiry = asyncio.get_running_loop().call_later(
            self.invitation_ttl, self._expire, invitation.id
        )
        await session.reply(
            Ringing(id=message.id, invitation=invitation.id, certificate=invitee.certificate)
        )
        invitee.push(
            Invited(
                invitation=invitation.id,
                sender=session.name,
                addresses=session.addresses,
                certificate=session.certificate,
            )
        )

    def _invitation_for(self, invitation_id: str, *, recipient: str) -> _Invitation:
        invitation = self._invitations.get(invitation_id)
        if invitation is None or invitation.recipient != recipient:
            raise InvitationGone("that invitation was cancelled, expired or answered already")
        return invitation

    async def _on_accept(self, session: _Session, message: Accept) -> None:
        invitation = self._invitation_for(message.invitation, recipient=session.name)
        if invitation.accepted:
            raise InvitationGone("that invitation was accepted already")
        invitation.accepted = True
        if (inviter := self._sessions.get(invitation.sender)) is not None:
            inviter.push(Accepted(invitation=invitation.id, user=session.name))
        await session.reply(Ok(id=message.id))

    async def _on_refuse(self, session: _Session, message: Refuse) -> None:
        # Allowed after accept too: the invitee may find it cannot dial the inviter.
        invitation = self._invitation_for(message.invitation, recipient=session.name)
        self._settle(
            invitation,
            to_sender=Refused(invitation=invitation.id, user=session.name, reason=message.reason),
        )
        await session.reply(Ok(id=message.id))

    async def _on_cancel(self, session: _Session, message: Cancel) -> None:
        invitation = self._invitations.get(message.invitation)
        if invitation is None or invitation.sender != session.name:
            raise InvitationGone("no such invitation of yours is pending")
        self._settle(
            invitation,
            to_recipient=Cancelled(invitation=invitation.id, reason=f"{session.name} cancelled it"),
        )
        await session.reply(Ok(id=message.id))

    # Relay.

    async def _on_relay_request(self, session: _Session, message: RelayRequest) -> None:
        invitation = self._invitation_for(message.invitation, recipient=session.name)
        if not invitation.accepted:
            raise InvitationGone("accept the invitation before asking for a relay")
        inviter = self._sessions.get(invitation.sender)
        if inviter is None:
            raise UserOffline(f"{invitation.sender} is not online")
        if len(self._relays) >= self.max_relays:
            raise RelayUnavailable(
                f"this server relays {len(self._relays)} conversations already, its limit"
            )
        for name in (inviter.name, session.name):
            count = sum(name in relay.users for relay in self._relays)
            if count >= self.max_relays_per_user:
                raise RelayUnavailable(
                    f"{name} has {count} relayed conversations already, the limit per user"
                )
        relay = _Relay(inviter.name, session.name)
        self._relays.add(relay)
        for ticket in relay.tickets:
            self._relay_tickets[ticket] = relay
        relay.expiry = asyncio.get_running_loop().call_later(
            self.relay_timeout, self._end_relay, relay
        )
        inviter_ticket, invitee_ticket = relay.tickets
        inviter.push(RelayOffer(invitation=invitation.id, ticket=inviter_ticket))
        await session.reply(RelayTicket(id=message.id, ticket=invitee_ticket))
        session.connection.log.info("relaying %s <-> %s", inviter.name, session.name)

    async def _serve_relay(self, connection: Connection, message: Relay) -> None:
        """One side of a relay: wait for the other side, then pass bytes along."""
        try:
            async with asyncio.timeout(self.hello_timeout):
                relay, partner = await self._join_relay(connection, message)
        except TimeoutError:
            await connection.fail("the relay did not start in time", code="timeout")
            return
        except RelayUnavailable as exc:
            await connection.fail(str(exc), code=exc.code)
            return
        if partner is not None:
            await self._pass_bytes(relay, connection, partner)
        else:  # the other side does the passing; this connection lives until it is over
            await relay.done.wait()

    async def _join_relay(
        self, connection: Connection, message: Relay
    ) -> tuple[_Relay, Connection | None]:
        """Register one side of a relay; return the other side's connection once both
        are here (the caller then passes bytes), or None for the side that waits."""
        relay = self._relay_tickets.pop(message.ticket, None)
        if relay is None:
            raise RelayUnavailable("unknown or used relay ticket")
        relay.sides.append(connection)
        if len(relay.sides) < 2:
            return relay, None
        if relay.expiry is not None:
            relay.expiry.cancel()
        for side in relay.sides:
            await side.send(Relaying())
        return relay, relay.sides[0]

    async def _pass_bytes(self, relay: _Relay, one: Connection, other: Connection) -> None:
        """Pass bytes both ways, unread, until either side closes."""

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(64 * 1024):
                    relay.bytes += len(data)
                    sink.write(data)
                    await sink.drain()
            sink.close()

        try:
            one_reader, one_writer = one.detach()
            other_reader, other_writer = other.detach()
            await asyncio.gather(pipe(one_reader, other_writer), pipe(other_reader, one_writer))
        finally:
            logger.info("relay %s <-> %s ended after %d bytes", *relay.users, relay.bytes)
            self._end_relay(relay)

    def _end_relay(self, relay: _Relay) -> None:
        if relay.expiry is not None:
            relay.expiry.cancel()
        self._relays.discard(relay)
        for ticket in relay.tickets:
            self._relay_tickets.pop(ticket, None)
        for side in relay.sides:
            side.abort()
        relay.done.set()

    def _expire(self, invitation_id: str) -> None:
        if (invitation := self._invitations.get(invitation_id)) is not None:
            self._settle(
                invitation,
                to_recipient=Cancelled(invitation=invitation_id, reason="the invitation expired"),
            )

    def _settle(
        self,
        invitation: _Invitation,
        *,
        to_sender: WireMessage | None = None,
        to_recipient: WireMessage | None = None,
    ) -> None:
        """Forget ``invitation`` and tell whichever side still needs to know."""
        self._invitations.pop(invitation.id, None)
        if invitation.expiry is not None:
            invitation.expiry.cancel()
        if to_sender is not None and (sender := self._sessions.get(invitation.sender)):
            sender.push(to_sender)
        if to_recipient is not None and (recipient := self._sessions.get(invitation.recipient)):
            recipient.push(to_recipient)
