"""The door: where other peers' connections come in, and the two sides of the opening
handshake that every connection for an invitation goes through, however it was made.

- ``admit()`` is the inviter's side, always the TLS server: it reads ``starttls`` naming
  an invitation we sent, stops reading clear bytes, upgrades to TLS pinned to the
  invitee's certificate, and takes the invitation only once ``hello`` proves who it is.
  It is the one arbiter of an invitation: whichever connection (dialled in, reversed,
  punched or relayed) proves itself first opens the conversation, and every later one is
  refused (``invitation_gone``), so the invitee can never keep one the inviter dropped.
- ``present()`` is the invitee's side, always the TLS client: ``starttls``, TLS pinned to
  the inviter's certificate, ``hello``, ``welcome``.

A connection our listener accepts starts with ``starttls`` (an invitee dialled us: we
admit it) or with ``reverse`` (an inviter we are trying to reach called us back, or its
punch reached our listener: we present ourselves on it, as if we had dialled).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Protocol

from ..errors import (
    ConnectionClosed,
    IdentityError,
    InvitationGone,
    ProtocolError,
    ServerRefused,
    StoreError,
)
from ..protocol import (
    PROTOCOL_VERSION,
    Hello,
    Proceed,
    PunchNote,
    Reverse,
    StartTls,
    Welcome,
    WireMessage,
)
from ..shared.connection import Connection
from ..shared.identity import Identity, certificate_key, direct_tls_context
from ..shared.sockets import listen
from .settings import PEER_DEFAULTS, PeerSettings

if TYPE_CHECKING:
    from .conversation import Conversation

__all__ = ["Door", "OutgoingInvite", "Target"]

logger = logging.getLogger(__name__)

CLAIM_GRACE: Final = 2.0
"""How long a dial-in may wait for its invitation's ringing to reach us."""


class Target(Protocol):
    """What the invitee knows of an invitation it accepted."""

    id: str
    sender: str
    addresses: list[tuple[str, int]]
    certificate: bytes
    key: str


class Traversing(Protocol):
    """Reversal and punching for one invitation we sent (``punch.CallBack``, which builds
    on this module: a protocol here, so that the door does not import it back)."""

    @property
    def punches(self) -> int:
        """Punches made so far (bounded)."""

    def noted(self, note: PunchNote) -> None: ...


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
        self.attempts: set[asyncio.Task[None]] = set()
        """Our own connections to the invitee under way (reversal, punches)."""
        self.traversal: Traversing | None = None
        """Reversal and punching for this invitation, once the invitee asked for them."""

    def settle(self, chat: Conversation | None, error: BaseException | None = None) -> bool:
        """Hand the outcome to whoever waits in ``invite()``; False if it was settled."""
        if self.conversation.done():
            return False
        if chat is not None:
            self.conversation.set_result(chat)
        else:
            self.conversation.set_exception(error or ConnectionClosed("no conversation"))
        return True

    def stop_attempts(self) -> None:
        """A connection won: the others we opened are not needed any more."""
        current = asyncio.current_task()
        for task in self.attempts:
            if task is not current:
                task.cancel()


Opened = Callable[[str, Connection, str, str], Awaitable["Conversation"]]
"""(contact, connection, contact's key, how it was made) -> the conversation opened on it."""

Call = Callable[[Connection], Awaitable[None]]
"""Takes a connection an inviter opened to us (it said ``reverse``)."""


