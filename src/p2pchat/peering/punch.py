"""Connection reversal and TCP hole punching, coordinated through the signalling server
the way libp2p's DCUtR coordinates them through a relay::

    invitee (B)                          server                          inviter (A)
    punch_request{connect}   t0 ->               -> punch_note{connect, B's addresses,
                                                               B's observed address}
                                                    A dials B's addresses (reversal), and:
                        <- punch_note{connect, A's ...} <- punch_request{connect}
    t1: rtt = t1 - t0
    punch_request{sync}         ->               -> punch_note{sync}
    rtt/2 later, B connects to A's observed         A connects to B's observed address at
    address (then its addresses), from its          once, from its listening port
    listening port

B's ``sync`` takes about rtt/2 to reach A, so both SYNs leave at about the same moment.
Each opens its own NAT's mapping towards the other's public address and port, so the
other's SYN, arriving next, matches it: TCP simultaneous open. It works behind NATs that
keep one mapping per listening port whatever the destination (Linux MASQUERADE, most
home routers); behind one that picks a new port per connection (``--random-fully``,
"symmetric" NATs) the observed port is not the one the punch goes out from, the SYNs are
dropped, and the relay joins the two instead. For the observed port to be the
listening port's mapping, the peer connects to the server from its listening port too.

Roles do not follow who connected: on every connection the invitee sends ``starttls``
and is the TLS client; the inviter, on a connection it opened, first says ``reverse``
(so that an invitee whose listener accepted it knows the invitation), and is the TLS
server. Every address dialled here goes through ``Dialler.connect()`` and its rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from ..errors import (
    ConnectionClosed,
    InvitationGone,
    P2PChatError,
    PeerUnreachable,
    ProtocolError,
    ServerRefused,
)
from ..protocol import Ok, PunchNote, PunchRequest, Reverse
from ..shared.connection import Connection
from ..shared.tasks import cancel_and_wait
from .dialler import Dialler
from .door import Door, OutgoingInvite, Target
from .link import ServerLink
from .race import Race, Won
from .settings import PeerSettings

__all__ = ["CallBack", "PunchKit", "Traversal", "punch_targets", "simultaneous_open"]

logger = logging.getLogger(__name__)

MAX_TARGETS: Final = 4
"""Addresses one punch connects to (the observed one first)."""
MAX_PUNCHES: Final = 3
"""Punches an inviter makes for one invitation, whatever the invitee or server ask."""


@dataclass(frozen=True, slots=True)
class PunchKit:
    """What both sides need: the door, the dialler, the server, and how long to try."""

    door: Door
    dialler: Dialler
    link: Callable[[], ServerLink]
    settings: PeerSettings
    """``direct_timeout``, ``punch_timeout``: how long to try."""


def punch_targets(note: PunchNote) -> list[tuple[str, int]]:
    """Where to punch to: the observed address (the NAT's mapping), then the advertised."""
    targets = [(note.observed[0], note.observed[1])] if note.observed else []
    targets += [(host, port) for host, port in note.addresses if (host, port) not in targets]
    return targets[:MAX_TARGETS]


async def simultaneous_open(kit: PunchKit, targets: list[tuple[str, int]]) -> Connection:
    """Connect to the first of ``targets`` that answers, from our listening port, while the
    other side does the same towards us. Raises ConnectionClosed."""
    race = Race()
    for host, port in targets:
        race.start(f"{host}:{port}", _syn(kit, host, port))
    try:
        won = await race.wait(None)
    finally:
        await race.close()
    if won is None:
        raise ConnectionClosed("no punch went through: " + ("; ".join(race.failures) or "nowhere"))
    return won[0]


async def _syn(kit: PunchKit, host: str, port: int) -> Won:
    """One target, until the punch times out. A NAT that answers a SYN it has no mapping
    for with a reset (rather than dropping it) refuses the first try of the side that was
    early: that side tries again, shortly, from the same port."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + kit.settings.punch_timeout
    pause = 0.02
    while True:
        try:
            connection = await kit.dialler.connect(
                host,
                port,
                timeout=max(deadline - loop.time(), 0.0),
                from_listener=True,
            )
        except ConnectionClosed as exc:
            refused = isinstance(exc.__cause__, ConnectionRefusedError | ConnectionResetError)
            if not refused or loop.time() + pause >= deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.4)
            continue
        return connection, "punched"


class Traversal:
    """The invitee's side, for one invitation: asks the inviter to call back and to punch,
    and keeps the first connection that proves to be the inviter's."""

    def __init__(self, kit: PunchKit, target: Target) -> None:
        self.kit = kit
        self.target = target
        self._notes: asyncio.Queue[tuple[float, PunchNote]] = asyncio.Queue(maxsize=4)
        self._won: asyncio.Future[Won] = asyncio.get_running_loop().create_future()
        self._presenting = 0
        """Handshakes under way on connections the inviter may take."""
        self._settled = asyncio.Event()

    def noted(self, note: PunchNote) -> None:
        """The server passed on a step from the inviter (only its ``connect`` matters)."""
        if note.step == "connect":
            with contextlib.suppress(asyncio.QueueFull):  # more than we asked for: ignored
                self._notes.put_nowait((asyncio.get_running_loop().time(), note))

    async def run(self) -> Won:
        """The connection the inviter opened to us (``reversed``) or that our punches made
        (``punched``), whichever proves itself first. Raises PeerUnreachable.

        After ``punch_timeout`` no new connection is taken, but one whose handshake is
        under way is waited for (``hello_timeout`` bounds it): the inviter may have taken
        it already, and would then have no other.
        """
        door = self.kit.door
        door.calls[self.target.id] = self._called
        punch = asyncio.create_task(self._punch())
        kept = False
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.kit.settings.punch_timeout):
                    won = await asyncio.shield(self._won)
                    kept = True
                    return won
            if door.calls.get(self.target.id) == self._called:
                del door.calls[self.target.id]
            while self._presenting and not self._won.done():
                self._settled.clear()
                await self._settled.wait()
            if self._won.done():
                won = self._won.result()
                kept = True
                return won
            raise PeerUnreachable("no call back and no punch in time")
        finally:
            if door.calls.get(self.target.id) == self._called:
                del door.calls[self.target.id]
            await cancel_and_wait(punch)
            if not self._won.done():
                self._won.cancel()  # a connection that proves itself later is dropped
            elif not kept and not self._won.cancelled() and self._won.exception() is None:
                self._won.result()[0].abort()  # we were stopped: nobody takes it

    def _offer(self, connection: Connection, via: str) -> None:
        if self._won.done():
            connection.abort()  # another way won already
        else:
            self._won.set_result((connection, via))

    async def _called(self, connection: Connection) -> None:
        """The inviter opened ``connection`` to us (the door read its ``reverse``)."""
        if self._won.done():
            await connection.close()
            return
        await self._present(connection, "reversed")

    async def _present(self, connection: Connection, via: str) -> None:
        self._presenting += 1
        try:
            await self.kit.door.present(connection, self.target)
        except (P2PChatError, TimeoutError) as exc:
            connection.log.info("%s connection from %s failed: %s", via, self.target.sender, exc)
            return
        finally:
            self._presenting -= 1
            self._settled.set()
        self._offer(connection, via)

    async def _punch(self) -> None:
        loop = asyncio.get_running_loop()
        link = self.kit.link()
        started = loop.time()
        try:
            await link.request(
                PunchRequest(id=link.next_id(), invitation=self.target.id, step="connect"), Ok
            )
        except ServerRefused as exc:
            if not self._won.done():  # nobody will call back: give up at once
                self._won.set_exception(PeerUnreachable(f"no call back: {exc}"))
            return
        except P2PChatError as exc:
            logger.info("cannot ask %s to call back: %s", self.target.sender, exc)
            return
        answered, note = await self._notes.get()
        rtt = answered - started
        sync_request = PunchRequest(id=link.next_id(), invitation=self.target.id, step="sync")
        sync = asyncio.ensure_future(link.request(sync_request, Ok))
        try:
            await asyncio.sleep(rtt / 2)  # the time sync takes to reach the inviter
            targets = punch_targets(note)
            logger.info("%s punches to %s (rtt %.1f ms)", self.kit.door.name, targets, rtt * 1e3)
            connection = await simultaneous_open(self.kit, targets)
        except ConnectionClosed as exc:
            logger.info("punching to %s failed: %s", self.target.sender, exc)
            return
        finally:
            with contextlib.suppress(P2PChatError):
                await sync  # answered in a round trip; cancelled only if we are
        await self._present(connection, "punched")


