"""The server's relay: two peers that cannot reach each other, joined through the server.

The invitee asks for a relay for an accepted invitation; each side gets a one-time ticket
and presents it on a new connection (``relay{ticket}``). Once both are there the server
answers ``relaying`` to both and from then on passes bytes along unread: the peers run
their own TLS 1.3 through it, end to end.

Every relay is bounded: how many at once (in all and per user), how long the first side
waits for the second, how many bytes per second each way, how long it may pass nothing
(a live conversation pings when quiet), and how long it lives. Every way
out of a relay (a side gone, a timeout, the server closing) ends it, frees its slot and
closes both connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Final

from ..errors import ConnectionClosed, ProtocolError, RelayUnavailable
from ..protocol import Relaying
from ..shared.connection import Connection
from .settings import DEFAULTS, ServerSettings

__all__ = ["RelayHub"]

logger = logging.getLogger(__name__)

CHUNK: Final = 64 * 1024


class _Relay:
    """Two peers joined through the server: who, their tickets, their connections."""

    def __init__(self, inviter: str, invitee: str) -> None:
        self.users = (inviter, invitee)
        self.tickets = (secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        self.sides: list[Connection] = []
        self.bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.done = asyncio.Event()


class _Pace:
    """Holds a byte stream to ``rate`` bytes per second on average (bursts of one second)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._allowance = rate
        self._last = time.monotonic()

    def delay(self, size: int) -> float:
        """Account for ``size`` bytes; how long to wait before reading more."""
        now = time.monotonic()
        self._allowance = min(self.rate, self._allowance + (now - self._last) * self.rate)
        self._last = now
        self._allowance -= size
        return -self._allowance / self.rate if self._allowance < 0 else 0.0


class RelayHub:
    """The relays of one server. ``open()`` hands out tickets; ``serve()`` runs one side."""

    def __init__(self, settings: ServerSettings = DEFAULTS) -> None:
        self.settings = settings
        """Its limits: ``max_relays`` (``max_relays_per_user``) at once; ``relay_rate``
        bytes per second each way in one (None: no limit); ``relay_timeout``, how long
        tickets stay valid and the first side waits for the second; ``relay_idle``, how
        long one way may pass nothing before the relay ends (a held slot costs whoever
        holds it traffic); ``relay_lifetime``, how long one relayed conversation lasts."""
        self._relays: set[_Relay] = set()
        self._tickets: dict[str, _Relay] = {}
        self._per_user: dict[str, int] = {}
        self.bytes_relayed = 0

    @property
    def active(self) -> int:
        """Relays registered now (waiting for a side, or passing bytes)."""
        return len(self._relays)

    @property
    def waiting(self) -> int:
        """Relays whose first side is here and waits for the second."""
        return sum(len(relay.sides) == 1 for relay in self._relays)

    def open(self, inviter: str, invitee: str) -> tuple[str, str]:
        """Register a relay; return (the inviter's ticket, the invitee's ticket).

        Raises RelayUnavailable beyond the limits.
        """
        if len(self._relays) >= self.settings.max_relays:
            raise RelayUnavailable(
                f"this server relays {len(self._relays)} conversations already, its limit"
            )
        for name in (inviter, invitee):
            count = self._per_user.get(name, 0)
            if count >= self.settings.max_relays_per_user:
                raise RelayUnavailable(
                    f"{name} has {count} relayed conversations already, the limit per user"
                )
        relay = _Relay(inviter, invitee)
        self._relays.add(relay)
        for name in relay.users:
            self._per_user[name] = self._per_user.get(name, 0) + 1
        for ticket in relay.tickets:
            self._tickets[ticket] = relay
        relay.timer = asyncio.get_running_loop().call_later(
            self.settings.relay_timeout, self._end, relay, "the second side did not come in time"
        )
        return relay.tickets

    async def serve(self, connection: Connection, ticket: str) -> None:
        """One side of a relay, from its ``relay{ticket}`` on, until the relay ends."""
        relay = self._tickets.pop(ticket, None)
        if relay is None:
            await connection.fail("unknown or used relay ticket", code=RelayUnavailable.code)
            return
        relay.sides.append(connection)
        reason = "a side left"
        try:
            if len(relay.sides) == 1:
                await relay.done.wait()  # the second side does the passing
                return
            if relay.timer is not None:
                relay.timer.cancel()
            if self.settings.relay_lifetime is not None:
                relay.timer = asyncio.get_running_loop().call_later(
                    self.settings.relay_lifetime,
                    self._end,
                    relay,
                    f"relays last {self.settings.relay_lifetime:g} s at most",
                )
            for side in relay.sides:
                await side.send(Relaying())
            logger.info("relaying %s <-> %s", *relay.users)
            await self._pass_bytes(relay)
        except (ConnectionClosed, ProtocolError) as exc:
            reason = str(exc)
        finally:
            self._end(relay, reason)

    async def _pass_bytes(self, relay: _Relay) -> None:
        """Pass bytes both ways, unread, until either side closes."""
        one, other = relay.sides
        one_reader, one_writer = one.detach()
        other_reader, other_writer = other.detach()
        await asyncio.gather(
            self._pipe(relay, one_reader, other_writer),
            self._pipe(relay, other_reader, one_writer),
        )

    async def _pipe(
        self, relay: _Relay, source: asyncio.StreamReader, sink: asyncio.StreamWriter
    ) -> None:
        pace = _Pace(rate) if (rate := self.settings.relay_rate) is not None else None
        with contextlib.suppress(ConnectionError, OSError):
            while data := await self._read(relay, source):
                if pace is not None and (wait := pace.delay(len(data))) > 0:
                    await asyncio.sleep(wait)  # over the rate: TCP holds the sender back
                relay.bytes += len(data)
                self.bytes_relayed += len(data)
                sink.write(data)
                await sink.drain()
        sink.close()

    async def _read(self, relay: _Relay, source: asyncio.StreamReader) -> bytes:
        """The next bytes from ``source``; none (the end) if it stays silent too long."""
        try:
            async with asyncio.timeout(self.settings.relay_idle):
                return await source.read(CHUNK)
        except TimeoutError:
            logger.info(
                "relay %s <-> %s idle for %g s: ending it", *relay.users, self.settings.relay_idle
            )
            return b""

    def _end(self, relay: _Relay, reason: str) -> None:
        """Forget ``relay``, free its slots, close both sides. Safe to call twice."""
        if relay not in self._relays:
            return
        self._relays.discard(relay)
        if relay.timer is not None:
            relay.timer.cancel()
        for ticket in relay.tickets:
            self._tickets.pop(ticket, None)
        for name in relay.users:
            if (count := self._per_user.get(name, 0) - 1) > 0:
                self._per_user[name] = count
            else:
                self._per_user.pop(name, None)
        for side in relay.sides:
            side.abort()
        relay.done.set()
        logger.info("relay %s <-> %s ended after %d bytes: %s", *relay.users, relay.bytes, reason)

    def close(self) -> None:
        """End every relay (the server is closing)."""
        for relay in list(self._relays):
            self._end(relay, "the server is closing")
