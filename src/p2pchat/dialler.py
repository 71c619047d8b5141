"""Every connection a peer opens to another peer goes through ``Dialler.connect()``, so
that the rules on where it may connect hold for each one: the inviter's advertised
addresses, an invitee's addresses in a call back, and every hole punch target.

Those addresses come from the other peer and the server, either of which may be hostile:
they must not make us knock on privileged services, nor on our own machine unless the
server is local too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from .connection import Connection
from .errors import ConnectionClosed
from .protocol import DEFAULT_MAX_FRAME

__all__ = ["Dialler", "is_loopback"]


class Dialler:
    """Opens connections to other peers, refusing the addresses no peer should be at."""

    def __init__(
        self,
        server: Callable[[], tuple[str, int]],
        *,
        sources: Callable[[], list[tuple[str, int]]],
        max_frame: int | None = DEFAULT_MAX_FRAME,
    ) -> None:
        self.server = server
        """The server we are logged in to now: loopback addresses are dialled only if it
        is on this machine too."""
        self.sources = sources
        """Our listening addresses: where a punch comes from."""
        self.max_frame = max_frame

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
        if ip.is_loopback and not is_loopback(self.server()[0]):
            return "loopback address from a remote server, not dialled"
        return None

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
            max_frame=self.max_frame,
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


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
