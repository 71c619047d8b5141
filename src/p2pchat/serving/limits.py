"""Rate and count limits the server applies per connection and per address. No I/O.

``TokenBucket`` paces requests on one connection. ``AddressLimits`` bounds what one network
address may hold at once (open connections) and create over time (new user names, each a
row in the server's store), so that a single host cannot use up the server for everyone.
Addresses in ``trusted_networks`` (by default the loopback ones: the server's own machine)
are not bounded per address.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Final

from .settings import DEFAULTS, ServerSettings

__all__ = ["AddressLimits", "TokenBucket"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_UNKNOWN: Final = "\0"  # not a key: no host is named so


class TokenBucket:
    """Allows ``rate`` events per second on average, ``burst`` at once."""

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    @property
    def full(self) -> bool:
        self._refill()
        return self._tokens >= self.burst

    def ready(self) -> bool:
        """True if ``take()`` would succeed now (takes nothing)."""
        self._refill()
        return self._tokens >= 1

    def take(self) -> bool:
        """Take one token; False (nothing taken) if there is none."""
        if not self.ready():
            return False
        self._tokens -= 1
        return True

    def give_back(self) -> None:
        """Return a token taken for something that did not happen after all."""
        self._tokens = min(self.burst, self._tokens + 1)


class AddressLimits:
    """Connections open per address, and new names registered per address over time."""

    PRUNE_AT = 4096
    """Registration records kept at most. Beyond, the idle (full) ones are forgotten (a new
    one would be the same); a record still counting something never is (its address would
    get a fresh allowance): while every record counts, new addresses share one."""

    PRUNE_EVERY = 10.0
    """Seconds between two looks for idle records while the table is full."""

    def __init__(
        self, settings: ServerSettings = DEFAULTS, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_connections = settings.max_connections_per_address
        self.registrations = settings.registration_rate
        self.trusted: list[Network] = [ipaddress.ip_network(n) for n in settings.trusted_networks]
        self._clock = clock
        self._open: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._shared: TokenBucket | None = None  # new addresses', while the table is full
        self._pruned = float("-inf")
        self._keys: dict[str, str | None] = {}

    def key(self, host: str) -> str | None:
        """What ``host`` is counted as: itself, its /64 for IPv6 (one site's prefix), or
        None if it is trusted (not counted). Remembered for the last hosts seen: each
        connection asks several times."""
        if (known := self._keys.get(host, _UNKNOWN)) is not _UNKNOWN:
            return known
        key = self._key(host)
        if len(self._keys) >= self.PRUNE_AT:
            self._keys.clear()
        self._keys[host] = key
        return key

    def _key(self, host: str) -> str | None:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return host
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.trusted):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address)

    def connect(self, host: str) -> bool:
        """Count a new connection from ``host``; False (not counted) if it has too many."""
        if self.max_connections is None or (key := self.key(host)) is None:
            return True
        if self._open.get(key, 0) >= self.max_connections:
            return False
        self._open[key] = self._open.get(key, 0) + 1
        return True

    def disconnect(self, host: str) -> None:
        """A connection counted by ``connect()`` has ended."""
        if self.max_connections is None or (key := self.key(host)) is None:
            return
        if (count := self._open.get(key)) is not None:
            if count > 1:
                self._open[key] = count - 1
            else:
                del self._open[key]

    def reserve_registration(self, host: str) -> bool:
        """Take the right for ``host`` to create a new user name now; False if it has
        none left. Taken before the store is asked, so that concurrent logins cannot all
        pass the check at once: give it back with ``unreserve_registration`` if no name
        was created."""
        if self.registrations is None or (key := self.key(host)) is None:
            return True
        return self._bucket(key).take()

    def unreserve_registration(self, host: str) -> None:
        if self.registrations is not None and (key := self.key(host)) is not None:
            self._bucket(key).give_back()

    def _bucket(self, host: str) -> TokenBucket:
        bucket = self._buckets.get(host)
        if bucket is not None:
            return bucket
        assert self.registrations is not None
        if len(self._buckets) >= self.PRUNE_AT and self._clock() >= self._pruned + self.PRUNE_EVERY:
            self._pruned = self._clock()
            for idle in [h for h, b in self._buckets.items() if b.full]:
                del self._buckets[idle]
        if len(self._buckets) >= self.PRUNE_AT:  # every record counts: share one
            if self._shared is None:
                self._shared = TokenBucket(*self.registrations, clock=self._clock)
            return self._shared
        bucket = TokenBucket(*self.registrations, clock=self._clock)
        self._buckets[host] = bucket
        return bucket
