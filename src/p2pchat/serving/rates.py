"""Rates that bound a user, whatever session they come by: kept by name, not by login.

A rate (``(per second, burst)``) bounds what one user does over time: deposits, receipts.
Were it kept with the session, logging in again would start it afresh. So it is kept by
(kind, user) for as long as it matters:

- ``LocalRates`` (one server alone): a token bucket per user in this process. A bucket
  is forgotten only once it is full again, when it is what a new one would be; so nothing
  is forgotten early, and what is kept is bounded by the users who used the rate within
  one ``burst / rate`` (ten seconds for the deposit rate).
- ``RedisRates`` (several nodes): the same bound, one key per user in Redis (GCRA, the
  token bucket as one "theoretical arrival time"), taken atomically by ``rate_take.lua``
  with Redis's clock, so it holds across every node; each key expires once full again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, Protocol

from ..cluster.redis_client import RedisClient
from .limits import TokenBucket

__all__ = ["LocalRates", "Rate", "RedisRates", "UserRates"]

Rate = tuple[float, int]
"""(events per second on average, events at once)."""

PRUNE_AT: Final = 4096
"""Buckets kept before the full ones are looked for and forgotten."""


class UserRates(Protocol):
    """Token buckets by (kind, user)."""

    async def take(self, kind: str, user: str, rate: Rate) -> bool:
        """Take one of ``user``'s ``kind`` tokens; False (nothing taken) if none is left."""


class LocalRates:
    """``UserRates`` in this process (see above)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._prune_at = PRUNE_AT

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, kind: str, user: str, rate: Rate) -> bool:
        bucket = self._buckets.get((kind, user))
        if bucket is None:
            if len(self._buckets) >= self._prune_at:
                self._prune()
            bucket = self._buckets[kind, user] = TokenBucket(*rate, clock=self._clock)
        return bucket.take()

    def _prune(self) -> None:
        """Forget the full buckets (a new one would be the same); the others stay, and the
        next look is when the table has grown to twice what is left."""
        for key in [k for k, b in self._buckets.items() if b.full]:
            del self._buckets[key]
        self._prune_at = max(PRUNE_AT, 2 * len(self._buckets))


class RedisRates:
    """``UserRates`` in Redis, shared by every node (see above)."""

    def __init__(self, client: RedisClient) -> None:
        self.client = client

    async def take(self, kind: str, user: str, rate: Rate) -> bool:
        per_second, burst = rate
        interval = round(1_000_000 / per_second) if per_second > 0 else 0
        answer = await self.client.run(
            "rate_take", [self.client.key("rate", kind, user)], [interval, burst]
        )
        return int(answer) == 1
