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

Counters are exported at 0 as soon as their labels are known (an IP registers, a task or an
upstream is first seen, a strategy's base mint is configured, a lander endpoint is set up),
so a panel reads 0 rather than "No data". Names follow Prometheus' rules (``promtool check
metrics``: base units, ``_total`` only on counters) except :data:`KEPT_NAMES`, which the
design document fixes.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from broker.protocol import RESULTS, Outcome
from broker.types import Job, JobOutcome, WorkerInfo
from galileo.client import TitanSource
from galileo.metrics_state import FarmStateCollector
from galileo.metrics_titan import TitanCollector
from galileo.policy.cooldown import DEFAULT_RULES

if TYPE_CHECKING:
    from galileo.farm.coordinator import Farm

__all__ = [
    "COOLDOWN_BUCKETS_S",
    "KEPT_NAMES",
    "LAMPORTS_PER_SOL",
    "LATENCY_BUCKETS_MS",
    "PROFIT_BUCKETS_SOL",
    "SKIP_REASONS",
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
COOLDOWN_BUCKETS_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 60.0, 120.0, 300.0)
# Expected profit per opportunity, in SOL: 1,000 lamports (0.000001 SOL) to 10 SOL. A round trip
# clears its costs (a 10,000-lamport tip at least) and min_quote_profit (20,000 lamports in the
# README), so most land between 0.00001 and 0.01 SOL, where the buckets are densest.
PROFIT_BUCKETS_SOL = (
    *(1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3),
    *(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LAMPORTS_PER_SOL = 1_000_000_000

# Names the design document (MISSION.md §8) fixes, which `promtool check metrics` flags: kept
# so that dashboards and alerts written against the design keep working.
KEPT_NAMES: dict[str, str] = {
    "galileo_ip_latency_ms": "a histogram in milliseconds; Prometheus' rule wants seconds (_seconds)",
    "galileo_network_ip_inventory_total": "a gauge (1 per usable address); `_total` is meant for counters",
}

# Label values known before anything happens, so their counters can start at 0.
ATTEMPT_RESULTS = tuple(r for r in RESULTS if r not in ("expired", "worker_lost", "rejected", "cancelled"))
COOLDOWN_REASONS = (*DEFAULT_RULES, "bind_error")

MAX_SERIES_PER_METRIC = 50_000
OVERFLOW = "other"

M = TypeVar("M", Counter, Gauge, Histogram)

# Why a found opportunity was not landed (galileo_opportunities_skipped_total's reasons).
SKIP_REASONS = ("stale_quote", "quote_expired", "duplicate", "unprofitable_after_fees")


@dataclass
class RoundTrips:
    """One strategy and base mint's round trips on chain: how many, expected and realised (lamports)."""

    on_chain: int = 0
    expected_lamports: int = 0
    realised_lamports: int = 0


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

    def seed(self, *values: str) -> None:
        """Export this label set now (a counter at 0), unless it would crowd real series out."""
        if values not in self._cache and len(self._cache) < MAX_SERIES_PER_METRIC // 2:
            self._bind(values)

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
        self.titan = TitanCollector()
        self.registry.register(self.titan)
        self.address: tuple[str, int] | None = None
        self._runner: web.AppRunner | None = None
        self._render_lock = asyncio.Lock()
        self._remote_seen: set[str] = set()
        # Label values seen so far: a new one starts its counters at 0 across the others.
        self._ips: set[str] = set()
        self._tasks: set[str] = set()
        self._upstreams: set[str] = self.state.known_upstreams  # shared: cooldown_active reads 0 for each
        self._strategy_mints: set[tuple[str, str]] = set()
        self._lander_endpoints: set[tuple[str, str]] = set()
        self.round_trips: dict[tuple[str, str], RoundTrips] = {}  # (strategy, mint): what `farm stats` shows
        r = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> _Children[Counter]:
            return _Children(Counter(name, doc, labels, registry=r), name)

        def gauge(name: str, doc: str, labels: tuple[str, ...]) -> _Children[Gauge]:
            return _Children(Gauge(name, doc, labels, registry=r), name)

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
        self._cooldown_seconds = histogram(
            "galileo_ip_cooldown_seconds", "Duration of each cooldown, seconds.", ("ip", "reason"), COOLDOWN_BUCKETS_S
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
        self._lander_would_send = counter(
            "galileo_lander_would_send_total",
            "Bundles/transactions lander.mode dry_run built and signed but did not send, by lander and endpoint.",
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
            "galileo_opportunity_profit_sol",
            "Expected profit of each opportunity, in SOL (1e9 lamports) whatever its base mint.",
            ("strategy", "mint"),
            PROFIT_BUCKETS_SOL,
        )
        self._skipped = counter(
            "galileo_opportunities_skipped_total",
            "Opportunities found but not landed, by reason: stale_quote (older than lander.max_quote_age_slots), "
            "quote_expired (past Titan's expiresAfterSlot), duplicate (the same trade is in flight), "
            "unprofitable_after_fees (the tip and priority fee it would pay leave too little).",
            ("strategy", "reason"),
        )
        self._on_chain = counter(
            "galileo_round_trips_on_chain_total",
            "Round trips on chain (landed, or an RPC transaction that failed and paid its fee) whose balance "
            "changes were read back with getTransaction.",
            ("strategy", "mint"),
        )
        self._realised = gauge(
            "galileo_round_trip_realised_profit_sol",
            "Realised P&L of the round trips on chain since the farm started, in SOL: the wallet's balance "
            "changes (fees and tips included) valued in the base mint, then in SOL.",
            ("strategy", "mint"),
        )
        self._expected = gauge(
            "galileo_round_trip_expected_profit_sol",
            "Expected profit of the same round trips (what their quotes promised), in SOL, since the farm started.",
            ("strategy", "mint"),
        )

    # --- wiring ----------------------------------------------------------------------

    def attach(self, farm: Farm) -> None:
        """Subscribe to ``farm``'s hooks and read its state at scrape time. Call before ``farm.start()``."""
        self.state.farm = farm
        farm.hub.attempt_hooks.append(self.on_attempt)
        farm.hub.final_hooks.append(self.on_final)
        farm.hub.worker_up_hooks.append(self.on_worker_up)
        farm.policy.cooldown_hooks.append(self.on_cooldown)
        cfg = farm.cfg
        for strategy, enabled in (("blind", cfg.blind_strategy.enable), ("multi_leg", cfg.multi_leg.enable)):
            if enabled:
                for base in cfg.blind_strategy.base_mints:
                    self.strategy_mint(strategy, base.mint)

    # --- counters at 0 -----------------------------------------------------------------

    def _seen(self, ip: str, task: str, upstream: str) -> None:
        if ip not in self._ips:
            self._new_ip(ip)
        if task not in self._tasks:
            self._new_task(task)
        if upstream not in self._upstreams:
            self._new_upstream(upstream)

    def _new_ip(self, ip: str) -> None:
        self._ips.add(ip)
        for reason in COOLDOWN_REASONS:
            self._cooldowns.seed(ip, reason)
        for upstream in self._upstreams:
            self._rate_limited.seed(ip, upstream)
        for task in self._tasks:
            for result in ATTEMPT_RESULTS:
                self._requests.seed(task, ip, result)

    def _new_task(self, task: str) -> None:
        self._tasks.add(task)
        for result in RESULTS:
            self._jobs.seed(task, result)
        for ip in self._ips:
            for result in ATTEMPT_RESULTS:
                self._requests.seed(task, ip, result)

    def _new_upstream(self, upstream: str) -> None:
        self._upstreams.add(upstream)
        self._expired.seed(upstream)
        self._rejected.seed(upstream)
        for ip in self._ips:
            self._rate_limited.seed(ip, upstream)

    def strategy_mint(self, strategy: str, mint: str) -> None:
        """Start ``strategy``'s series for base ``mint`` at 0: quotes by result, opportunities."""
        if (strategy, mint) in self._strategy_mints:
            return
        self._strategy_mints.add((strategy, mint))
        self._opportunities.seed(strategy, mint)
        self._on_chain.seed(strategy, mint)
        self._realised.seed(strategy, mint)
        self._expected.seed(strategy, mint)
        for reason in SKIP_REASONS:
            self._skipped.seed(strategy, reason)
        for result in RESULTS:
            self._quotes.seed(strategy, mint, result)

    def lander_endpoint(self, lander: str, endpoint: str) -> None:
        """Start a lander endpoint's series at 0: would send, sent, accepted, landed. Landers call it at setup."""
        if (lander, endpoint) in self._lander_endpoints:
            return
        self._lander_endpoints.add((lander, endpoint))
        for children in (self._lander_would_send, self._lander_attempts, self._lander_success, self._lander_landed):
            children.seed(lander, endpoint)

    # --- hooks -------------------------------------------------------------------------

    def on_attempt(self, job: Job, worker: WorkerInfo, outcome: Outcome) -> None:
        result = outcome.result
        self._seen(worker.ip, job.task, job.upstream)
        self._requests.get(job.task, worker.ip, result).inc()
        if result != "bind_error":  # nothing was sent: no service time to speak of
            self._latency.get(job.task, worker.ip).observe(outcome.latency * 1000.0)
        if result == "rate_limited":
            self._rate_limited.get(worker.ip, job.upstream).inc()

    def on_cooldown(self, ip: str, upstream: str, reason: str, seconds: float) -> None:
        self._cooldowns.get(ip, reason).inc()
        if math.isfinite(seconds):  # a suspension (bind_error) lasts until a rescan: not a duration
            self._cooldown_seconds.get(ip, reason).observe(seconds)

    def on_final(self, job: Job, final: JobOutcome) -> None:
        if final.task not in self._tasks:
            self._new_task(final.task)
        if final.upstream not in self._upstreams:
            self._new_upstream(final.upstream)
        self._jobs.get(final.task, final.result).inc()
        if final.result == "expired":
            self._expired.get(final.upstream).inc()
        elif final.result == "rejected":
            self._rejected.get(final.upstream).inc()

    def on_worker_up(self, worker: WorkerInfo, _: str) -> None:
        if worker.ip not in self._ips:
            self._new_ip(worker.ip)
        farm = self.state.farm
        if farm is not None and worker.worker_id in farm.supervisor.slots:
            return  # a local worker: its restarts are the supervisor's count
        if worker.worker_id in self._remote_seen:
            self.state.worker_registered_again(worker.ip)
        self._remote_seen.add(worker.worker_id)

    # --- strategy and landing series -------------------------------------------------

    def lander_would_send(self, lander: str, endpoint: str) -> None:
        """Dry run: ``lander`` built and signed a bundle or transaction for ``endpoint`` and did not send it."""
        self.lander_endpoint(lander, endpoint)
        self._lander_would_send.get(lander, endpoint).inc()

    def lander_attempt(self, lander: str, endpoint: str) -> None:
        """A bundle or transaction was sent to ``endpoint`` (a Jito region, an RPC URL) by ``lander``."""
        self.lander_endpoint(lander, endpoint)
        self._lander_attempts.get(lander, endpoint).inc()

    def lander_success(self, lander: str, endpoint: str) -> None:
        """The endpoint accepted a submission (it answered with a bundle id or signature)."""
        self._lander_success.get(lander, endpoint).inc()

    def lander_landed(self, lander: str, endpoint: str) -> None:
        """A submission through ``endpoint`` was confirmed on chain."""
        self._lander_landed.get(lander, endpoint).inc()

    def quote(self, strategy: str, mint: str, result: str) -> None:
        """One quote of ``strategy`` for base ``mint`` ended with ``result`` (ok, empty, rate_limited, ...)."""
        self.strategy_mint(strategy, mint)
        self._quotes.get(strategy, mint, result).inc()

    def opportunity(self, strategy: str, mint: str, *, profit_lamports: int) -> None:
        """``strategy`` found a profitable round trip of base ``mint``, expected to make ``profit_lamports``.

        Always lamports (1e-9 SOL), whatever the base mint: a SOL round trip passes its profit
        in raw units as it is; any other base mint converts its raw profit at the SOL price it
        priced its costs with (``PriceBook.to_lamports``). Exported in SOL.
        """
        self.strategy_mint(strategy, mint)
        self._opportunities.get(strategy, mint).inc()
        self._profit.get(strategy, mint).observe(profit_lamports / LAMPORTS_PER_SOL)

    def opportunity_skipped(self, strategy: str, reason: str) -> None:
        """``strategy`` found an opportunity it did not land, for ``reason`` (one of :data:`SKIP_REASONS`)."""
        self._skipped.get(strategy, reason).inc()

    def round_trip(self, strategy: str, mint: str, *, expected_lamports: int, realised_lamports: int) -> None:
        """A round trip of base ``mint`` is on chain and its balance changes were read: what it made.

        Lamports, whatever the base mint (converted at the SOL price its costs were priced with);
        exported in SOL, next to what it was expected to make.
        """
        self.strategy_mint(strategy, mint)
        rt = self.round_trips.setdefault((strategy, mint), RoundTrips())
        rt.on_chain += 1
        rt.expected_lamports += expected_lamports
        rt.realised_lamports += realised_lamports
        self._on_chain.get(strategy, mint).inc()
        self._realised.get(strategy, mint).set(rt.realised_lamports / LAMPORTS_PER_SOL)
        self._expected.get(strategy, mint).set(rt.expected_lamports / LAMPORTS_PER_SOL)

    def titan_source(self, source: TitanSource) -> None:
        """Export an engine's Titan connections, streams, refusals and quote ages at each scrape."""
        self.titan.sources.append(source)

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
            self.titan.freeze()
            try:
                body = await asyncio.to_thread(encoder, self.registry)
            finally:
                self.state.thaw()
                self.titan.thaw()
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
