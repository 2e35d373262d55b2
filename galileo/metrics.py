"""Prometheus metrics of the farm: one ordinary registry in the coordinator, served over aiohttp.

Workers already report every attempt to the coordinator, so the coordinator owns the one
:class:`~prometheus_client.CollectorRegistry`. prometheus_client's multiprocess mode is never
used: no per-pid files, no churn, every collector type works. Two kinds of series:

* **events**, moved by the hub's and the policy's hooks as outcomes arrive (requests,
  latency, cooldowns, 429s, terminal job results) and by plain methods that strategies and
  landers call (:meth:`FarmMetrics.quote`, :meth:`FarmMetrics.lander_landed`, ...);
* **state**, read from the farm when Prometheus scrapes (in-flight, utilisation, worker up,
  restarts, queue depth, loop lag, RSS, inventory): see :mod:`galileo.metrics_state`.

Labelled children are bound once per label set and cached, since ``labels()`` costs
microseconds on every call. Labels are bounded (ip, task, upstream, result, reason, ...):
never a job id; URLs lose their credentials, query and fragment; a metric that somehow
reaches ``MAX_SERIES_PER_METRIC`` label sets sends the rest to ``other``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Generic, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from broker.protocol import Outcome
from broker.types import Job, JobOutcome, WorkerInfo
from galileo.metrics_state import FarmStateCollector

if TYPE_CHECKING:
    from galileo.farm.coordinator import Farm

__all__ = [
    "COOLDOWN_BUCKETS_MS",
    "LATENCY_BUCKETS_MS",
    "PROFIT_BUCKETS",
    "FarmMetrics",
    "MetricsError",
    "label_value",
    "parse_listen",
]

log = logging.getLogger("galileo.metrics")

# From 1 ms to 10 s: a local quote answers in a few ms, a slow lander in seconds.
LATENCY_BUCKETS_MS = (
    *(1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 150.0, 250.0),
    *(500.0, 750.0, 1000.0, 2500.0, 5000.0, 10000.0),
)
# Cooldowns start at 250 ms (timeout) / 500 ms (429) and are capped at 30 s; Retry-After at 300 s.
COOLDOWN_BUCKETS_MS = (250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0, 30000.0, 60000.0, 120000.0, 300000.0)
# Profit in units of the base mint (SOL, USDC, ...): micro-units to thousands.
PROFIT_BUCKETS = (1e-6, 1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 50.0, 100.0, 1000.0)

MAX_SERIES_PER_METRIC = 50_000
OVERFLOW = "other"

M = TypeVar("M", Counter, Histogram)


class MetricsError(RuntimeError):
    """The metrics endpoint cannot be served (bad ``bot.prometheus.listen``, port taken)."""


def label_value(value: str) -> str:
    """``value`` as safe to export: a URL keeps scheme, host, port and path only."""
    if "://" in value:
        try:
            parts = urlsplit(value)
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            return value.split("?", 1)[0].split("#", 1)[0]
        host = f"[{host}]" if ":" in host else host
        return f"{parts.scheme}://{host}{port}{parts.path}"
    return value.split("?", 1)[0].split("#", 1)[0]


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9898`` for IPv6) as a (host, port) pair."""
    host, sep, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise MetricsError(f"bot.prometheus.listen: {listen!r} is not HOST:PORT (for example 127.0.0.1:9898)")
    return host, int(port)


class _Children(Generic[M]):
    """A metric's labelled children, bound once per label set."""

    __slots__ = ("_cache", "_metric", "_name", "_overflow")

    def __init__(self, metric: M, name: str) -> None:
        self._metric: M = metric
        self._name = name
        self._cache: dict[tuple[str, ...], M] = {}
        self._overflow: M | None = None

    def get(self, *values: str) -> M:
        child = self._cache.get(values)
        return child if child is not None else self._bind(values)

    def _bind(self, values: tuple[str, ...]) -> M:
        # Keyed by the exported values: raw values that clean differently (a URL with a nonce
        # in its query) are cleaned on every call rather than each growing the cache.
        clean = tuple(label_value(v) for v in values)
        child = self._cache.get(clean)
        if child is not None:
            return child
        if len(self._cache) >= MAX_SERIES_PER_METRIC:
            if self._overflow is None:
                log.warning(
                    "metric %s reached %d label sets; further ones are counted under %r (a label carries ids?)",
                    self._name,
                    MAX_SERIES_PER_METRIC,
                    OVERFLOW,
                )
                self._overflow = self._metric.labels(*(OVERFLOW for _ in values))
            return self._overflow
        child = self._cache[clean] = self._metric.labels(*clean)
        return child


