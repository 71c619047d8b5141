"""Sockets made by hand, where asyncio's defaults do not do what NAT traversal needs.

- ``listen()``: a wildcard host (``0.0.0.0``, ``::`` or empty) listens on both IPv4 and
  IPv6, on one port number (two sockets: the IPv6 one is IPv6 only, so that the address a
  peer is seen at is never an IPv4-mapped one).
- ``connected_socket()``: an outgoing TCP connection *from a listening port*, the heart of
  hole punching: the NAT mapping the server observes for our server connection, and the
  one a punch opens, are then those of the listening port. It needs ``SO_REUSEPORT`` on
  the listener and on the outgoing socket (Linux refuses to bind a port a listener holds
  otherwise, even with ``SO_REUSEADDR``).

``SO_REUSEPORT`` would also let a second listener of the same user share our port and
take some of our dial-ins; ``listen()`` therefore first binds a given port without it,
so that a port in use by anyone (with or without the option) is refused as before, and
binds every socket without an await in between.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final

__all__ = [
    "REUSE_PORT",
    "connected_socket",
    "family_of",
    "format_address",
    "is_wildcard",
    "listen",
]

logger = logging.getLogger(__name__)

REUSE_PORT: Final = hasattr(socket, "SO_REUSEPORT")
"""Whether this system can bind an outgoing socket to a listening port (not Windows)."""

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


def is_wildcard(host: str) -> bool:
    """``""``, ``0.0.0.0`` or ``::``: every address of the machine."""
    return host in ("", "0.0.0.0", "::")


def family_of(host: str) -> socket.AddressFamily | None:
    """AF_INET or AF_INET6 for an IP address, None for a host name."""
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return None
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def format_address(host: str, port: int) -> str:
    """``host:port``, an IPv6 host in brackets (``[::1]:5535``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def listen(
    handler: Handler,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    ssl: ssl.SSLContext | None = None,
    backlog: int = 100,
) -> list[asyncio.Server]:
    """Listen on ``host:port``; a wildcard host on both families, one port for both.

    ``reuse_port``: set ``SO_REUSEPORT``, so that outgoing connections can be made from
    this port (``connected_socket``). Where IPv6 (or IPv4) is missing, the other family
    alone is used.
    """
    hosts = ["0.0.0.0", "::"] if is_wildcard(host) else [host]
    if len(hosts) == 1 and not reuse_port:  # nothing to do by hand
        return [await asyncio.start_server(handler, host, port, ssl=ssl, backlog=backlog)]
    for attempt in range(8):
        sockets: list[socket.socket] = []
        chosen = port
        try:
            for one in hosts:
                try:
                    sock = _listening_socket(one, chosen, reuse_port=reuse_port and REUSE_PORT)
                except OSError as exc:
                    if len(hosts) > 1 and exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                        logger.info("no %s here: listening on the other family only", one)
                        continue
                    raise
                sockets.append(sock)
                chosen = int(sock.getsockname()[1])
        except OSError as exc:
            for sock in sockets:
                sock.close()
            # A port picked for the first family may be taken in the second: pick again.
            if port == 0 and exc.errno == errno.EADDRINUSE and attempt < 7:
                continue
            raise
        if not sockets:
            raise OSError(errno.EADDRNOTAVAIL, f"cannot listen on {host}")
        return [
            await asyncio.start_server(handler, sock=sock, ssl=ssl, backlog=backlog)
            for sock in sockets
        ]
    raise AssertionError("unreachable")


def _listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound socket, made without an await: nothing else here can bind in between.

    With ``reuse_port``, a given port is first bound without SO_REUSEPORT, so that a port
    another listener holds is refused whoever it belongs to (connections left in
    TIME_WAIT do not count, as for any listener); the kernel never picks, for port 0, one
    that other SO_REUSEPORT sockets hold.
    """
    family = family_of(host) or socket.AF_INET
    if reuse_port and port != 0:
        _bind(family, host, port, reuse_port=False).close()
    return _bind(family, host, port, reuse_port=reuse_port)


def _bind(family: socket.AddressFamily, host: str, port: int, *, reuse_port: bool) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only if it is.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def connected_socket(
    host: str, port: int, sources: Sequence[tuple[str, int]], *, required: bool
) -> socket.socket | None:
    """A TCP socket connected to ``host:port`` from one of ``sources`` (the listener's
    addresses: the one of the destination's family is used), or None if none fits and
    ``required`` is false (the caller then connects as usual). Raises OSError.

    With ``required`` every failure to bind is raised too: a punch from any other port
    would be useless.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for family, kind, proto, _, address in infos:
        source = next((s for s in sources if family_of(s[0]) == family), None)
        if source is None or not REUSE_PORT:
            continue
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setblocking(False)
            sock.bind(source)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            if required:
                raise
            # That 4-tuple still in TIME_WAIT, a listener on loopback while the server is
            # elsewhere, or the server away: an ordinary connection says which.
            logger.debug("cannot connect from %s: %s; from any port instead", source, exc)
            return None
        except BaseException:
            sock.close()
            raise
        return sock
    if required:
        raise OSError(errno.EAFNOSUPPORT, f"no listening port to reach {host} from")
    return None
