"""A chat peer: logs in to a signalling server and talks to other peers directly.

``Peer`` holds the server session, a listener for direct connections and the dialler.
``Invitation`` is one received invitation, to accept or refuse. ``Conversation`` is one
direct connection with another user.

Every peer has an Identity (an Ed25519 key). It proves its name to the server by signing a
challenge; direct connections are TLS 1.3 where each side accepts only the certificate the
server vouched for in that invitation; and each peer remembers its contacts' keys, refusing
a changed one (KeyChanged) unless told to trust it.

Delivery is at-least-once on the wire and exactly-once in the stores: a message is stored
(unshipped) before it is sent and marked shipped when its ``ack`` comes back; a receiver
stores a message (ignoring an id it has) before it acks it, and hands only new ids to the
application. Unshipped messages are resent, in order, when the two users next talk.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import itertools
import logging
import random
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from typing import Any, Final, TypeVar

from .connection import Connection, keep_alive
from .errors import (
    AuthenticationError,
    ConnectionClosed,
    ConversationClosed,
    IdentityError,
    InvitationGone,
    InviteRefused,
    InviteTimeout,
    KeyChanged,
    MessageTooLarge,
    P2PChatError,
    PeerUnreachable,
    ProtocolError,
    RelayUnavailable,
    RemoteProtocolError,
    ServerRefused,
    StoreError,
    error_for_code,
)
from .identity import (
    Identity,
    b64decode,
    b64encode,
    certificate_key,
    direct_tls_context,
    fingerprint,
    login_challenge_payload,
)
from .protocol import (
    DEFAULT_MAX_FRAME,
    DEFAULT_PORT,
    PROTOCOL_VERSION,
    Accept,
    Accepted,
    Ack,
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
    Msg,
    Ok,
    Ping,
    Pong,
    Presence,
    Proceed,
    Refuse,
    Refused,
    Relay,
    Relaying,
    RelayOffer,
    RelayRequest,
    RelayTicket,
    Request,
    Ringing,
    StartTls,
    Users,
    Welcome,
    Whois,
    WireMessage,
    check_name,
)
from .store import MemoryMessageStore, Message, MessageStore

__all__ = ["Conversation", "Invitation", "Peer"]

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=WireMessage)
T = TypeVar("T")

DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024
"""Largest chat message body, in UTF-8 bytes; well under the frame limit."""

CLAIM_GRACE: Final = 2.0
"""How long a dialled-in hello may wait for its invitation's ringing to reach us."""


