"""Health, readiness and Prometheus metrics, served on METRICS_HOST:METRICS_PORT.

Every metric lives here, in one private `CollectorRegistry` per bot, so tests (and the
sandbox) can run several bots in one process without duplicate registrations. Domain
code reports through tiny hooks at its choke points (the update processor, the error
handler, the exchange client, the trading outcome) or keeps a plain counter/size that
is read when Prometheus scrapes (queue depth, accounts, streams, alerts): nothing here
imports `telegram`, and nothing is computed between scrapes that nobody reads.

`Readiness` answers /readyz. Its `leader` callable is the instance's leadership
(bot/leader.py): always True on SQLite, the lease's holder on PostgreSQL; a standby's
health server (`bot.leader.Standby`) answers 503 until it leads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from bot.errors import ConfigError, RateLimited

log = logging.getLogger(__name__)

# The `*_created` timestamp series double the page and no dashboard reads them.
disable_created_metrics()

# Reply latency buckets: a chat reply is "instant" under ~0.3 s, sluggish past 2 s, and an
# exchange call under load can take 10 s or more (the client's timeout).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class StreamState:
    name: str  # "market-mainnet"
    up: bool


@dataclass
class Readiness:
    """Whether this instance should receive traffic: started, leading, market streams up."""

    streams: Callable[[], list[StreamState]] = list
    leader: Callable[[], bool] = lambda: True
    started: bool = False
    stopping: bool = False

    def check(self) -> tuple[bool, dict[str, Any]]:
        """(ready, a short JSON-able body saying why not)."""
        streams = self.streams()
        down = sorted(s.name for s in streams if not s.up)
        body: dict[str, Any] = {
            "leader": self.leader(),
            "streams": {s.name: "up" if s.up else "down" for s in streams},
        }
        if self.stopping:
            reason = "stopping"
        elif not self.started:
            reason = "starting"
        elif not body["leader"]:
            reason = "standby: another instance leads"
        elif down:
            reason = "market stream down: " + ", ".join(down)
        else:
            return True, {"ready": True, **body}
        return False, {"ready": False, "reason": reason, **body}


@dataclass
class _Sources:
    """What is read at scrape time; bound to the services by `Metrics.watch`."""

    queue_depth: Callable[[], int] = lambda: 0
    accounts: Callable[[], list[StreamState]] = list
    streams: Callable[[], list[StreamState]] = list
    alerts_registered: Callable[[], int] = lambda: 0
    alerts_fired: Callable[[], int] = lambda: 0
    orders: Callable[[], Iterable[tuple[tuple[str, str], int]]] = tuple
    leader: Callable[[], bool] = lambda: True
    ready: Callable[[], bool] = lambda: False


class _ScrapeCollector(Collector):
    def __init__(self, sources: _Sources) -> None:
        self.s = sources

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily("bot_delivery_queue_depth",
                              "Messages waiting in the delivery queue")
        g.add_metric([], self.s.queue_depth())
        yield g
        accounts = self.s.accounts()
        g = GaugeMetricFamily("bot_connected_accounts",
                              "Exchange accounts followed by a private stream, by stream state",
                              labels=["state"])
        g.add_metric(["up"], sum(1 for a in accounts if a.up))
        g.add_metric(["down"], sum(1 for a in accounts if not a.up))
        yield g
        g = GaugeMetricFamily("bot_market_stream_up",
                              "1 when the shared market socket is connected", labels=["stream"])
        for st in self.s.streams():
            g.add_metric([st.name], 1 if st.up else 0)
        yield g
        g = GaugeMetricFamily("bot_alerts_registered", "Alerts armed in the alert index")
        g.add_metric([], self.s.alerts_registered())
        yield g
        c = CounterMetricFamily("bot_alerts_fired", "Alerts fired (messages queued)")
        c.add_metric([], self.s.alerts_fired())
        yield c
        c = CounterMetricFamily("bot_orders", "Confirmed cards by kind and outcome",
                                labels=["kind", "outcome"])
        for (kind, outcome), n in self.s.orders():
            c.add_metric([kind, outcome], n)
        yield c
        g = GaugeMetricFamily("bot_leader", "1 when this instance leads (runs side effects)")
        g.add_metric([], 1 if self.s.leader() else 0)
        yield g
        g = GaugeMetricFamily("bot_ready", "1 when /readyz answers 200")
        g.add_metric([], 1 if self.s.ready() else 0)
        yield g


def error_kind(err: BaseException) -> str:
    """A low-cardinality label for an exchange error: its class, in snake case."""
    name = type(err).__name__.lstrip("_")
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


@dataclass
class Metrics:
    """One bot's metrics and its own registry."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry())
    sources: _Sources = field(default_factory=_Sources)

    def __post_init__(self) -> None:
        r = self.registry
        self.updates = Counter("bot_updates_handled", "Telegram updates processed, by kind",
                               ["kind"], registry=r)
        self.update_errors = Counter("bot_update_errors",
                                     "Updates that ended in the error handler, by cause",
                                     ["cause"], registry=r)
        self.reply_latency = Histogram(
            "bot_reply_latency_seconds",
            "From an update reaching the bot to its handling (reply sent) finishing",
            buckets=LATENCY_BUCKETS, registry=r)
        self.exchange_errors = Counter("bot_exchange_errors",
                                       "Errors from BitMEX REST calls, by kind", ["kind"],
                                       registry=r)
        self.exchange_429 = Counter("bot_exchange_rate_limited",
                                    "BitMEX 429 answers (rate limited)", registry=r)
        self.telegram_429 = Counter("bot_telegram_rate_limited",
                                    "Telegram 429 answers (RetryAfter)", registry=r)
        self.registry.register(_ScrapeCollector(self.sources))

    # --- hooks at the choke points -----------------------------------------------------

    def update_handled(self, kind: str, seconds: float) -> None:
        self.updates.labels(kind).inc()
        self.reply_latency.observe(seconds)

    def update_failed(self, cause: str) -> None:
        self.update_errors.labels(cause).inc()

    def exchange_error(self, err: BaseException) -> None:
        self.exchange_errors.labels(error_kind(err)).inc()
        if isinstance(err, RateLimited):
            self.exchange_429.inc()

    def telegram_rate_limited(self) -> None:
        self.telegram_429.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # --- binding --------------------------------------------------------------------------

    def watch(
        self, readiness: Readiness, *,
        queue_depth: Callable[[], int],
        accounts: Callable[[], list[StreamState]],
        streams: Callable[[], list[StreamState]],
        alerts_registered: Callable[[], int],
        alerts_fired: Callable[[], int],
        orders: Callable[[], Iterable[tuple[tuple[str, str], int]]],
    ) -> None:
        """Read the scrape-time figures from these sources (callables: this module imports
        no service, so every service may report to it)."""
        s = self.sources
        s.queue_depth = queue_depth
        s.accounts = accounts
        s.streams = streams
        s.alerts_registered = alerts_registered
        s.alerts_fired = alerts_fired
        s.orders = orders
        s.leader = readiness.leader
        s.ready = lambda: readiness.check()[0]


class MetricsServer:
    """/healthz, /readyz and /metrics on a small aiohttp server of its own."""

    def __init__(self, metrics: Metrics, readiness: Readiness, host: str, port: int) -> None:
        self.metrics = metrics
        self.readiness = readiness
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise ConfigError(f"cannot listen on {self.host}:{self.port} for METRICS_PORT "
                              f"({e.strerror or e}). Choose a free port, or leave "
                              "METRICS_PORT empty.") from None
        self._runner = runner
        log.info("health and metrics on http://%s:%s", self.host, self.port)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        # Alive = this event loop answers; readiness is /readyz's question.
        return web.json_response({"alive": True})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, body = self.readiness.check()
        return web.Response(text=json.dumps(body), status=200 if ready else 503,
                            content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.render()
        # CONTENT_TYPE_LATEST carries a charset parameter, which aiohttp wants apart.
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
