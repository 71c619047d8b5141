"""Every connection a peer opens to another peer goes through ``Dialler.connect()``, so
that the rules on where it may connect hold for each one: the inviter's advertised
addresses, an invitee's addresses in a call back, and every hole punch target.

Those addresses come from the other peer and the server, either of which may be hostile:
they must not make us knock on privileged services, nor on our own machine (its loopback
or any of its interfaces' addresses: LAN, bridges, public) unless the server is on this
machine too.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable

from ..errors import ConnectionClosed
from ..shared.connection import Connection
from .settings import PEER_DEFAULTS, PeerSettings

__all__ = ["Dialler", "is_loopback", "is_own_address"]


class Dialler:
    """Opens connections to other peers, refusing the addresses no peer should be at."""

    def __init__(
        self,
        server: Callable[[], tuple[str, int]],
        *,
        sources: Callable[[], list[tuple[str, int]]],
        settings: PeerSettings = PEER_DEFAULTS,
    ) -> None:
        self.server = server
        """The server we are logged in to now: loopback addresses are dialled only if it
        is on this machine too."""
        self.sources = sources
        """Our listening addresses: where a punch comes from."""
        self.settings = settings

    def refuse_to_dial(self, host: str, port: int) -> str | None:
        """Why ``host:port`` is not dialled, or None to dial it."""
        if port < 1024:
            return "privileged port, not dialled"
        ip = _ip_address(host)
        if ip is None:  # a name could resolve to anything (our own machine among others)
            return "not an IP address, not dialled"
        if ip.is_unspecified or ip.is_multicast:
            return "not a host address"
        if ip.version == 4 and ip.is_link_local:  # 169.254/16: cloud metadata services
            return "link-local address, not dialled"
        if (ip.is_loopback or is_own_address(ip)) and not self._server_is_here():
            return "an address of this machine, from a remote server: not dialled"
        return None

    def _server_is_here(self) -> bool:
        host = self.server()[0]
        if is_loopback(host):
            return True
        ip = _ip_address(host)
        return ip is not None and is_own_address(ip)

    async def connect(
        self,
        host: str,
        port: int,
        *,
        timeout: float | None,
        from_listener: bool = False,
    ) -> Connection:
        """A connection to ``host:port`` (``from_listener``: from our listening port, for a
        punch). Raises ConnectionClosed, also for an address ``refuse_to_dial`` refuses."""
        if (refused := self.refuse_to_dial(host, port)) is not None:
            raise ConnectionClosed(f"{host}:{port}: {refused}")
        return await Connection.open(
            host,
            port,
            max_frame=self.settings.max_frame,
            timeout=timeout,
            sources=self.sources() if from_listener else (),
            from_source=from_listener,
        )


def _ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address (an IPv4-mapped IPv6 one as the IPv4 it is), or None if
    it is not one in the standard form (a name, ``127.1``, ``0x7f000001``...)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_own_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``ip`` is an address of one of this machine's interfaces.

    The kernel knows: a socket binds only to an address of its own (one system call, no
    I/O), unless the machine lets any address be bound (Linux's ``ip_nonlocal_bind``):
    then nothing is taken for ours."""
    return not _binds_anything(ip.version) and _binds(ip)


@functools.cache
def _binds_anything(version: int) -> bool:
    try:
        with open(f"/proc/sys/net/ipv{version}/ip_nonlocal_bind", "rb") as setting:
            return setting.read().strip() not in (b"", b"0")
    except OSError:  # not Linux, or no such setting: binding tells
        return False


def _binds(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