class Door:
    """The listener, and both sides of the opening handshake."""

    def __init__(
        self,
        name: str,
        identity: Identity,
        *,
        opened: Opened,
        settings: PeerSettings = PEER_DEFAULTS,
    ) -> None:
        self.name = name
        self.identity = identity
        self._opened = opened
        self.settings = settings
        """Its limits: ``max_handshakes``, dial-ins not yet proven (starttls, TLS, hello)
        at once (more are closed at once); ``max_queue`` claims waiting; ``hello_timeout``;
        ``max_frame``."""
        self.outgoing: dict[str, OutgoingInvite] = {}
        """Invitations we sent and that no dial-in has claimed yet, by id."""
        self.calls: dict[str, Call] = {}
        """Invitations we accepted and whose inviter may call us back now, by id."""
        self.dialling_in = 0
        self._claim_waiters: dict[str, asyncio.Future[None]] = {}
        self._listeners: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self, host: str, port: int, *, reuse_port: bool) -> None:
        """Listen (a wildcard host: on both families). ``reuse_port``: so that outgoing
        connections can come from the listening port too."""
        self._listeners = await listen(self._serve, host, port, reuse_port=reuse_port)

    @property
    def listening(self) -> list[tuple[str, int]]:
        """The addresses the listener is bound to."""
        return [sock.getsockname()[:2] for server in self._listeners for sock in server.sockets]

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep ``task`` until it ends; ``close()`` cancels it."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop listening; stop every handshake under way."""
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(reader, writer, max_frame=self.settings.max_frame)
        if self.dialling_in >= self.settings.max_handshakes:
            connection.log.warning("refused: %d dial-ins under way already", self.dialling_in)
            connection.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self.track(task)
        self.dialling_in += 1
        try:
            await self._first(connection)
        finally:
            self.dialling_in -= 1

    async def _first(self, connection: Connection) -> None:
        """Read the first message, and hand the connection to whichever side it needs."""
        try:
            async with asyncio.timeout(self.settings.hello_timeout):
                first: WireMessage = await connection.recv_last_clear()
        except TimeoutError:
            await connection.fail("no valid hello in time", code="timeout")
            return
        except ProtocolError as exc:
            await connection.fail(exc)
            return
        except ConnectionClosed:
            await connection.close()
            return
        if isinstance(first, StartTls):
            await self.admit(connection, "dialled", start=first)
        elif isinstance(first, Reverse) and (call := self.calls.get(first.invitation)):
            connection.resume_reading()  # the clear part goes on: starttls, proceed
            await call(connection)
        elif isinstance(first, Reverse):
            connection.log.info("refused a call back for an invitation we do not reach now")
            await connection.fail("no such invitation is being reached", code="invitation_gone")
        else:
            await connection.fail(ProtocolError("a direct connection must start with starttls"))

    # The inviter's side.

    async def admit(
        self,
        connection: Connection,
        via: str,
        *,
        start: StartTls | None = None,
        invitation: str | None = None,
    ) -> bool:
        """An invitee on ``connection`` (``via``: how it was made): starttls naming an
        invitation (``start`` if read already; ``invitation`` if we opened the connection
        for that one), TLS pinned to the invitee's certificate, then hello. Nothing of a
        chat is read before all of that checks out. Returns whether the other side proved
        to be the invitee (False: refused, and the connection closed)."""
        try:
            async with asyncio.timeout(self.settings.hello_timeout):
                if start is None:
                    first = await connection.recv_last_clear()
                    if not isinstance(first, StartTls):
                        raise ProtocolError("a direct connection must start with starttls")
                    start = first
                if invitation is not None and start.invitation != invitation:
                    raise ProtocolError("starttls names another invitation than ours")
                outgoing = await self._find(start.invitation)
                context = direct_tls_context(self.identity, outgoing.certificate, server_side=True)
                await connection.send(Proceed())
                await connection.start_tls(
                    context, server_side=True, timeout=self.settings.hello_timeout
                )
                hello = await connection.recv()
                if not isinstance(hello, Hello) or hello.invitation != start.invitation:
                    raise ProtocolError("expected hello naming the same invitation")
                if hello.name != outgoing.user or certificate_key_of(connection) != outgoing.key:
                    raise InvitationGone(f"that invitation was not sent to {hello.name}")
                if self.outgoing.get(start.invitation) is not outgoing:
                    raise InvitationGone("that invitation was answered already")
                del self.outgoing[start.invitation]  # proven: used once, now
                outgoing.claimed = True  # from here on, invite() waits for this talk
                outgoing.stop_attempts()
        except TimeoutError:
            await connection.fail("no valid hello in time", code="timeout")
            return False
        except ProtocolError as exc:
            await connection.fail(exc)
            return False
        except InvitationGone as exc:
            connection.log.info("refused a direct connection: %s", exc)
            await connection.fail(str(exc), code=exc.code)
            return False
        except ConnectionClosed as exc:
            connection.log.info("refused a direct connection: %s", exc)
            await connection.close()
            return False
        try:
            await connection.send(Welcome(version=PROTOCOL_VERSION, name=self.name))
            chat = await self._opened(hello.name, connection, outgoing.key, via)
        except (ConnectionClosed, ProtocolError, StoreError) as exc:
            outgoing.settle(None, ConnectionClosed(f"{hello.name} dialled in: {exc}"))
            await connection.close()
            return True
        if not outgoing.settle(chat):  # nobody waits for it any more (invite() gave up)
            await chat.close("the invitation was withdrawn")
        return True

    async def _find(self, invitation: str) -> OutgoingInvite:
        """The pending, vetted invitation ``invitation``. It is not taken here: only once
        the dialler has proven the invitee's key."""
        if invitation not in self.outgoing and len(self._claim_waiters) < self.settings.max_queue:
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

    # The invitee's side.

    async def present(self, connection: Connection, target: Target) -> None:
        """starttls, TLS pinned to the inviter, hello, welcome; on a connection we dialled,
        or one the inviter opened (then a ``reverse`` may come before ``proceed``: on a
        punched connection both sides speak first). Closes the connection if it fails."""
        user = target.sender
        context = direct_tls_context(self.identity, target.certificate, server_side=False)

        def called_back(message: WireMessage) -> bool:
            return isinstance(message, Reverse) and message.invitation == target.id

        try:
            async with asyncio.timeout(self.settings.hello_timeout):
                await connection.send(StartTls(invitation=target.id))
                await connection.expect(Proceed, last_clear=True, skip=called_back)
                await connection.start_tls(
                    context, server_side=False, timeout=self.settings.hello_timeout
                )
                await connection.send(
                    Hello(version=PROTOCOL_VERSION, name=self.name, invitation=target.id)
                )
                welcome = await connection.expect(Welcome)
            if welcome.name != user or certificate_key_of(connection) != target.key:
                raise ProtocolError(f"the other side did not answer as {user}")
        except ServerRefused as exc:
            await connection.close()
            raise InvitationGone(f"{user} refused the connection: {exc}") from None
        except asyncio.CancelledError:
            # Stopped (another way won): dropped at once. A close could wait its 2 s for
            # a TLS handshake that is half done, and the way that won waits for this.
            connection.abort()
            raise
        except BaseException:
            await connection.close()
            raise


def certificate_key_of(connection: Connection) -> str | None:
    """The key of the certificate the other side presented in TLS."""
    certificate = connection.peer_certificate()
    try:
        return certificate_key(certificate) if certificate else None
    except IdentityError:
        return None