class FarmMetrics:
    """Every galileo series in one registry: ``attach(farm)``, then ``await serve(listen)``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # `_created` samples would double the series count for nothing a dashboard uses.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        self.state = FarmStateCollector()
        self.registry.register(self.state)
        self.address: tuple[str, int] | None = None
        self._runner: web.AppRunner | None = None
        self._render_lock = asyncio.Lock()
        self._remote_seen: set[str] = set()
        r = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> _Children[Counter]:
            return _Children(Counter(name, doc, labels, registry=r), name)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> _Children[Histogram]:
            return _Children(Histogram(name, doc, labels, registry=r, buckets=buckets), name)

        # Per attempt, from the hub.
        self._requests = counter(
            "galileo_ip_requests_total", "Job attempts by task, source IP and result.", ("task", "ip", "result")
        )
        self._latency = histogram(
            "galileo_ip_latency_ms",
            "Upstream service time of each attempt (bind errors excluded), ms.",
            ("task", "ip"),
            LATENCY_BUCKETS_MS,
        )
        self._rate_limited = counter(
            "galileo_ip_rate_limited_total", "HTTP 429 answers by source IP and upstream.", ("ip", "upstream")
        )
        # Per cooldown, from the policy.
        self._cooldowns = counter(
            "galileo_ip_cooldown_total",
            "Cooldowns the policy triggered, by IP and reason (rate_limited, timeout, network_error, "
            "server_error; bind_error suspends the IP).",
            ("ip", "reason"),
        )
        self._cooldown_ms = histogram(
            "galileo_ip_cooldown_ms", "Duration of each cooldown, ms.", ("ip", "reason"), COOLDOWN_BUCKETS_MS
        )
        # Per job, from the hub: the one terminal outcome, coordinator-side ones included.
        self._jobs = counter("galileo_jobs_total", "Terminal job outcomes by task and result.", ("task", "result"))
        self._expired = counter(
            "galileo_jobs_expired_total", "Jobs whose deadline passed while queued, by upstream.", ("upstream",)
        )
        self._rejected = counter(
            "galileo_jobs_rejected_total", "Jobs refused at submit (queue full, no IP), by upstream.", ("upstream",)
        )
        # Fed by strategies and landers through the methods below.
        self._lander_attempts = counter(
            "galileo_lander_attempts_total",
            "Bundles/transactions sent, by lander and endpoint.",
            ("lander", "endpoint"),
        )
        self._lander_success = counter(
            "galileo_lander_success_total", "Submissions the endpoint accepted.", ("lander", "endpoint")
        )
        self._lander_landed = counter(
            "galileo_lander_landed_total", "Submissions confirmed on chain.", ("lander", "endpoint")
        )
        self._quotes = counter(
            "galileo_quotes_total", "Quotes by strategy, base mint and result.", ("strategy", "mint", "result")
        )
        self._opportunities = counter(
            "galileo_opportunities_total", "Profitable round trips found.", ("strategy", "mint")
        )
        self._profit = histogram(
            "galileo_opportunity_profit",
            "Expected profit of each opportunity, in units of the base mint.",
            ("strategy", "mint"),
            PROFIT_BUCKETS,
        )

    # --- wiring ----------------------------------------------------------------------

    def attach(self, farm: Farm) -> None:
        """Subscribe to ``farm``'s hooks and read its state at scrape time. Call before ``farm.start()``."""
        self.state.farm = farm
        farm.hub.attempt_hooks.append(self.on_attempt)
        farm.hub.final_hooks.append(self.on_final)
        farm.hub.worker_up_hooks.append(self.on_worker_up)
        farm.policy.cooldown_hooks.append(self.on_cooldown)

    def on_attempt(self, job: Job, worker: WorkerInfo, outcome: Outcome) -> None:
        result = outcome.result
        self._requests.get(job.task, worker.ip, result).inc()
        if result != "bind_error":  # nothing was sent: no service time to speak of
            self._latency.get(job.task, worker.ip).observe(outcome.latency * 1000.0)
        if result == "rate_limited":
            self._rate_limited.get(worker.ip, job.upstream).inc()

    def on_cooldown(self, ip: str, upstream: str, reason: str, seconds: float) -> None:
        self._cooldowns.get(ip, reason).inc()
        if math.isfinite(seconds):  # a suspension (bind_error) lasts until a rescan: not a duration
            self._cooldown_ms.get(ip, reason).observe(seconds * 1000.0)

    def on_final(self, job: Job, final: JobOutcome) -> None:
        self._jobs.get(final.task, final.result).inc()
        if final.result == "expired":
            self._expired.get(final.upstream).inc()
        elif final.result == "rejected":
            self._rejected.get(final.upstream).inc()

    def on_worker_up(self, worker: WorkerInfo, _: str) -> None:
        farm = self.state.farm
        if farm is not None and worker.worker_id in farm.supervisor.slots:
            return  # a local worker: its restarts are the supervisor's count
        if worker.worker_id in self._remote_seen:
            self.state.worker_registered_again(worker.ip)
        self._remote_seen.add(worker.worker_id)

    # --- strategy and landing series -------------------------------------------------

    def lander_attempt(self, lander: str, endpoint: str) -> None:
        """A bundle or transaction was sent to ``endpoint`` (a Jito region, an RPC URL) by ``lander``."""
        self._lander_attempts.get(lander, endpoint).inc()

    def lander_success(self, lander: str, endpoint: str) -> None:
        """The endpoint accepted a submission (it answered with a bundle id or signature)."""
        self._lander_success.get(lander, endpoint).inc()

    def lander_landed(self, lander: str, endpoint: str) -> None:
        """A submission through ``endpoint`` was confirmed on chain."""
        self._lander_landed.get(lander, endpoint).inc()

    def quote(self, strategy: str, mint: str, result: str) -> None:
        """One quote of ``strategy`` for base ``mint`` ended with ``result`` (ok, empty, rate_limited, ...)."""
        self._quotes.get(strategy, mint, result).inc()

    def opportunity(self, strategy: str, mint: str, profit: float) -> None:
        """A profitable round trip: ``profit`` in units of the base mint (SOL, not lamports)."""
        self._opportunities.get(strategy, mint).inc()
        self._profit.get(strategy, mint).observe(profit)

    # --- exposition ------------------------------------------------------------------

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition text for an ``Accept`` header (OpenMetrics or Prometheus text), in this thread."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    async def render_async(self, accept: str = "") -> tuple[bytes, str]:
        """Like :meth:`render`, reading the farm in the loop and rendering the text in a thread."""
        encoder, content_type = choose_encoder(accept)
        async with self._render_lock:
            self.state.freeze()
            try:
                body = await asyncio.to_thread(encoder, self.registry)
            finally:
                self.state.thaw()
        return body, content_type

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body, content_type = await self.render_async(request.headers.get("Accept", ""))
        response = web.Response(body=body, headers={"Content-Type": content_type})
        response.enable_compression()  # only when the scraper accepts it (Prometheus sends gzip)
        return response

    async def serve(self, listen: str) -> tuple[str, int]:
        """Serve ``GET /metrics`` on ``listen`` (``bot.prometheus.listen``); returns the bound address."""
        if self._runner is not None:
            raise MetricsError(f"already serving /metrics on {self.address}")
        host, port = parse_listen(listen)
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise MetricsError(
                f"bot.prometheus.listen: cannot serve /metrics on {listen}: {exc.strerror or exc} "
                "(another farm or exporter on that port? pick another port, or set bot.prometheus.enable: false)"
            ) from None
        self._runner = runner
        bound = runner.addresses[0]
        self.address = (str(bound[0]), int(bound[1]))
        log.info("serving metrics on http://%s:%d/metrics", host, self.address[1])
        return self.address

    async def close(self) -> None:
        """Stop serving. The registry keeps its values (a later :meth:`serve` continues them)."""
        runner, self._runner = self._runner, None
        self.address = None
        if runner is not None:
            await runner.cleanup()
