"""How two peers get connected for an invitation: dialling, the relay, and the door.

The invitee dials the inviter at the addresses the server gave (``reach()``); if that has
not worked after ``relay_after`` seconds, it also asks the server to relay, and keeps
whichever works first. Either way it opens with one clear ``starttls`` naming the
invitation, then TLS 1.3 pinned to the inviter's certificate, then ``hello``.

The inviter's side is the door (``serve()`` on its listener, and the relay's far end): it
reads that ``starttls``, stops reading clear bytes, upgrades to TLS pinned to the
invitee's certificate, and takes the invitation only once ``hello`` proves who dialled.
Only then is a conversation opened, by the ``opened`` callback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final, Protocol

from .connection import Connection
from .errors import (
    ConnectionClosed,
    IdentityError,
    InvitationGone,
    P2PChatError,
    PeerUnreachable,
    ProtocolError,
    RelayUnavailable,
    ServerRefused,
    StoreError,
)
from .identity import Identity, certificate_key, direct_tls_context
from .link import ServerLink
from .protocol import (
    DEFAULT_MAX_FRAME,
    PROTOCOL_VERSION,
    Hello,
    Proceed,
    Relay,
    Relaying,
    RelayOffer,
    RelayRequest,
    RelayTicket,
    StartTls,
    Welcome,
)

if TYPE_CHECKING:
    from .conversation import Conversation

__all__ = ["DialTarget", "OutgoingInvite", "Reach"]

logger = logging.getLogger(__name__)

CLAIM_GRACE: Final = 2.0
"""How long a dial-in may wait for its invitation's ringing to reach us."""


class DialTarget(Protocol):
    """What the invitee knows of an invitation it accepted."""

    id: str
    sender: str
    addresses: list[tuple[str, int]]
    certificate: bytes
    key: str


class OutgoingInvite:
    """An invitation this peer sent: who should dial in, with which certificate, and the
    waiting ``invite()``. ``vetted`` is set once the invitee's key passed our check."""

    def __init__(self, user: str, certificate: bytes) -> None:
        self.user = user
        self.certificate = certificate
        self.key = certificate_key(certificate)
        self.vetted = asyncio.Event()
        self.claimed = False
        """A dial-in has proven it answers this invitation: the talk is being opened."""
        self.conversation: asyncio.Future[Conversation] = asyncio.get_running_loop().create_future()

    def settle(self, chat: Conversation | None, error: BaseException | None = None) -> bool:
        """Hand the outcome to whoever waits in ``invite()``; False if it was settled."""
        if self.conversation.done():
            return False
        if chat is not None:
            self.conversation.set_result(chat)
        else:
            self.conversation.set_exception(error or ConnectionClosed("no conversation"))
        return True


Opened = Callable[[str, Connection, str, str], Awaitable["Conversation"]]
"""(contact, connection, contact's key, route) -> the conversation opened on it."""


