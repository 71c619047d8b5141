"""Send and receive protocol messages over asyncio streams.

The only place where p2pchat bytes meet sockets: the server and the peer both talk through
``Connection``, which feeds what it reads into ``protocol.Decoder`` and writes what
``protocol.encode`` returns. Socket errors become ``ConnectionClosed``; bad bytes become
``ProtocolError`` from the decoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, TypeVar, cast

from ..errors import ConnectionClosed, ProtocolError, error_for_code
from ..protocol import DEFAULT_MAX_FRAME, Decoder, Error, Ping, WireMessage, encode
from .sockets import connected_socket

__all__ = ["Connection", "ConnectionLogger", "keep_alive"]

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=WireMessage)

READ_SIZE = 64 * 1024


class ConnectionLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes each record with the connection it is about."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[{self.extra['conn'] if self.extra else '?'}] {msg}", kwargs


class Connection:
    """One framed connection. ``send`` and ``recv`` may run in different tasks.

    A server holds one per logged-in peer, so it keeps little: slots, and its logger made
    only when something is logged."""

    __slots__ = (
        "_clear_writer",
        "_decoder",
        "_reader",
        "_soon",
        "_soon_size",
        "_writer",
        "id",
        "label",
        "last_heard",
        "max_frame",
        "remote_address",
        "write_timeout",
    )

    _ids = itertools.count(1)

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        # Limits
        max_frame: int | None = DEFAULT_MAX_FRAME,
        # Timeouts
        write_timeout: float | None = 30.0,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = Decoder(max_frame=max_frame)
        self.max_frame = max_frame
        self.write_timeout = write_timeout
        peer = writer.get_extra_info("peername")
        self.remote_address: tuple[str, int] | None = (str(peer[0]), int(peer[1])) if peer else None
        self.id = next(self._ids)
        self._soon: list[bytes] = []  # written by write_soon(), not yet handed to the transport
        self._soon_size = 0
        self._clear_writer: asyncio.StreamWriter | None = None  # see start_tls()
        self.last_heard = time.monotonic()
        """When bytes last arrived (monotonic): any traffic proves the other side is there."""
        self.label: str | None = None
        """What its log lines start with (a user's name, once known); by default its id
        and the other side's address."""

    @property
    def log(self) -> ConnectionLogger:
        """A logger that prefixes each line with ``label``."""
        label = self.label
        if label is None:
            where = "?" if (peer := self.remote_address) is None else f"{peer[0]}:{peer[1]}"
            label = f"#{self.id} {where}"
        return ConnectionLogger(logger, {"conn": label})

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        max_frame: int | None = DEFAULT_MAX_FRAME,
        timeout: float | None = 10.0,
        tls: ssl.SSLContext | None = None,
        sources: Sequence[tuple[str, int]] = (),
        from_source: bool = False,
    ) -> Connection:
        """Dial ``host:port`` (over TLS with ``tls``, checking the certificate for ``host``).

        ``sources``: the listener's addresses; the connection comes from the listening port
        (of the destination's family) if it can, so that a NAT maps it as it maps the
        listener, else from any port; with ``from_source`` only from the listening port (a
        hole punch). Raises ConnectionClosed if it cannot be reached, or verified, in time.
        """
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_SIZE)
        protocol = asyncio.StreamReaderProtocol(reader)
        sock: socket.socket | None = None
        try:
            async with asyncio.timeout(timeout):
                if sources or from_source:
                    sock = await connected_socket(host, port, sources, required=from_source)
                if sock is not None:
                    given, sock = sock, None  # the transport owns it from here on
                    transport, _ = await loop.create_connection(
                        lambda: protocol, sock=given, ssl=tls, server_hostname=host if tls else None
                    )
                else:
                    transport, _ = await loop.create_connection(
                        lambda: protocol, host, port, ssl=tls, server_hostname=host if tls else None
                    )
        except (OSError, TimeoutError) as exc:
            if sock is not None:
                sock.close()
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            raise ConnectionClosed(f"cannot connect to {host}:{port}: {reason}") from exc
        return cls(
            reader, asyncio.StreamWriter(transport, protocol, reader, loop), max_frame=max_frame
        )

    async def recv_last_clear(
        self, *, skip: Callable[[WireMessage], bool] | None = None
    ) -> WireMessage:
        """The next message, the last one expected in clear before ``start_tls()``.

        Reading stops at once (before anything else can run), so that whatever follows in
        clear stays in the socket and reaches the TLS layer, which refuses it; bytes
        already read past the message fail the connection here, and bytes received but not
        read yet fail ``start_tls()`` (STARTTLS injection).
        ``skip``: one message it accepts may come first, and is passed over.
        """
        message = await self.recv()
        if skip is not None and skip(message):
            message = await self.recv()
        self._read_transport().pause_reading()
        self._check_nothing_decoded("after the last clear message")
        return message

    def resume_reading(self) -> None:
        """Read again after ``recv_last_clear()`` (it was not the last one after all)."""
        self._read_transport().resume_reading()

    def _read_transport(self) -> asyncio.ReadTransport:
        # A stream's transport reads too (asyncio's or uvloop's: the latter's classes do
        # not derive from asyncio.ReadTransport, so this is a cast, not a check).
        return cast(asyncio.ReadTransport, self._writer.transport)

    async def expect(
        self,
        kind: type[M],
        *,
        last_clear: bool = False,
        skip: Callable[[WireMessage], bool] | None = None,
    ) -> M:
        """The next message, which must be a ``kind``; an ``error`` is raised as the error
        it names. ``last_clear``: the last message before a TLS upgrade (recv_last_clear,
        which may ``skip`` one message first).
        """
        message = await (self.recv_last_clear(skip=skip) if last_clear else self.recv())
        if isinstance(message, Error):
            raise error_for_code(message.code, message.reason)
        if not isinstance(message, kind):
            raise ProtocolError(
                f"expected {kind.__name__.lower()}, got {type(message).__name__.lower()}"
            )
        return message

    def _check_nothing_decoded(self, when: str) -> None:
        if pending := self._decoder.buffered:
            raise ProtocolError(f"{pending} bytes arrived in clear {when}; refusing them")

    async def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        timeout: float | None = 10.0,
    ) -> None:
        """Upgrade this connection to TLS in place, taking the server's part or the
        client's (the inviter is the TLS server, whichever side dialled).

        Call after ``recv_last_clear()``: any clear byte received meanwhile fails the
        connection (ProtocolError) instead of being read as if it came through TLS. Bytes
        received later reach the TLS layer, which refuses them (ConnectionClosed).
        """
        await self.drain()  # what we wrote in clear leaves before the handshake
        if self._writer.is_closing():
            raise ConnectionClosed("connection is closed")
        transport = self._writer.transport
        self._read_transport().pause_reading()  # nothing more reaches the clear stream
        self._check_nothing_decoded("before the TLS handshake")
        # The clear stream may hold bytes we have not read yet. A StreamReader has no
        # public size, so it is ended and emptied: read() returns at once after an EOF.
        self._reader.feed_eof()
        held = len(await self._reader.read())
        self._read_transport().pause_reading()  # (emptying it may have resumed reading)
        if held:
            raise ProtocolError(f"{held} bytes arrived in clear before the TLS handshake")
        # The TLS layer gets a transport with nothing buffered, and a stream of its own.
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_SIZE)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            tls = await loop.start_tls(
                transport,
                protocol,
                context,
                server_side=server_side,
                ssl_handshake_timeout=timeout,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            self.abort()
            raise ConnectionClosed(f"TLS handshake failed: {exc}") from exc
        if tls is None:
            self.abort()
            raise ConnectionClosed("connection lost during the TLS handshake")
        protocol.connection_made(tls)  # start_tls() does not: the stream reads from `tls`
        # The clear writer is kept: when collected, an open StreamWriter closes its
        # transport, which is the one the TLS layer runs on.
        self._clear_writer = self._writer
        self._reader = reader
        self._writer = asyncio.StreamWriter(tls, protocol, reader, loop)

    def detach(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Hand over the raw streams (to pass bytes along unread). Nothing may be buffered."""
        if self._decoder.buffered:
            raise ProtocolError("bytes arrived before they were expected")
        return self.streams

    @property
    def streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The streams the connection runs on now (new ones after ``start_tls()``), for
        raw bytes past the framing."""
        return self._reader, self._writer

    def peer_certificate(self) -> bytes | None:
        """The other side's TLS certificate (DER), once the handshake is done."""
        tls = self._writer.get_extra_info("ssl_object")
        return tls.getpeercert(binary_form=True) if tls is not None else None

    @property
    def closing(self) -> bool:
        return self._writer.is_closing()

    async def send(self, message: WireMessage) -> None:
        """Write one message and wait until the transport can take more."""
        await self.send_many((message,))

    async def send_many(self, messages: Sequence[WireMessage | bytes]) -> None:
        """Write several messages with a single wait for the transport to drain. An item
        that is ``bytes`` is frames encoded already (news encoded once for many peers)."""
        if self._writer.is_closing():
            raise ConnectionClosed("connection is closed")
        self._flush()  # what write_soon() queued goes first
        data = b"".join(
            m if isinstance(m, bytes) else encode(m, max_frame=self.max_frame) for m in messages
        )
        try:
            self._writer.write(data)
        except (ConnectionError, OSError, RuntimeError) as exc:
            raise ConnectionClosed(f"connection lost while writing: {exc}") from exc
        await self.drain()

    def write_soon(self, data: bytes) -> None:
        """Write ``data`` (whole frames) at the end of this turn of the event loop, with
        whatever else is written to this connection meanwhile: one write, one system call
        for a burst. Never waits; see ``pending`` and ``drain()`` for back-pressure."""
        if not self._soon:
            asyncio.get_running_loop().call_soon(self._flush)
        self._soon.append(data)
        self._soon_size += len(data)

    def _flush(self) -> None:
        if self._soon:
            data = b"".join(self._soon)
            self._soon.clear()
            self._soon_size = 0
            if not self._writer.is_closing():
                self._writer.write(data)

    @property
    def pending(self) -> int:
        """Bytes written that the socket has not taken yet (queued here or in the
        transport): how far behind the other side is in reading."""
        return self._soon_size + self._writer.transport.get_write_buffer_size()

    async def drain(self) -> None:
        """Wait until the transport can take more; ConnectionClosed if the connection
        breaks, or if it cannot take more within ``write_timeout`` (it is then dropped)."""
        self._flush()
        try:
            if self._writer.transport.get_write_buffer_size() == 0:
                await self._writer.drain()  # all taken by the socket: it cannot block
            else:
                async with asyncio.timeout(self.write_timeout):
                    await self._writer.drain()
        except TimeoutError as exc:
            self._writer.transport.abort()
            raise ConnectionClosed(f"write timed out after {self.write_timeout:g} s") from exc
        except (ConnectionError, OSError, RuntimeError) as exc:
            raise ConnectionClosed(f"connection lost while writing: {exc}") from exc

    async def recv(self) -> WireMessage:
        """Return the next message: ConnectionClosed at the end, ProtocolError on bad bytes."""
        # The reading is here, not in a coroutine of its own: a server has a session per
        # peer waiting in this call, and each coroutine in the chain is memory held.
        decoder = self._decoder
        while (message := decoder.next_message()) is None:
            try:
                data = await self._reader.read(READ_SIZE)
            except (ConnectionError, OSError) as exc:
                raise ConnectionClosed(f"connection lost: {exc}") from exc
            if not data:
                decoder.receive_eof()
                raise ConnectionClosed("connection closed by the other side")
            self.last_heard = time.monotonic()
            decoder.receive_data(data)
        return message

    async def recv_batch(self) -> list[WireMessage]:
        """Return every message that is complete now (at least one), reading once if needed.

        Lets a caller handle a burst together: one store transaction, one ack.
        """
        batch = [await self.recv()]
        with contextlib.suppress(ProtocolError):  # raised again by the next recv()
            while (message := self._decoder.next_message()) is not None:
                batch.append(message)
        return batch

    async def fail(self, error: ProtocolError | str, *, code: str | None = None) -> None:
        """Tell the other side why we are closing (best effort), then close."""
        reason = str(error)
        if code is None:
            code = error.code if isinstance(error, ProtocolError) else "error"
        self.log.info("closing: %s", reason)
        with contextlib.suppress(ConnectionClosed, ProtocolError):
            async with asyncio.timeout(1.0):
                await self.send(Error(code=code, reason=reason[:1024]))
        await self.close()

    async def close(self) -> None:
        """Close the connection (after what is written: the transport flushes it) and wait
        (briefly) until it is closed."""
        self._flush()
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            async with asyncio.timeout(2.0):
                # Shielded: every wait_closed() of a stream awaits one shared future, and a
                # cancelled waiter would cancel it for the others (who then see
                # CancelledError).
                await asyncio.shield(self._writer.wait_closed())

    def abort(self) -> None:
        """Drop the connection at once, without flushing."""
        self._writer.transport.abort()


async def keep_alive(
    connection: Connection,
    *,
    interval: float,
    timeout: float,
    send: Callable[[WireMessage], Awaitable[None]] | None = None,
) -> str:
    """Ping ``connection`` when it has been quiet for ``interval`` seconds; return (a reason)
    once nothing at all has been heard for ``interval + timeout``. The caller then drops it.

    The other side answers ``ping`` with ``pong``; any traffic counts as a sign of life.
    """
    send = send or connection.send
    ids = itertools.count(1)
    while True:
        quiet = time.monotonic() - connection.last_heard
        if quiet >= interval + timeout:
            return f"nothing heard for {quiet:.0f} s"
        if quiet >= interval:
            with contextlib.suppress(ConnectionClosed, ProtocolError):
                await send(Ping(id=f"k{next(ids)}"))
            await asyncio.sleep(timeout)
        else:
            await asyncio.sleep(interval - quiet)
