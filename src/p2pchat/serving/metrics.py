"""A server's metrics, as Prometheus text, and its health: ``/metrics`` and ``/healthz``.

``MetricsServer(server, host, port)`` serves them with aiohttp (``SignallingServer(...,
metrics=(host, port))`` or ``p2pchat-server --metrics HOST:PORT`` start one). Each server
has a ``CollectorRegistry`` of its own (``registry_for(server)``), never the global one,
so two servers in one process report apart. Every series carries ``node="ID"``.

What is counted since start (``_total``): logins, refusals by code, invitations by
outcome, protocol errors by code, mail deposits (and their bytes) and items collected,
bytes relayed; what holds now: connections, sessions on this node, users online in the
whole cluster, relays, mailbox items and bytes (the whole mailbox: with Redis, the same
on every node); and a histogram of request handling time by request type.

Nothing here names a user or carries content: counts only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from ..errors import P2PChatError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..cluster.base import Cluster
    from ..cluster.redis_client import RedisClient
    from .mailbox import MailService
    from .relay import RelayHub
    from .session import Sessions
    from .stats import ServerStats

__all__ = ["MetricsServer", "Observed", "registry_for"]

logger = logging.getLogger(__name__)


class Observed(Protocol):
    """What the metrics read of a server: ``SignallingServer`` is one. A protocol, so that
    this module (which the server starts) does not import the server back."""

    @property
    def node_id(self) -> str: ...
    @property
    def started_at(self) -> float: ...
    @property
    def connection_count(self) -> int: ...
    @property
    def stats(self) -> ServerStats: ...
    @property
    def sessions(self) -> Sessions: ...
    @property
    def relays(self) -> RelayHub: ...
    @property
    def mail(self) -> MailService: ...
    @property
    def cluster(self) -> Cluster: ...
    @property
    def redis(self) -> RedisClient | None: ...


class _Collector(Collector):
    """Reads one server's numbers when scraped; ``refresh()`` first fetches those that
    live in a store (Redis, SQLite): collecting itself never waits."""

    def __init__(self, server: Observed) -> None:
        self.server = server
        self.cluster_online = 0
        self.mailbox = (0, 0)

    async def refresh(self) -> None:
        try:
            _, self.cluster_online = await self.server.cluster.online(0)
            self.mailbox = await self.server.mail.mailbox.totals()
        except (P2PChatError, OSError) as exc:  # shown as they were last known
            logger.warning("metrics: cannot read the stores: %s", exc)

    def collect(self) -> Iterator[Metric]:
        server, stats = self.server, self.server.stats
        node = [server.node_id]

        def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"p2pchat_{name}", text, labels=["node"])
            family.add_metric(node, value)
            return family

        def counter(name: str, text: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(f"p2pchat_{name}", text, labels=["node"])
            family.add_metric(node, value)
            return family

        def by(name: str, text: str, label: str, counts: dict[str, int]) -> CounterMetricFamily:
            family = CounterMetricFamily(f"p2pchat_{name}", text, labels=["node", label])
            for key, value in sorted(counts.items()):
                family.add_metric([*node, key], value)
            return family

        yield gauge("connections", "Connections open now (sessions, logins, relays).",
                    server.connection_count)  # fmt: skip
        yield gauge("sessions", "Users logged in on this node now.", len(server.sessions))
        yield gauge("online_users", "Users logged in on any node now.", self.cluster_online)
        yield gauge("relays_active", "Relays open now (waiting or passing).", server.relays.active)
        yield gauge("mailbox_items", "Sealed items kept in the mailbox now.", self.mailbox[0])
        yield gauge("mailbox_bytes", "Sealed bytes kept in the mailbox now.", self.mailbox[1])
        yield gauge("up_seconds", "Seconds since this server started.",
                    time.time() - server.started_at)  # fmt: skip
        yield counter("logins", "Logins welcomed.", stats.logins)
        yield by("refusals", "Logins and connections refused, by code.", "reason", stats.refusals)
        yield by("invitations", "Invitations by outcome.", "outcome", stats.invitations)
        yield by("protocol_errors", "Connections failed on a protocol error.", "code",
                 stats.protocol_errors)  # fmt: skip
        yield counter("relayed_bytes", "Bytes passed through relays.", server.relays.bytes_relayed)
        yield counter("mail_deposits", "Sealed messages deposited.", server.mail.deposits)
        yield counter("mail_deposited_bytes", "Sealed bytes deposited.",
                      server.mail.deposited_bytes)  # fmt: skip
        yield counter("mail_collections", "Mail items handed out on collect.",
                      server.mail.collections)  # fmt: skip
        latency = HistogramMetricFamily(
            "p2pchat_request_seconds",
            "Time to handle a request, by request type.",
            labels=["node", "request"],
        )
        for kind, histogram in sorted(stats.requests.items()):
            latency.add_metric([*node, kind], histogram.cumulative(), histogram.sum)
        yield latency


def registry_for(server: Observed) -> tuple[CollectorRegistry, _Collector]:
    """A registry of ``server``'s own, and its collector (``await collector.refresh()``
    before ``generate_latest(registry)`` to include what lives in the stores)."""
    registry = CollectorRegistry(auto_describe=True)
    collector = _Collector(server)
    registry.register(collector)
    return registry, collector


class MetricsServer:
    """``/metrics`` (Prometheus text) and ``/healthz`` of one server, over HTTP."""

    def __init__(self, server: Observed, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = server
        self.host = host
        self.requested_port = port
        self.registry, self._collector = registry_for(server)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.requested_port).start()
        logger.info("metrics on http://%s:%d/metrics", self.host, self.port)

    @property
    def port(self) -> int:
        if self._runner is None:
            raise RuntimeError("the metrics server is not started")
        address = self._runner.addresses[0]
        return int(address[1])

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        await self._collector.refresh()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, request: web.Request) -> web.Response:
        server = self.server
        healthy = server.cluster.healthy
        return web.json_response(
            {
                "status": "ok" if healthy else "degraded",
                "node": server.node_id,
                "sessions": len(server.sessions),
                "cluster": "redis" if server.redis is not None else "local",
            },
            status=200 if healthy else 503,
        )