class Reach:
    """Dials for invitations we accept, and answers dial-ins for invitations we sent."""

    def __init__(
        self,
        name: str,
        identity: Identity,
        *,
        server: Callable[[], tuple[str, int]],
        servers: Sequence[tuple[str, int]] = (),
        server_ssl: ssl.SSLContext | None,
        link: Callable[[], ServerLink],
        opened: Opened,
        # Limits
        max_frame: int | None = DEFAULT_MAX_FRAME,
        max_handshakes: int = 64,
        max_waiters: int = 1024,
        # Timeouts
        connect_timeout: float | None = 10.0,
        hello_timeout: float | None = 10.0,
        direct_timeout: float | None = 3.0,
        relay_after: float = 1.0,
    ) -> None:
        self.name = name
        self.identity = identity
        self.server = server
        """The server we are logged in to now."""
        self.servers = list(servers)
        """Every server we were given (a relay on one of them is always fine to join)."""
        self.server_ssl = server_ssl
        self._link = link
        self._opened = opened
        self.max_frame = max_frame
        self.max_handshakes = max_handshakes
        """Dial-ins not yet proven (starttls, TLS, hello) at once; more are closed at once."""
        self.max_waiters = max_waiters
        self.connect_timeout = connect_timeout
        self.hello_timeout = hello_timeout
        self.direct_timeout = direct_timeout
        self.relay_after = relay_after
        self.outgoing: dict[str, OutgoingInvite] = {}
        """Invitations we sent and that no dial-in has claimed yet, by id."""
        self.dialling_in = 0
        self._claim_waiters: dict[str, asyncio.Future[None]] = {}
        self._listener: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # The door.

    async def listen(self, host: str, port: int) -> None:
        self._listener = await asyncio.start_server(self._serve_direct, host, port)

    @property
    def listening(self) -> list[tuple[str, int]]:
        """The addresses the listener is bound to."""
        if self._listener is None:
            return []
        return [sock.getsockname()[:2] for sock in self._listener.sockets]

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep ``task`` until it ends; ``close()`` cancels it."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop listening; stop every dial-in and relay under way."""
        if self._listener is not None:
            listener, self._listener = self._listener, None
            listener.close()
            await listener.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for outgoing in self.outgoing.values():
            outgoing.settle(None, ConnectionClosed(f"{self.name} is closing"))
        self.outgoing.clear()

    def invited(self, invitation: str, outgoing: OutgoingInvite) -> None:
        """We sent ``invitation`` (the server's ringing has just been read)."""
        self.outgoing[invitation] = outgoing
        if (waiter := self._claim_waiters.pop(invitation, None)) is not None:
            waiter.set_result(None)

    def relay_offered(self, offer: RelayOffer) -> None:
        """The invitee cannot dial us: meet it through the server's relay."""
        if offer.invitation in self.outgoing:
            self.track(asyncio.create_task(self._answer_relay(offer)))

    async def _serve_direct(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connection = Connection(reader, writer, max_frame=self.max_frame)
        if self.dialling_in >= self.max_handshakes:
            connection.log.warning("refused: %d dial-ins under way already", self.dialling_in)
            connection.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self.track(task)
        self.dialling_in += 1
        try:
            await self._accept(connection, "direct")
        finally:
            self.dialling_in -= 1

    async def _answer_relay(self, offer: RelayOffer) -> None:
        try:
            at = self._relay_node(offer.server)
            connection = await self._relay_connection(offer.ticket, at, tls_server_side=True)
        except (P2PChatError, TimeoutError, OSError) as exc:
            logger.warning("%s cannot join the relay: %s", self.name, exc)
            return
        await self._accept(connection, "relay")

    async def _accept(self, connection: Connection, route: str) -> None:
        """An invitee dials in (directly or through the relay): starttls naming an
        invitation, TLS pinned to the invitee's certificate, then hello. Nothing of a chat
        is read before all of that checks out."""
        try:
            async with asyncio.timeout(self.hello_timeout):
                start = await connection.recv_last_clear()
                if not isinstance(start, StartTls):
                    raise ProtocolError("a direct connection must start with starttls")
                outgoing = await self._find(start.invitation)
                context = direct_tls_context(self.identity, outgoing.certificate, server_side=True)
                await connection.send(Proceed())
                await connection.start_tls(context, timeout=self.hello_timeout)
                hello = await connection.recv()
                if not isinstance(hello, Hello) or hello.invitation != start.invitation:
                    raise ProtocolError("expected hello naming the same invitation")
                if hello.name != outgoing.user or _certificate_key(connection) != outgoing.key:
                    raise InvitationGone(f"that invitation was not sent to {hello.name}")
                if self.outgoing.get(start.invitation) is not outgoing:
                    raise InvitationGone("that invitation was answered already")
                del self.outgoing[start.invitation]  # proven: used once, now
                outgoing.claimed = True  # from here on, invite() waits for this talk
        except TimeoutError:
            await connection.fail("no valid hello in time", code="timeout")
            return
        except ProtocolError as exc:
            await connection.fail(exc)
            return
        except InvitationGone as exc:
            connection.log.warning("refused a direct connection: %s", exc)
            await connection.fail(str(exc), code=exc.code)
            return
        except ConnectionClosed as exc:
            connection.log.warning("refused a direct connection: %s", exc)
            await connection.close()
            return
        try:
            await connection.send(Welcome(version=PROTOCOL_VERSION, name=self.name))
            chat = await self._opened(hello.name, connection, outgoing.key, route)
        except (ConnectionClosed, ProtocolError, StoreError) as exc:
            outgoing.settle(None, ConnectionClosed(f"{hello.name} dialled in: {exc}"))
            await connection.close()
            return
        if not outgoing.settle(chat):  # nobody waits for it any more (invite() gave up)
            await chat.close("the invitation was withdrawn")

    async def _find(self, invitation: str) -> OutgoingInvite:
        """The pending, vetted invitation ``invitation``. It is not taken here: only once
        the dialler has proven the invitee's key."""
        if invitation not in self.outgoing and len(self._claim_waiters) < self.max_waiters:
            # The server's ringing may still be in flight on the server connection.
            waiter = self._claim_waiters.setdefault(
                invitation, asyncio.get_running_loop().create_future()
            )
            try:
                async with asyncio.timeout(CLAIM_GRACE):
                    await asyncio.shield(waiter)
            except TimeoutError:
                pass
            finally:
                if self._claim_waiters.get(invitation) is waiter and not waiter.done():
                    del self._claim_waiters[invitation]
        outgoing = self.outgoing.get(invitation)
        if outgoing is None or outgoing.conversation.done():
            raise InvitationGone("no such invitation is pending")
        await outgoing.vetted.wait()  # the key check in invite(); bounded by the caller
        if self.outgoing.get(invitation) is not outgoing:
            raise InvitationGone("that invitation was withdrawn")
        return outgoing

    # Dialling.

    async def reach(self, target: DialTarget) -> tuple[Connection, str]:
        """Reach the inviter directly or, failing that, through the relay, racing the two
        once direct has had ``relay_after`` seconds; the first to succeed is kept."""
        direct = asyncio.create_task(self._dial(target))
        routes = {direct: "direct"}
        winner: asyncio.Task[Connection] | None = None
        failures: list[str] = []
        try:
            done, _ = await asyncio.wait({direct}, timeout=self.relay_after)
            if done and direct.exception() is None:
                winner = direct
                return direct.result(), "direct"
            routes[asyncio.create_task(self._dial_relay(target))] = "relay"
            pending = set(routes)
            while pending and winner is None:
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    if task.exception() is not None:
                        failures.append(f"{routes[task]}: {task.exception()}")
                    elif winner is None:
                        winner = task
        finally:
            await _keep_only(winner, routes)
        if winner is None:
            errors = [task.exception() for task in routes]  # all done: none won
            refusals = [e.relay_refusal for e in errors if isinstance(e, PeerUnreachable)]
            raise PeerUnreachable(
                f"cannot reach {target.sender}: " + "; ".join(failures),
                relay_refusal=next((r for r in refusals if r), ""),
            )
        return winner.result(), routes[winner]

    async def _dial(self, target: DialTarget) -> Connection:
        """Dial the inviter at the first of its addresses that answers, and present the
        invitation over TLS pinned to the inviter's certificate."""
        failures = []
        for host, port in target.addresses[:8]:
            if (refused := self.refuse_to_dial(host, port)) is not None:
                failures.append(f"{host}:{port}: {refused}")
                continue
            try:
                connection = await Connection.open(
                    host, port, max_frame=self.max_frame, timeout=self.direct_timeout
                )
            except ConnectionClosed as exc:
                failures.append(str(exc))
                continue
            try:
                await self._present(connection, target)
            except (TimeoutError, ConnectionClosed, ProtocolError) as exc:
                failures.append(f"{host}:{port}: {exc or 'no answer in time'}")
                continue
            return connection
        raise PeerUnreachable(
            f"cannot reach {target.sender}: " + ("; ".join(failures) or "no address")
        )

    def refuse_to_dial(self, host: str, port: int) -> str | None:
        """Why an address the inviter advertised is not dialled, or None to dial it.

        The inviter (or a malicious server) chooses these addresses: they must not make us
        knock on privileged services, nor on our own machine unless the server is local.
        """
        if port < 1024:
            return "privileged port, not dialled"
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None  # a host name: resolved by the system, like any other
        if ip.is_unspecified or ip.is_multicast:
            return "not a host address"
        if ip.is_loopback and not _is_loopback(self.server()[0]):
            return "loopback address from a remote server, not dialled"
        return None

    def _relay_node(self, named: tuple[str, int] | None) -> tuple[str, int]:
        """Where to join a relay: the server node that holds it, as the server named it
        (one of our servers, or a host address; loopback only from a loopback server),
        else the server we are logged in to."""
        if named is None:
            return self.server()
        host, port = named
        if (host, port) in self.servers:
            return host, port
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host, port  # a host name: resolved by the system, like any other
        if ip.is_unspecified or ip.is_multicast or port == 0:
            raise PeerUnreachable(f"the relay: {host}:{port} is not a host address")
        if ip.is_loopback and not _is_loopback(self.server()[0]):
            raise PeerUnreachable(f"the relay: loopback {host} from a remote server")
        return host, port

    async def _dial_relay(self, target: DialTarget) -> Connection:
        """Meet the inviter through the server's relay; the TLS inside is ours, end to end."""
        try:
            link = self._link()
            ticket = await link.request(
                RelayRequest(id=link.next_id(), invitation=target.id), RelayTicket
            )
            at = self._relay_node(ticket.server)
            connection = await self._relay_connection(ticket.ticket, at, tls_server_side=False)
            await self._present(connection, target)
        except RelayUnavailable as exc:
            raise PeerUnreachable(f"the relay: {exc}", relay_refusal=str(exc)) from exc
        except (P2PChatError, TimeoutError) as exc:
            raise PeerUnreachable(f"the relay: {exc or 'no answer'}") from exc
        logger.info("%s reaches %s through the relay", self.name, target.sender)
        return connection

    async def _relay_connection(
        self, ticket: str, at: tuple[str, int], *, tls_server_side: bool
    ) -> Connection:
        """A new connection to the server node ``at``, joined by it to the other peer's."""
        host, port = at
        connection = await Connection.open(
            host,
            port,
            max_frame=self.max_frame,
            timeout=self.connect_timeout,
            tls=self.server_ssl,
            tls_server_side=tls_server_side,
        )
        try:
            await connection.send(Relay(ticket=ticket))
            async with asyncio.timeout(self.hello_timeout):
                await connection.expect(Relaying)
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _present(self, connection: Connection, target: DialTarget) -> None:
        """The invitee's side of a dial-in: starttls, TLS pinned to the inviter, hello."""
        user = target.sender
        context = direct_tls_context(self.identity, target.certificate, server_side=False)
        try:
            async with asyncio.timeout(self.hello_timeout):
                await connection.send(StartTls(invitation=target.id))
                await connection.expect(Proceed, last_clear=True)
                await connection.start_tls(context, timeout=self.hello_timeout)
                await connection.send(
                    Hello(version=PROTOCOL_VERSION, name=self.name, invitation=target.id)
                )
                welcome = await connection.expect(Welcome)
            if welcome.name != user or _certificate_key(connection) != target.key:
                raise ProtocolError(f"the other side did not answer as {user}")
        except ServerRefused as exc:
            await connection.close()
            raise InvitationGone(f"{user} refused the connection: {exc}") from None
        except BaseException:
            await connection.close()
            raise


async def _keep_only(
    winner: asyncio.Task[Connection] | None, attempts: Iterable[asyncio.Task[Connection]]
) -> None:
    """Stop the attempts other than ``winner`` and drop any connection they made. If we
    are cancelled meanwhile, the attempts still end and are dropped, and we stay cancelled.
    """
    losers = [task for task in attempts if task is not winner]
    for task in losers:
        task.cancel()
        task.add_done_callback(_drop_connection)
    if losers:
        await asyncio.wait(losers)


def _drop_connection(task: asyncio.Task[Connection]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().abort()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _certificate_key(connection: Connection) -> str | None:
    """The key of the certificate the other side presented in TLS."""
    certificate = connection.peer_certificate()
    try:
        return certificate_key(certificate) if certificate else None
    except IdentityError:
        return None
