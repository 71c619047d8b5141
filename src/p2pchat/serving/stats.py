"""What a server counts about itself, for its metrics: plain numbers, no I/O, no
dependency. ``metrics.py`` turns them into Prometheus text when asked.

Counters only go up; what is true *now* (connections, sessions, relays) is read from the
server when the metrics are scraped.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Final

__all__ = ["LATENCY_BUCKETS", "Latency", "ServerStats"]

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper bounds (seconds) of the request latency histogram; +Inf is implied."""


class Latency:
    """A histogram of request durations for one kind of request."""

    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: over every bound
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, requests at or under it), ending with ("+Inf", count)."""
        total = 0
        out = []
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.buckets, strict=True):
            total += count
            out.append((bound, total))
        return out


class ServerStats:
    """Counts of what one server did since it started."""

    def __init__(self) -> None:
        self.logins = 0
        self.refusals: Counter[str] = Counter()
        """Logins and connections refused, by the error code sent."""
        self.invitations: Counter[str] = Counter()
        """Invitations by outcome: sent, accepted, refused, cancelled, expired, gone."""
        self.protocol_errors: Counter[str] = Counter()
        """Connections failed for breaking the protocol, by code."""
        self.requests: dict[str, Latency] = {}
        """How long requests took to handle, by message type."""

    def request(self, kind: str, seconds: float) -> None:
        latency = self.requests.get(kind)
        if latency is None:
            latency = self.requests[kind] = Latency()
        latency.observe(seconds)