class _ServerLink:
    """The peer's session with the signalling server: requests, answers and pushes."""

    def __init__(
        self,
        connection: Connection,
        on_push: Callable[[WireMessage], None],
        *,
        request_timeout: float | None,
        ping_interval: float,
        ping_timeout: float,
    ) -> None:
        self.connection = connection
        self.on_push = on_push
        self.request_timeout = request_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._watchdog: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[
            str, tuple[asyncio.Future[WireMessage], Callable[[Any], None] | None]
        ] = {}
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    def next_id(self) -> str:
        return str(next(self._ids))

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())
        self._watchdog = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        reason = await keep_alive(
            self.connection, interval=self.ping_interval, timeout=self.ping_timeout
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
            async with asyncio.timeout(self.request_timeout):
                reply = await future
        except TimeoutError:
            raise ConnectionClosed(
                f"the signalling server did not answer within {self.request_timeout:g} s"
            ) from None
        finally:
            self._waiting.pop(message.id, None)
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
                        future.set_exception(error_for_code(message.code, message.reason))
                    else:
                        if on_answer is not None:
                            on_answer(message)
                        future.set_result(message)
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
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.connection.close()


class _OutgoingInvite:
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


class Invitation:
    """An invitation received from ``sender``; answer it once with accept() or refuse()."""

    def __init__(self, peer: Peer, invited: Invited) -> None:
        self._peer = peer
        self.id = invited.invitation
        self.sender = invited.sender
        self.addresses = list(invited.addresses)
        self.certificate = b64decode(invited.certificate)
        self.key = certificate_key(self.certificate)
        self.fingerprint = fingerprint(self.key)
        """The fingerprint of the key the server vouches for as ``sender``'s."""
        self.cancelled: str | None = None
        self.answered = False

    def __repr__(self) -> str:
        return f"<Invitation {self.id} from {self.sender}>"

    async def accept(self, *, trust_new_key: bool = False) -> Conversation:
        """Dial the inviter and return the conversation.

        Raises KeyChanged (the invitation stays unanswered) if the inviter's key is not the
        one remembered, unless ``trust_new_key``; InvitationGone if it was cancelled or
        answered; PeerUnreachable if no address of the inviter can be dialled (the inviter
        is told).
        """
        await self._peer._vet_key(self.sender, self.key, trust_new_key=trust_new_key)
        self._answer()
        link = self._peer._server_link()
        await link.request(Accept(id=link.next_id(), invitation=self.id), Ok)
        try:
            connection, route = await self._peer._reach(self)
        except (PeerUnreachable, asyncio.CancelledError) as exc:
            # The inviter learns only that we cannot reach it, not what we tried: the
            # addresses it advertised must not become a way to probe our network.
            reason = "gave up"
            if isinstance(exc, PeerUnreachable):
                relay = f" (the relay: {exc.relay_refusal})" if exc.relay_refusal else ""
                reason = f"cannot reach you{relay}"
            self._peer._refuse_later(self.id, reason)
            raise
        return await self._peer._open_conversation(self.sender, connection, self.key, route)

    async def refuse(self, reason: str = "") -> None:
        """Tell the inviter no."""
        self._answer()
        link = self._peer._server_link()
        await link.request(Refuse(id=link.next_id(), invitation=self.id, reason=reason), Ok)

    def _answer(self) -> None:
        if self.cancelled is not None:
            raise InvitationGone(f"the invitation from {self.sender} is gone: {self.cancelled}")
        if self.answered:
            raise InvitationGone(f"the invitation from {self.sender} was answered already")
        self.answered = True


class _Inbox:
    """Messages received and stored, not yet taken by the application.

    A stored message is never dropped: a stored batch goes in whole, and the bound
    (``limit``) holds back reading from the network instead (``wait_for_room()``). Taking
    is safe to cancel: a message leaves the inbox only in the step that returns it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: collections.deque[Message] = collections.deque()
        self._changed = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put_all(self, messages: Iterable[Message]) -> None:
        self._items.extend(messages)
        self._changed.set()

    def close(self) -> None:
        """Nothing more will arrive; what is here can still be taken."""
        self._closed = True
        self._changed.set()

    async def get(self) -> Message | None:
        """The oldest message, waiting for one; None once closed and empty."""
        while not self._items:
            if self._closed:
                return None
            self._changed.clear()
            await self._changed.wait()
        message = self._items.popleft()
        self._changed.set()  # there is room now
        return message

    async def wait_for_room(self) -> None:
        """Wait until the application has taken enough to hold another batch."""
        while len(self._items) >= self.limit and not self._closed:
            self._changed.clear()
            await self._changed.wait()


class Conversation:
    """A direct connection with one other user.

    ``send()`` stores then sends; ``receive()`` (or ``async for``) yields the messages
    received, each exactly once. Either side may ``close()``; the other then sees
    ConversationClosed once it has read what arrived before.
    """

    def __init__(
        self, owner: Peer, contact: str, connection: Connection, route: str = "direct"
    ) -> None:
        self._owner = owner
        self.peer = contact
        self.route = route
        """``direct``, or ``relay`` when joined through the server (still end-to-end TLS)."""
        self._connection = connection
        self._store = owner.store
        self._inbox = _Inbox(owner.max_queue)
        self._outgoing: asyncio.Queue[tuple[Message, asyncio.Future[Message]]] = asyncio.Queue(
            owner.max_queue
        )
        self._closed = asyncio.Event()
        self._unacked: set[str] = set()
        self._all_acked = asyncio.Event()
        self._all_acked.set()
        self.close_reason = ""
        self._tasks: list[asyncio.Task[None]] = []
        self.log = connection.log

    def __repr__(self) -> str:
        state = f"closed: {self.close_reason}" if self.closed else "open"
        return f"<Conversation {self._owner.name} <-> {self.peer} {self.route} ({state})>"

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._receive_loop()),
            asyncio.create_task(self._send_loop()),
            asyncio.create_task(self._watch()),
        ]

    async def _watch(self) -> None:
        """End the conversation once the other side has been silent too long."""
        reason = await keep_alive(
            self._connection,
            interval=self._owner.ping_interval,
            timeout=self._owner.ping_timeout,
        )
        self._finish(f"no answer from {self.peer}: {reason}")
        self._connection.abort()

    # Sending.

    async def send(self, body: str) -> Message:
        """Store ``body`` as a message to the other user, then send it; return the message.

        Returned once it is stored and written. If the connection drops meanwhile it stays
        unshipped and is resent next time. Raises ConversationClosed if already closed.
        """
        self._owner.check_body(body)
        if self.closed:
            raise ConversationClosed(
                f"conversation with {self.peer} is closed: {self.close_reason}"
            )
        message = self._owner._new_message(self.peer, body)
        done: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        await self._outgoing.put((message, done))
        if self.closed:  # it closed while we waited for room: nobody will take this one
            self._fail_queued()
        return await done

    async def _send_loop(self) -> None:
        """Resend the backlog, then store and send new messages in order, a batch at a time."""
        try:
            backlog = await self._store.unshipped(self._owner.name, self.peer)
            if backlog:
                self.log.info("resending %d unshipped messages to %s", len(backlog), self.peer)
                for start in range(0, len(backlog), 256):
                    chunk = backlog[start : start + 256]
                    self._expect_acks(chunk)
                    await self._connection.send_many([_wire(m) for m in chunk])
            while True:
                batch = [await self._outgoing.get()]
                while not self._outgoing.empty() and len(batch) < 256:
                    batch.append(self._outgoing.get_nowait())
                await self._store_batch(batch)
                self._expect_acks([message for message, _ in batch])
                try:
                    await self._connection.send_many([_wire(message) for message, _ in batch])
                finally:
                    for message, done in batch:  # stored: unshipped until acked, sent or not
                        if not done.done():
                            done.set_result(message)
        except (ConnectionClosed, ProtocolError) as exc:
            self._finish(f"connection lost: {exc}")
        except P2PChatError as exc:
            self.log.error("cannot send to %s: %s", self.peer, exc)
            self._finish(f"store failed: {exc}")

    def _expect_acks(self, messages: list[Message]) -> None:
        self._unacked.update(m.id for m in messages)
        if self._unacked:
            self._all_acked.clear()

    async def wait_acknowledged(self) -> None:
        """Wait until the other side has acknowledged (stored) everything sent so far in
        this conversation, backlog included. Raises ConversationClosed if it ends first:
        what is not acknowledged stays unshipped and is resent next time."""
        await self._unless_closed(self._all_acked.wait())
        if not self._all_acked.is_set():
            raise ConversationClosed(
                f"conversation with {self.peer} closed with {len(self._unacked)} messages "
                f"unacknowledged: {self.close_reason}"
            )

    async def _store_batch(self, batch: list[tuple[Message, asyncio.Future[Message]]]) -> None:
        """Store a batch of outgoing messages in one transaction.

        If the conversation closes meanwhile, the write still ends and each sender learns
        the truth: send() returns a message only if it is stored (then unshipped until the
        next talk) and raises only if it is not, so retrying never makes a duplicate.
        """
        batch_messages = [m for m, _ in batch]
        # Awaited on every path below, after a cancellation too.
        writing = asyncio.create_task(self._store.add_many(batch_messages))
        try:
            await asyncio.shield(writing)
        except asyncio.CancelledError:
            await asyncio.wait({writing})  # closing: let the write end, then report it
            self._settle(batch, writing)
            raise
        except Exception:
            self._settle(batch, writing)
            raise

    def _settle(
        self, batch: list[tuple[Message, asyncio.Future[Message]]], writing: asyncio.Task[object]
    ) -> None:
        """Resolve the senders of a batch that will not be sent now."""
        error: BaseException | None = None
        if writing.cancelled():
            error = ConversationClosed(f"conversation with {self.peer} closed before storing")
        elif writing.exception() is not None:
            error = writing.exception()
        for message, done in batch:
            if not done.done():
                if error is None:
                    done.set_result(message)
                else:
                    done.set_exception(error)

    # Receiving.

    async def receive(self) -> Message:
        """The next message from the other user. Raises ConversationClosed at the end,
        once every message received before has been returned. Safe to cancel: a message
        is taken only by the call that returns it."""
        message = await self._inbox.get()
        if message is None:
            raise ConversationClosed(
                f"conversation with {self.peer} is closed: {self.close_reason}"
            )
        return message

    async def _unless_closed(self, waiting: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """Wait for ``waiting`` or for the conversation to close, whichever comes first;
        return its task, done, or cancelled if the conversation closed first."""
        task = asyncio.ensure_future(waiting)
        closing = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({task, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not task.done():
                task.cancel()
        return task

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            try:
                yield await self.receive()
            except ConversationClosed:
                return

    async def _receive_loop(self) -> None:
        owner, contact = self._owner, self.peer
        reason = "closed by the other side"
        try:
            while True:
                await self._inbox.wait_for_room()  # a slow reader holds back the sender
                batch = await self._connection.recv_batch()
                arrived: list[Message] = []
                acked: list[str] = []
                leaving: str | None = None
                for wire in batch:
                    if isinstance(wire, Msg):
                        owner.check_body(wire.body, remote=True)
                        arrived.append(
                            Message(
                                id=wire.id,
                                sender=contact,
                                recipient=owner.name,
                                body=wire.body,
                                sent_at=wire.ts,
                                shipped=True,
                            )
                        )
                    elif isinstance(wire, Ack):
                        # Only for what we sent in this conversation (and so to this user).
                        acked.extend(i for i in wire.ids if i in self._unacked)
                    elif isinstance(wire, Ping):
                        await self._connection.send(Pong(id=wire.id))
                    elif isinstance(wire, Pong):
                        pass
                    elif isinstance(wire, Bye):
                        leaving = f"{contact} left" + (f": {wire.reason}" if wire.reason else "")
                        break
                    elif isinstance(wire, Error):
                        leaving = f"{contact} reported an error: {wire.reason}"
                        break
                    else:
                        raise ProtocolError(f"unexpected {type(wire).__name__.lower()} in a chat")
                if arrived:
                    await self._store_received(arrived)  # durable before the ack
                    try:
                        await self._connection.send(Ack(ids=[m.id for m in arrived]))
                    except ConnectionClosed:
                        if leaving is None:
                            raise
                        # They said bye already: unacked, they will resend, and we dedup.
                if acked:
                    await self._store.mark_shipped(contact, acked)
                    self._unacked.difference_update(acked)
                    if not self._unacked:
                        self._all_acked.set()
                    if owner.on_shipped is not None:
                        owner.on_shipped(contact, list(acked))
                if leaving is not None:
                    reason = leaving
                    return
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            if not isinstance(exc, RemoteProtocolError):
                await self._connection.fail(exc)
        except ConnectionClosed as exc:
            reason = f"connection lost: {exc}"
        except P2PChatError as exc:
            reason = f"store failed: {exc}"
            self.log.error("conversation with %s: %s", contact, reason)
        finally:
            self._finish(reason)
            await self._connection.close()

    async def _store_received(self, arrived: list[Message]) -> None:
        """Store a received batch; what is new goes to the inbox the moment it is stored,
        even if this conversation is closed meanwhile (then it is read before the end)."""
        writing = asyncio.ensure_future(self._store.add_many(arrived))
        writing.add_done_callback(self._deliver_stored)
        await asyncio.shield(writing)

    def _deliver_stored(self, writing: asyncio.Future[list[Message]]) -> None:
        if not writing.cancelled() and writing.exception() is None:
            self._inbox.put_all(writing.result())

    # Closing.

    def _finish(self, reason: str) -> None:
        """Mark closed, stop the tasks, fail queued sends that were never stored."""
        if self.closed:
            return
        self.close_reason = reason
        self._closed.set()
        self._inbox.close()
        self.log.info("conversation with %s ended: %s", self.peer, reason)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._fail_queued()
        self._owner._forget(self)

    def _fail_queued(self) -> None:
        """Fail the sends still queued: they were never stored, so nothing is kept."""
        while not self._outgoing.empty():
            _, done = self._outgoing.get_nowait()
            if not done.done():
                done.set_exception(
                    ConversationClosed(f"conversation with {self.peer}: {self.close_reason}")
                )

    async def close(self, reason: str = "") -> None:
        """Leave the conversation: tell the other side, close the connection."""
        if not self.closed:
            self._finish(reason or "closed")
            with contextlib.suppress(ConnectionClosed, ProtocolError):
                async with asyncio.timeout(1.0):
                    await self._connection.send(Bye(reason=reason))
        await self._connection.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_closed(self) -> None:
        """Wait until the conversation ends, whoever ends it."""
        await self._closed.wait()

    async def __aenter__(self) -> Conversation:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _wire(message: Message) -> Msg:
    return Msg(id=message.id, ts=message.sent_at, body=message.body)


def _succeeded(future: asyncio.Future[Conversation]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


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


async def _expect(connection: Connection, kind: type[R], *, last_clear: bool = False) -> R:
    """The next message, which must be a ``kind``; an error message is raised as such.
    ``last_clear``: the last message before a TLS upgrade (see recv_last_clear)."""
    message = await (connection.recv_last_clear() if last_clear else connection.recv())
    if isinstance(message, Error):
        raise error_for_code(message.code, message.reason)
    if not isinstance(message, kind):
        raise ProtocolError(
            f"expected {kind.__name__.lower()}, got {type(message).__name__.lower()}"
        )
    return message


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


class Peer:
    """One user of p2pchat: a session with the signalling server and direct conversations.

    ``store`` (default: a new MemoryMessageStore) is opened by ``start()`` and closed by
    ``close()``. ``identity`` (default: a new one, in memory only) is the key the name is
    bound to on the server: keep it (``Identity.load_or_create``) to keep the name.
    ``server_ssl`` runs the server connection over TLS with that context. ``listen`` is
    where other peers dial in; ``advertise`` overrides the addresses given to the server
    (default: the listener's own, a wildcard host replaced by the one the server sees).
    """

    def __init__(
        self,
        name: str,
        server: tuple[str, int] = ("127.0.0.1", DEFAULT_PORT),
        listen: tuple[str, int] = ("127.0.0.1", 0),
        store: MessageStore | None = None,
        *,
        identity: Identity | None = None,
        server_ssl: ssl.SSLContext | None = None,
        advertise: Sequence[tuple[str, int]] | None = None,
        # Limits
        max_frame: int | None = DEFAULT_MAX_FRAME,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_queue: int = 1024,
        max_invitations: int = 64,
        max_handshakes: int = 64,
        # Timeouts
        connect_timeout: float | None = 10.0,
        request_timeout: float | None = 15.0,
        hello_timeout: float | None = 10.0,
        direct_timeout: float | None = 3.0,
        relay_after: float = 1.0,
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
        reconnect_delay: tuple[float, float] | None = (0.2, 10.0),
    ) -> None:
        self.name = check_name(name)
        self.server_address = server
        self.listen_address = listen
        self.store: MessageStore = store if store is not None else MemoryMessageStore()
        self.identity = identity if identity is not None else Identity.generate()
        self.server_ssl = server_ssl
        self.advertise = list(advertise) if advertise is not None else None
        self.max_frame = max_frame
        self.max_message_size = max_message_size
        self.max_queue = max_queue
        self.max_handshakes = max_handshakes
        """Dial-ins not yet proven (starttls, TLS, hello) at once; more are closed at once."""
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.hello_timeout = hello_timeout
        self.direct_timeout = direct_timeout
        """How long dialling one of the inviter's addresses may take."""
        self.relay_after = relay_after
        """If dialling directly has not succeeded by then, the relay is tried alongside."""
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.reconnect_delay = reconnect_delay
        self.on_presence: Callable[[str, bool], None] | None = None
        """Called with (user, online) when the server says someone logged in or out."""
        self.on_state: Callable[[str], None] | None = None
        """Called with the new ``state`` when the server connection is lost or back."""
        self.state = "offline"
        """``connected``, ``reconnecting`` (conversations go on meanwhile) or ``offline``."""
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self.on_invitation_cancelled: Callable[[Invitation], None] | None = None
        """Called when a received invitation is withdrawn (``invitation.cancelled`` says why)."""
        self.on_shipped: Callable[[str, list[str]], None] | None = None
        """Called with (contact, message ids) once ``contact`` has acknowledged (stored)
        those messages of ours: their ``shipped`` flag is now set in the store."""
        self._link: _ServerLink | None = None
        self._listener: asyncio.Server | None = None
        self._invitations: asyncio.Queue[Invitation] = asyncio.Queue(max_invitations)
        self._received: dict[str, Invitation] = {}
        self._outgoing: dict[str, _OutgoingInvite] = {}
        self._claim_waiters: dict[str, asyncio.Future[None]] = {}
        self._conversations: dict[str, Conversation] = {}
        self._contact_locks: dict[str, asyncio.Lock] = {}
        self._handshakes: set[asyncio.Task[None]] = set()
        self._dialling_in = 0
        self._held: dict[str, Invitation] = {}  # crossed invitations, by sender

    def __repr__(self) -> str:
        return f"<Peer {self.name} {'online' if self.connected else 'offline'}>"

    # Lifecycle.

    async def start(self) -> None:
        """Open the store, listen for direct connections, log in to the server."""
        if self._link is not None:
            return
        await self.store.start()
        self._closing = False
        try:
            host, port = self.listen_address
            self._listener = await asyncio.start_server(self._on_direct_connection, host, port)
            self._link = await self._log_in()
        except BaseException:
            await self._close_listener()
            await self.store.close()
            raise
        self._set_state("connected")
        self._supervisor = asyncio.create_task(self._stay_connected())
        logger.info("%s logged in; listening on %s", self.name, self.listening)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_state is not None:
                self.on_state(state)

    async def _stay_connected(self) -> None:
        """Whenever the server connection drops, log in again: exponential backoff with
        jitter, so that a restarted server is not hit by every peer at the same instant."""
        while True:
            assert self._link is not None
            await self._link.closed.wait()
            if self._closing:
                return
            if self.reconnect_delay is None:
                self._set_state("offline")
                return
            self._set_state("reconnecting")
            initial, cap = self.reconnect_delay
            for attempt in itertools.count():
                await asyncio.sleep(min(cap, initial * 2**attempt) * random.uniform(0.5, 1.0))
                try:
                    link = await self._log_in()
                except AuthenticationError as exc:
                    logger.error("%s cannot log in again: %s; giving up", self.name, exc)
                    self._set_state("offline")
                    return
                except (P2PChatError, OSError) as exc:
                    logger.info("%s: reconnecting (attempt %d): %s", self.name, attempt + 1, exc)
                    continue
                if self._closing:
                    await link.close()
                    return
                self._link = link
                break
            logger.info("%s is logged in again", self.name)
            self._set_state("connected")

    @property
    def listening(self) -> list[tuple[str, int]]:
        """The addresses the direct-connection listener is bound to."""
        if self._listener is None:
            return []
        return [sock.getsockname()[:2] for sock in self._listener.sockets]

    @property
    def fingerprint(self) -> str:
        """This peer's fingerprint, for others to compare with what their server shows."""
        return self.identity.fingerprint

    @property
    def connected(self) -> bool:
        """True while the session with the signalling server is up."""
        return self._link is not None and not self._link.closed.is_set()

    async def _log_in(self) -> _ServerLink:
        host, port = self.server_address
        connection = await Connection.open(
            host, port, max_frame=self.max_frame, timeout=self.connect_timeout, tls=self.server_ssl
        )
        try:
            addresses = self.advertise if self.advertise is not None else self.listening
            await connection.send(
                Hello(
                    version=PROTOCOL_VERSION,
                    name=self.name,
                    addresses=list(addresses)[:8],
                    certificate=b64encode(self.identity.certificate),
                )
            )
            async with asyncio.timeout(self.request_timeout):
                challenge = await _expect(connection, Challenge)
                payload = login_challenge_payload(challenge.nonce, self.name, self.identity.key)
                await connection.send(Auth(signature=self.identity.sign(payload)))
                await _expect(connection, Welcome)
        except TimeoutError:
            await connection.close()
            raise ConnectionClosed("the signalling server did not answer the login") from None
        except BaseException:
            await connection.close()
            raise
        link = _ServerLink(
            connection,
            self._on_push,
            request_timeout=self.request_timeout,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
        )
        link.start()
        return link

    async def close(self) -> None:
        """Leave every conversation, log out, stop listening, close the store."""
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for chat in list(self._conversations.values()):
            await chat.close("logging out")
        for outgoing in self._outgoing.values():
            if not outgoing.conversation.done():
                outgoing.conversation.set_exception(ConnectionClosed(f"{self.name} is closing"))
        self._outgoing.clear()
        if self._link is not None:
            link, self._link = self._link, None
            await link.close()
        await self._close_listener()
        for task in list(self._handshakes):
            task.cancel()
        await asyncio.gather(*self._handshakes, return_exceptions=True)
        await self.store.close()
        self._set_state("offline")

    async def _close_listener(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            listener.close()
            await listener.wait_closed()

    async def __aenter__(self) -> Peer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Server requests.

    def _server_link(self) -> _ServerLink:
        if self._link is None or self._link.closed.is_set():
            raise ConnectionClosed(
                f"{self.name} is not connected to the signalling server ({self.state})"
            )
        return self._link

    async def whois(self, user: str) -> str:
        """The key the server has bound to ``user`` (compare ``fingerprint(key)`` with them)."""
        link = self._server_link()
        return (await link.request(Whois(id=link.next_id(), user=user), Key)).key

    async def known_key(self, user: str) -> str | None:
        """The key remembered for ``user`` from earlier conversations, if any."""
        return await self.store.known_key(self.name, user)

    async def trust_key(self, user: str, key: str) -> None:
        """Remember ``key`` as ``user``'s, replacing a key remembered before."""
        await self.store.remember_key(self.name, user, key, now=time.time())

    async def _vet_key(self, user: str, key: str, *, trust_new_key: bool) -> None:
        """Raise KeyChanged if ``user`` is known with another key (and that is not trusted)."""
        known = await self.known_key(user)
        if known is None or known == key:
            return
        if trust_new_key:
            logger.warning("%s: trusting a new key for %s: %s", self.name, user, fingerprint(key))
            await self.trust_key(user, key)
            return
        raise KeyChanged(user, fingerprint(known), fingerprint(key), key)

    async def online(self) -> list[str]:
        """Names of the users online now, sorted (this peer included)."""
        link = self._server_link()
        return (await link.request(ListUsers(id=link.next_id()), Users)).users

    async def invite(
        self, user: str, timeout: float | None = 30.0, *, trust_new_key: bool = False
    ) -> Conversation:
        """Invite ``user`` and return the conversation once they accept and dial in.

        Raises UnknownUser, UserOffline, InviteRefused, KeyChanged (the invitation is
        cancelled) if ``user``'s key is not the one remembered, unless ``trust_new_key``, or
        InviteTimeout (after cancelling) if there is no answer within ``timeout`` seconds.
        """
        for received in self.pending_invitations():
            if received.sender == user:  # they asked first: say yes rather than ask back
                return await received.accept(trust_new_key=trust_new_key)
        link = self._server_link()
        pending: list[_OutgoingInvite] = []
        invitation = ""

        def register(ringing: Ringing) -> None:  # before the invitee can possibly dial in
            nonlocal invitation
            invitation = ringing.invitation
            try:
                outgoing = _OutgoingInvite(user, b64decode(ringing.certificate))
            except IdentityError as exc:
                logger.warning("the server vouched a bad certificate for %s: %s", user, exc)
                return
            pending.append(outgoing)
            self._outgoing[invitation] = outgoing
            if (waiter := self._claim_waiters.pop(invitation, None)) is not None:
                waiter.set_result(None)
            for received in self.pending_invitations():
                if received.sender == user:  # theirs reached us before our ringing did
                    self._cross(received, invitation, outgoing)
                    break

        await link.request(Invite(id=link.next_id(), user=user), Ringing, on_answer=register)
        if not pending:
            await self._cancel(invitation)
            raise ProtocolError(f"the server vouched an invalid certificate for {user}")
        outgoing = pending[0]
        try:
            await self._vet_key(user, outgoing.key, trust_new_key=trust_new_key)
        except KeyChanged:
            self._outgoing.pop(invitation, None)
            await self._cancel(invitation)
            raise
        outgoing.vetted.set()
        try:
            try:
                async with asyncio.timeout(timeout):
                    return await asyncio.shield(outgoing.conversation)
            except TimeoutError:
                if not outgoing.claimed:
                    self._outgoing.pop(invitation, None)  # a dial-in from now on is refused
                    await self._cancel(invitation)
                    raise InviteTimeout(f"{user} did not answer within {timeout:g} s") from None
            # A dial-in proved itself before the time ran out: the talk it opens is ours.
            return await asyncio.shield(outgoing.conversation)
        except asyncio.CancelledError:
            self._abandon(invitation, outgoing)
            raise
        finally:
            self._outgoing.pop(invitation, None)
            if not _succeeded(outgoing.conversation):
                self._release_held(user)

    def _abandon(self, invitation: str, outgoing: _OutgoingInvite) -> None:
        """invite() was cancelled: withdraw the invitation, or close the talk it opens."""
        self._outgoing.pop(invitation, None)
        if outgoing.claimed:
            outgoing.conversation.add_done_callback(self._close_unwanted)
        else:
            self._track(asyncio.create_task(self._cancel(invitation)))

    def _close_unwanted(self, opened: asyncio.Future[Conversation]) -> None:
        if _succeeded(opened):
            self._track(asyncio.create_task(opened.result().close("the invitation was withdrawn")))

    async def _cancel(self, invitation: str) -> None:
        with contextlib.suppress(P2PChatError):
            link = self._server_link()
            await link.request(Cancel(id=link.next_id(), invitation=invitation), Ok)

    async def next_invitation(self) -> Invitation:
        """Wait for the next invitation received."""
        return await self._invitations.get()

    def pending_invitations(self) -> list[Invitation]:
        """Invitations received and neither answered nor cancelled, oldest first."""
        return [i for i in self._received.values() if not i.answered and i.cancelled is None]

    def _on_push(self, message: WireMessage) -> None:
        if isinstance(message, Invited):
            invitation = Invitation(self, message)
            if (crossing := self._invite_pending_to(message.sender)) is not None:
                self._cross(invitation, *crossing)
            else:
                self._offer(invitation)
        elif isinstance(message, Cancelled):
            received = self._received.pop(message.invitation, None)
            for sender, held in list(self._held.items()):
                if held.id == message.invitation:
                    received = self._held.pop(sender)
            if received is not None:
                received.cancelled = message.reason or "cancelled"
                if self.on_invitation_cancelled is not None and not received.answered:
                    self.on_invitation_cancelled(received)
        elif isinstance(message, Refused):
            outgoing = self._outgoing.get(message.invitation)
            if outgoing is not None:  # a claimed one is no longer here: its talk is opening
                outgoing.settle(None, InviteRefused(message.user, message.reason))
        elif isinstance(message, Accepted):
            pass  # a notice only: the invitee's dial-in (or relay) is what opens the talk
        elif isinstance(message, RelayOffer):
            if message.invitation in self._outgoing:
                self._track(asyncio.create_task(self._answer_relay(message)))
        elif isinstance(message, Presence):
            if self.on_presence is not None:
                self.on_presence(message.user, message.online)
        else:
            logger.warning("ignoring unexpected %s from the server", type(message).__name__)

    def _offer(self, invitation: Invitation) -> None:
        """Hand a received invitation to the application (``next_invitation()``)."""
        try:
            self._invitations.put_nowait(invitation)
        except asyncio.QueueFull:
            logger.warning("too many unanswered invitations; refusing %s", invitation.sender)
            self._refuse_later(invitation.id, "too many pending invitations")
            return
        self._received[invitation.id] = invitation
        while len(self._received) > 4 * self._invitations.maxsize:
            self._received.pop(next(iter(self._received)))

    def _invite_pending_to(self, user: str) -> tuple[str, _OutgoingInvite] | None:
        for invitation_id, outgoing in self._outgoing.items():
            if outgoing.user == user and not outgoing.claimed:
                return invitation_id, outgoing
        return None

    def _cross(self, invitation: Invitation, invitation_id: str, outgoing: _OutgoingInvite) -> None:
        """We invited ``invitation.sender`` while they invited us. Both sides decide alike:
        the invitation of the name that sorts first stands; the other side accepts it and
        withdraws its own. Without this each side would open a talk and close the other."""
        if self.name > invitation.sender:
            self._track(asyncio.create_task(self._merge(invitation, invitation_id, outgoing)))
        elif invitation.id not in self._received:  # not shown yet: shown if ours fails
            self._held[invitation.sender] = invitation
        # else: shown already; they will accept ours and withdraw theirs

    async def _merge(
        self, invitation: Invitation, invitation_id: str, outgoing: _OutgoingInvite
    ) -> None:
        """Accept their invitation and let our own invite() return that conversation."""
        try:
            chat = await invitation.accept()
        except KeyChanged:
            self._offer(invitation)  # the application decides whether to trust the key
            return
        except P2PChatError as exc:
            logger.info("%s: crossed invitations with %s: %s", self.name, invitation.sender, exc)
            return  # ours still stands: they show it once theirs has failed
        if self._outgoing.get(invitation_id) is outgoing:
            del self._outgoing[invitation_id]
        if outgoing.settle(chat):
            await self._cancel(invitation_id)
        else:  # our invite() ended meanwhile: nobody wants this talk
            await chat.close("the invitation was withdrawn")

    def _release_held(self, user: str) -> None:
        """Our invitation to ``user`` failed: show theirs, if it still stands."""
        held = self._held.pop(user, None)
        if held is not None and held.cancelled is None and not held.answered:
            self._offer(held)

    def _refuse_later(self, invitation: str, reason: str) -> None:
        async def refuse() -> None:
            with contextlib.suppress(P2PChatError):
                link = self._server_link()
                await link.request(
                    Refuse(id=link.next_id(), invitation=invitation, reason=reason), Ok
                )

        self._track(asyncio.create_task(refuse()))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    # Direct connections.

    async def _reach(self, invitation: Invitation) -> tuple[Connection, str]:
        """Reach the inviter directly or, failing that, through the relay, racing the two
        once direct has had ``relay_after`` seconds; the first to succeed is kept."""
        direct = asyncio.create_task(self._dial(invitation))
        routes = {direct: "direct"}
        winner: asyncio.Task[Connection] | None = None
        failures: list[str] = []
        try:
            done, _ = await asyncio.wait({direct}, timeout=self.relay_after)
            if done and direct.exception() is None:
                winner = direct
                return direct.result(), "direct"
            routes[asyncio.create_task(self._dial_relay(invitation))] = "relay"
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
                f"cannot reach {invitation.sender}: " + "; ".join(failures),
                relay_refusal=next((r for r in refusals if r), ""),
            )
        return winner.result(), routes[winner]

    async def _dial(self, invitation: Invitation) -> Connection:
        """Dial the inviter at the first of its addresses that answers, and present the
        invitation over TLS pinned to the inviter's certificate."""
        failures = []
        for host, port in invitation.addresses[:8]:
            if (refused := self._refuse_to_dial(host, port)) is not None:
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
                await self._present(connection, invitation)
            except (TimeoutError, ConnectionClosed, ProtocolError) as exc:
                failures.append(f"{host}:{port}: {exc or 'no answer in time'}")
                continue
            return connection
        raise PeerUnreachable(
            f"cannot reach {invitation.sender}: " + ("; ".join(failures) or "no address")
        )

    def _refuse_to_dial(self, host: str, port: int) -> str | None:
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
        if ip.is_loopback and not _is_loopback(self.server_address[0]):
            return "loopback address from a remote server, not dialled"
        return None

    async def _dial_relay(self, invitation: Invitation) -> Connection:
        """Meet the inviter through the server's relay; the TLS inside is ours, end to end."""
        link = self._server_link()
        try:
            ticket = await link.request(
                RelayRequest(id=link.next_id(), invitation=invitation.id), RelayTicket
            )
            connection = await self._relay_connection(ticket.ticket, tls_server_side=False)
            await self._present(connection, invitation)
        except RelayUnavailable as exc:
            raise PeerUnreachable(f"the relay: {exc}", relay_refusal=str(exc)) from exc
        except (P2PChatError, TimeoutError) as exc:
            raise PeerUnreachable(f"the relay: {exc or 'no answer'}") from exc
        logger.info("%s reaches %s through the relay", self.name, invitation.sender)
        return connection

    async def _relay_connection(self, ticket: str, *, tls_server_side: bool) -> Connection:
        """A new connection to the server, joined by it to the other peer's."""
        host, port = self.server_address
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
                await _expect(connection, Relaying)
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _present(self, connection: Connection, invitation: Invitation) -> None:
        """The invitee's side of a dial-in: starttls, TLS pinned to the inviter, hello."""
        user = invitation.sender
        context = direct_tls_context(self.identity, invitation.certificate, server_side=False)
        try:
            async with asyncio.timeout(self.hello_timeout):
                await connection.send(StartTls(invitation=invitation.id))
                await _expect(connection, Proceed, last_clear=True)
                await connection.start_tls(context, timeout=self.hello_timeout)
                await connection.send(
                    Hello(version=PROTOCOL_VERSION, name=self.name, invitation=invitation.id)
                )
                welcome = await _expect(connection, Welcome)
            if welcome.name != user or _certificate_key(connection) != invitation.key:
                raise ProtocolError(f"the other side did not answer as {user}")
        except ServerRefused as exc:
            await connection.close()
            raise InvitationGone(f"{user} refused the connection: {exc}") from None
        except BaseException:
            await connection.close()
            raise

    async def _on_direct_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        connection = Connection(reader, writer, max_frame=self.max_frame)
        if self._dialling_in >= self.max_handshakes:
            connection.log.warning("refused: %d dial-ins under way already", self._dialling_in)
            connection.abort()
            return
        self._track(task)
        self._dialling_in += 1
        try:
            await self._accept_dial_in(connection, "direct")
        finally:
            self._dialling_in -= 1

    async def _answer_relay(self, offer: RelayOffer) -> None:
        """The invitee cannot dial us: meet it through the server's relay."""
        try:
            connection = await self._relay_connection(offer.ticket, tls_server_side=True)
        except (P2PChatError, TimeoutError, OSError) as exc:
            logger.warning("%s cannot join the relay: %s", self.name, exc)
            return
        await self._accept_dial_in(connection, "relay")

    async def _accept_dial_in(self, connection: Connection, route: str) -> None:
        """An invitee dials in (directly or through the relay): starttls naming an
        invitation, TLS pinned to the invitee's certificate, then hello. Nothing of a chat
        is read before all of that checks out."""
        try:
            async with asyncio.timeout(self.hello_timeout):
                start = await connection.recv_last_clear()
                if not isinstance(start, StartTls):
                    raise ProtocolError("a direct connection must start with starttls")
                outgoing = await self._find_invitation(start.invitation)
                context = direct_tls_context(self.identity, outgoing.certificate, server_side=True)
                await connection.send(Proceed())
                await connection.start_tls(context, timeout=self.hello_timeout)
                hello = await connection.recv()
                if not isinstance(hello, Hello) or hello.invitation != start.invitation:
                    raise ProtocolError("expected hello naming the same invitation")
                if hello.name != outgoing.user or _certificate_key(connection) != outgoing.key:
                    raise InvitationGone(f"that invitation was not sent to {hello.name}")
                if self._outgoing.get(start.invitation) is not outgoing:
                    raise InvitationGone("that invitation was answered already")
                del self._outgoing[start.invitation]  # proven: used once, now
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
            chat = await self._open_conversation(hello.name, connection, outgoing.key, route)
        except (ConnectionClosed, ProtocolError, StoreError) as exc:
            outgoing.settle(None, ConnectionClosed(f"{hello.name} dialled in: {exc}"))
            await connection.close()
            return
        if not outgoing.settle(chat):  # nobody waits for it any more (invite() gave up)
            await chat.close("the invitation was withdrawn")

    async def _find_invitation(self, invitation: str) -> _OutgoingInvite:
        """The pending, vetted invitation ``invitation``. It is not taken here: only once
        the dialler has proven the invitee's key."""
        if invitation not in self._outgoing and len(self._claim_waiters) < self.max_queue:
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
        outgoing = self._outgoing.get(invitation)
        if outgoing is None or outgoing.conversation.done():
            raise InvitationGone("no such invitation is pending")
        await outgoing.vetted.wait()  # the key check in invite(); bounded by the caller
        if self._outgoing.get(invitation) is not outgoing:
            raise InvitationGone("that invitation was withdrawn")
        return outgoing

    async def _open_conversation(
        self, contact: str, connection: Connection, key: str, route: str = "direct"
    ) -> Conversation:
        await self.store.remember_key(self.name, contact, key, now=time.time())
        async with self._contact_lock(contact):
            if (old := self._conversations.get(contact)) is not None:
                await old.close("replaced by a new conversation")
            chat = Conversation(self, contact, connection, route)
            self._conversations[contact] = chat
            chat._start()  # reads first, then resends the backlog, so neither side blocks
        logger.info("%s is talking with %s (%s)", self.name, contact, route)
        return chat

    def _forget(self, chat: Conversation) -> None:
        if self._conversations.get(chat.peer) is chat:
            del self._conversations[chat.peer]

    def _contact_lock(self, contact: str) -> asyncio.Lock:
        return self._contact_locks.setdefault(contact, asyncio.Lock())

    @property
    def conversations(self) -> dict[str, Conversation]:
        """Open conversations by the other user's name (a copy)."""
        return dict(self._conversations)

    # Messages.

    def check_body(self, body: str, *, remote: bool = False) -> None:
        size = len(body.encode("utf-8"))
        if size > self.max_message_size:
            text = f"message of {size} bytes is over the limit of {self.max_message_size} bytes"
            raise ProtocolError(text) if remote else MessageTooLarge(text)

    def _new_message(self, recipient: str, body: str) -> Message:
        return Message(
            id=str(uuid.uuid4()),
            sender=self.name,
            recipient=recipient,
            body=body,
            sent_at=time.time(),
        )

    async def send(self, user: str, body: str) -> Message:
        """Send ``body`` to ``user`` now if a conversation is open, else keep it unshipped
        until the next conversation with them. Returns the stored message."""
        self.check_body(body)
        async with self._contact_lock(user):
            chat = self._conversations.get(user)
            if chat is None or chat.closed:
                message = self._new_message(user, body)
                await self.store.add(message)
                return message
        return await chat.send(body)

    async def history(self, user: str, *, limit: int | None = None) -> list[Message]:
        """Messages exchanged with ``user``, both directions, oldest first."""
        return await self.store.history(self.name, user, limit=limit)