class CallBack:
    """The inviter's side, for one invitation it sent: when the invitee asks, dial it back
    (reversal) and answer at once, so that it can time the punch; punch when it says
    ``sync``. Whatever connects goes to the door's ``admit()``, which takes the first."""

    def __init__(self, kit: PunchKit, invitation: str, outgoing: OutgoingInvite) -> None:
        self.kit = kit
        self.invitation = invitation
        self.outgoing = outgoing
        self.targets: list[tuple[str, int]] = []
        self.reversing = False
        self.connected = False
        """A reversal reached the invitee: there is a path, punching is not needed."""
        self.punches = 0

    def noted(self, note: PunchNote) -> None:
        if note.step == "connect":
            self._spawn(self._answer())  # first: the invitee times the round trip
            self.targets = punch_targets(note)
            if not self.reversing:
                self.reversing = True
                for host, port in note.addresses:
                    self._spawn(self._reverse(host, port))
        elif self.targets and not self.connected and self.punches < MAX_PUNCHES:
            self.punches += 1
            self._spawn(self._punch())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.outgoing.attempts.add(task)
        task.add_done_callback(self.outgoing.attempts.discard)
        self.kit.door.track(task)

    async def _answer(self) -> None:
        with contextlib.suppress(P2PChatError):
            link = self.kit.link()
            await link.request(
                PunchRequest(id=link.next_id(), invitation=self.invitation, step="connect"), Ok
            )

    async def _reverse(self, host: str, port: int) -> None:
        try:
            connection = await self.kit.dialler.connect(
                host, port, timeout=self.kit.settings.direct_timeout
            )
        except ConnectionClosed as exc:
            logger.info("calling back %s failed: %s", self.outgoing.user, exc)
            return
        self.connected = True  # in its handshake: no punch meanwhile
        if not await self._admit(connection, "reversed"):
            self.connected = False  # it was not the invitee: a punch may still find them

    async def _punch(self) -> None:
        try:
            connection = await simultaneous_open(self.kit, self.targets)
        except ConnectionClosed as exc:
            logger.info("punching to %s failed: %s", self.outgoing.user, exc)
            return
        await self._admit(connection, "punched")

    async def _admit(self, connection: Connection, via: str) -> bool:
        """Hand ``connection`` to the door; False if it did not prove to be the invitee."""
        try:
            await connection.send(Reverse(invitation=self.invitation))
            return await self.kit.door.admit(connection, via, invitation=self.invitation)
        except (ConnectionClosed, ProtocolError, InvitationGone) as exc:
            connection.log.info("%s connection to %s failed: %s", via, self.outgoing.user, exc)
            connection.abort()
            return False
        except BaseException:
            connection.abort()  # stopped (another connection won): nothing is left open
            raise
