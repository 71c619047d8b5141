"""How two peers get connected for an invitation: the race between the ways to do it.

The invitee (``reach()``) races these ways, each joining when the ones before it have
failed or have had their time:

1. ``dialled``: it dials the inviter at the addresses the server gave;
2. after ``traverse_after`` (unless a dial has found a TCP path and is in its
   handshake): ``reversed`` and ``punched``: it asks the inviter, through the server, to
   dial it back, and both punch a hole through their NATs at the same moment
   (``punch.py``);
3. after ``relay_after``: ``relayed``: both meet through the server's relay.

The first connection that proves to be the inviter's is kept, the others are closed.
The inviter's side of every way ends at the door (``door.py``), whose ``admit()`` takes
the invitation once, for the first connection that proves to be the invitee's.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence

from ..errors import (
    ConnectionClosed,
    P2PChatError,
    PeerUnreachable,
    ProtocolError,
    RelayUnavailable,
)
from ..protocol import (
    PunchNote,
    Relay,
    Relaying,
    RelayOffer,
    RelayRequest,
    RelayTicket,
)
from ..shared.connection import Connection
from ..shared.identity import Identity
from .dialler import Dialler
from .door import Door, Opened, OutgoingInvite, Target
from .link import ServerLink
from .punch import CallBack, PunchKit, Traversal
from .race import Race, Won
from .settings import PEER_DEFAULTS, PeerSettings

__all__ = ["DialTarget", "OutgoingInvite", "Reach", "route_of"]

logger = logging.getLogger(__name__)

DialTarget = Target  # the name it had before the door moved to door.py


def route_of(via: str) -> str:
    """``relay`` for a relayed connection, ``direct`` for every direct TCP path."""
    return "relay" if via == "relayed" else "direct"


class Reach:
    """Dials for invitations we accept, and answers for invitations we sent."""

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
        traversal: bool = True,
        settings: PeerSettings = PEER_DEFAULTS,
    ) -> None:
        self.name = name
        self.server = server
        """The server we are logged in to now."""
        self.servers = list(servers)
        """Every server we were given (a relay on one of them is always fine to join)."""
        self.server_ssl = server_ssl
        self._link = link
        self.traversal = traversal
        """Take part in connection reversal and hole punching."""
        self.settings = settings
        """Its limits: ``direct_timeout`` per address dialled, then ``traverse_after``
        reversal and punching join the race (for ``punch_timeout``), ``relay_after`` the
        relay; ``connect_timeout``, ``hello_timeout`` to the relay."""
        self.door = Door(name, identity, opened=opened, settings=settings)
        self.dialler = Dialler(server, sources=lambda: self.door.listening, settings=settings)
        self.kit = PunchKit(
            door=self.door,
            dialler=self.dialler,
            link=link,
            settings=settings,
        )
        self.outgoing = self.door.outgoing
        """Invitations we sent and that no dial-in has claimed yet, by id."""
        self._traversals: dict[str, Traversal] = {}

    # The door.

    async def listen(self, host: str, port: int) -> None:
        await self.door.listen(host, port, reuse_port=self.traversal)

    @property
    def listening(self) -> list[tuple[str, int]]:
        """The addresses the listener is bound to."""
        return self.door.listening

    @property
    def dialling_in(self) -> int:
        return self.door.dialling_in

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep ``task`` until it ends; ``close()`` cancels it."""
        self.door.track(task)

    async def close(self) -> None:
        """Stop listening; stop every dial-in, call back, punch and relay under way."""
        await self.door.close()

    def invited(self, invitation: str, outgoing: OutgoingInvite) -> None:
        """We sent ``invitation`` (the server's ringing has just been read)."""
        self.door.invited(invitation, outgoing)

    def relay_offered(self, offer: RelayOffer) -> None:
        """The invitee cannot reach us otherwise: meet it through the server's relay."""
        if offer.invitation in self.outgoing:
            self.track(asyncio.create_task(self._answer_relay(offer)))

    def punch_noted(self, note: PunchNote) -> None:
        """The other side of an invitation sent a step of reversal and punching."""
        if not self.traversal:
            return
        if (outgoing := self.outgoing.get(note.invitation)) is not None:
            if outgoing.traversal is None:
                outgoing.traversal = CallBack(self.kit, note.invitation, outgoing)
            outgoing.traversal.noted(note)
        elif (traversal := self._traversals.get(note.invitation)) is not None:
            traversal.noted(note)

    async def _answer_relay(self, offer: RelayOffer) -> None:
        try:
            at = self._relay_node(offer.server)
            connection = await self._relay_connection(offer.ticket, at)
        except (P2PChatError, TimeoutError, OSError) as exc:
            logger.warning("%s cannot join the relay: %s", self.name, exc)
            return
        await self.door.admit(connection, "relayed")

    # The race.

    async def reach(self, target: Target, *, relay: bool = True) -> Won:
        """Reach the inviter: (the connection, how it was made). Each way joins the race
        when those before it have failed, or have had their time; the first to succeed
        is kept. Raises PeerUnreachable, saying what each way found. Without ``relay``
        (upgrading a relayed talk) only direct paths are tried, each for its full time.

        Reversal and punching are not tried while a direct dial whose TCP connection is
        up is in its handshake: they would only find another such path (the relay, which
        goes through the server, is tried after ``relay_after`` as ever).
        """
        loop = asyncio.get_running_loop()
        relay_at = loop.time() + self.settings.relay_after
        tcp_up = asyncio.Event()
        race = Race()
        try:
            race.start("direct", self._dial(target, tcp_up))
            if self.traversal:
                won = await race.wait(self.settings.traverse_after)
                if won is None and tcp_up.is_set():  # a path is up, in its handshake
                    won = await race.wait(relay_at - loop.time())
                if won is not None:
                    return won
                if not (tcp_up.is_set() and race.running):  # else another path won't help
                    race.start("call back", self._traverse(target))
            if not relay:
                won = await race.wait(None)
                if won is not None:
                    return won
                raise PeerUnreachable(
                    f"no direct path to {target.sender}: " + "; ".join(race.failures)
                )
            if (won := await race.wait(relay_at - loop.time())) is not None:
                return won
            race.start("relay", self._dial_relay(target))
            if (won := await race.wait(None)) is not None:
                return won
        finally:
            await race.close()
        refusals = [e.relay_refusal for e in race.errors if isinstance(e, PeerUnreachable)]
        raise PeerUnreachable(
            f"cannot reach {target.sender}: " + "; ".join(race.failures),
            relay_refusal=next((r for r in refusals if r), ""),
        )

    async def _dial(self, target: Target, tcp_up: asyncio.Event) -> Won:
        """Dial the inviter at the first of its addresses that answers, and present the
        invitation over TLS pinned to the inviter's certificate."""
        failures = []
        for host, port in target.addresses[:8]:
            try:
                connection = await self.dialler.connect(
                    host, port, timeout=self.settings.direct_timeout
                )
            except ConnectionClosed as exc:
                failures.append(str(exc))
                continue
            tcp_up.set()
            try:
                await self.door.present(connection, target)
            except (TimeoutError, ConnectionClosed, ProtocolError) as exc:
                failures.append(f"{host}:{port}: {str(exc) or 'no answer in time'}")
                continue
            return connection, "dialled"
        raise PeerUnreachable(
            f"cannot reach {target.sender}: " + ("; ".join(failures) or "no address")
        )

    def refuse_to_dial(self, host: str, port: int) -> str | None:
        """Why an address another peer gave is not dialled, or None to dial it."""
        return self.dialler.refuse_to_dial(host, port)

    async def _traverse(self, target: Target) -> Won:
        """Ask the inviter to call back, and punch (``punch.Traversal``)."""
        traversal = Traversal(self.kit, target)
        self._traversals[target.id] = traversal
        try:
            return await traversal.run()
        finally:
            if self._traversals.get(target.id) is traversal:
                del self._traversals[target.id]

    def _relay_node(self, named: tuple[str, int] | None) -> tuple[str, int]:
        """Where to join a relay: the server node that holds it, as the server named it,
        else the server we are logged in to. A node that is not one of our servers must
        pass the rules every peer address passes (an IP address, no privileged port, no
        loopback from a remote server): whoever can make a server name it, a hostile
        server or someone with its Redis, cannot point us at our own machine's services."""
        if named is None:
            return self.server()
        host, port = named
        if (host, port) in self.servers:
            return host, port
        if (refused := self.dialler.refuse_to_dial(host, port)) is not None:
            raise PeerUnreachable(f"the relay at {host}:{port}: {refused}")
        return host, port

    async def _dial_relay(self, target: Target) -> Won:
        """Meet the inviter through the server's relay; the TLS inside is ours, end to end."""
        try:
            link = self._link()
            ticket = await link.request(
                RelayRequest(id=link.next_id(), invitation=target.id), RelayTicket
            )
            at = self._relay_node(ticket.server)
            connection = await self._relay_connection(ticket.ticket, at)
            await self.door.present(connection, target)
        except RelayUnavailable as exc:
            raise PeerUnreachable(f"the relay: {exc}", relay_refusal=str(exc)) from exc
        except (P2PChatError, TimeoutError) as exc:
            raise PeerUnreachable(f"the relay: {str(exc) or 'no answer'}") from exc
        logger.info("%s reaches %s through the relay", self.name, target.sender)
        return connection, "relayed"

    async def _relay_connection(self, ticket: str, at: tuple[str, int]) -> Connection:
        """A new connection to the server node ``at``, joined by it to the other peer's."""
        host, port = at
        connection = await Connection.open(
            host,
            port,
            max_frame=self.settings.max_frame,
            timeout=self.settings.connect_timeout,
            tls=self.server_ssl,
        )
        try:
            await connection.send(Relay(ticket=ticket))
            async with asyncio.timeout(self.settings.hello_timeout):
                await connection.expect(Relaying)
        except BaseException:
            await connection.close()
            raise
        return connection
