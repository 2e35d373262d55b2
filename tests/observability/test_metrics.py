"""FarmMetrics on a real farm: real workers on loopback IPs, a real server, /metrics scraped over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from broker.jobs import HttpRequest
from broker.types import JobSpec
from galileo.farm.coordinator import Farm
from galileo.metrics import LATENCY_BUCKETS_MS, FarmMetrics, MetricsError
from tests.farm.conftest import Recorder, loopback

Make = Callable[..., Any]
Labels = dict[str, str]


class Scrape:
    """One /metrics answer, as (sample name, labels) -> value."""

    def __init__(self, text: str, openmetrics: bool = False) -> None:
        parse = parse_openmetrics if openmetrics else text_string_to_metric_families
        self.families = {f.name: f for f in parse(text)}
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for fam in self.families.values():
            for s in fam.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name: str) -> list[Labels]:
        return [dict(lbl) for (n, lbl) in self.samples if n == name]

    def moved(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """The series of ``name`` that are not 0 (counters start at 0 once their labels are known)."""
        return {tuple(sorted(lbl)): v for (n, lbl), v in self.samples.items() if n == name and v != 0}


async def scrape(address: tuple[str, int], accept: str | None = None) -> tuple[Scrape, aiohttp.ClientResponse]:
    headers = {"Accept-Encoding": "gzip"}  # as Prometheus asks
    if accept:
        headers["Accept"] = accept
    url = f"http://{address[0]}:{address[1]}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200
        text = await resp.text()
    return Scrape(text, openmetrics=bool(accept and "openmetrics" in accept)), resp


def get(url: str, *, upstream: str = "quotes", task: str = "quote_buy", **kw: Any) -> JobSpec:
    return JobSpec(HttpRequest(url=url), upstream=upstream, task=task, **kw)


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_series_move_with_the_jobs_the_farm_ran(make_farm: Make, recorder: Recorder) -> None:
    ips = loopback(3, start=70)
    farm: Farm = await make_farm(ips)
    metrics = FarmMetrics()
    metrics.attach(farm)
    address = await metrics.serve("127.0.0.1:0")
    try:
        outs = await asyncio.gather(*(farm.submit(get(f"{recorder.url}/q")) for _ in range(90)))
        assert all(o.ok for o in outs)
        limited = ips[1]
        recorder.limited[(limited, "/land")] = 30  # Retry-After: 30 s
        out = await farm.run(get(f"{recorder.url}/land", upstream="jito:ny", task="lander", require_ip=limited))
        assert out.result == "rate_limited"

        m, resp = await scrape(address)
        assert resp.headers["Content-Type"].startswith("text/plain")

        # Requests: exactly what the server saw, per source address and result.
        served = Counter((h.path, h.remote, h.status) for h in recorder.hits)
        for ip in ips:
            assert m.value("galileo_ip_requests_total", task="quote_buy", ip=ip, result="ok") == served["/q", ip, 200]
            assert served["/q", ip, 200] > 0  # every worker carried some
        assert sum(served[k] for k in served if k[0] == "/q") == 90
        assert m.value("galileo_ip_requests_total", task="lander", ip=limited, result="rate_limited") == 1
        assert {s["ip"] for s in m.series("galileo_ip_requests_total")} == set(ips)

        # Latency histogram: real buckets from 1 ms to 10 s, one observation per attempt.
        for ip in ips:
            les = {
                s["le"] for s in m.series("galileo_ip_latency_ms_bucket") if s["ip"] == ip and s["task"] == "quote_buy"
            }
            assert les == {str(b) for b in LATENCY_BUCKETS_MS} | {"+Inf"}
            assert "1.0" in les and "10000.0" in les
            count = m.value("galileo_ip_latency_ms_count", task="quote_buy", ip=ip)
            assert count == served["/q", ip, 200]
            assert m.value("galileo_ip_latency_ms_bucket", task="quote_buy", ip=ip, le="+Inf") == count
            assert m.value("galileo_ip_latency_ms_bucket", task="quote_buy", ip=ip, le="10000.0") == count

        # The forced 429: one rate-limited answer, one cooldown honouring Retry-After, that IP only.
        assert m.moved("galileo_ip_rate_limited_total") == {(("ip", limited), ("upstream", "jito:ny")): 1}
        assert m.moved("galileo_ip_cooldown_total") == {(("ip", limited), ("reason", "rate_limited")): 1}
        assert m.value("galileo_ip_cooldown_seconds_count", ip=limited, reason="rate_limited") == 1
        assert m.value("galileo_ip_cooldown_seconds_sum", ip=limited, reason="rate_limited") >= 30
        assert m.moved("galileo_ip_cooldown_active") == {(("ip", limited), ("upstream", "jito:ny")): 1}

        # Terminal outcomes.
        assert m.value("galileo_jobs_total", task="quote_buy", result="ok") == 90
        assert m.value("galileo_jobs_total", task="lander", result="rate_limited") == 1

        # State read at scrape time: one series per worker address.
        for ip in ips:
            assert m.value("galileo_ip_inflight", ip=ip) == 0
            assert m.value("galileo_ip_utilization_ratio", ip=ip) == 0
            assert m.value("galileo_worker_up", ip=ip) == 1
            assert m.value("galileo_worker_restarts_total", ip=ip) == 0
            assert m.value("galileo_network_ip_inventory_total", ip=ip) == 1
            assert m.get("galileo_worker_loop_lag_seconds", ip=ip) is not None
            assert m.get("galileo_worker_rss_bytes", ip=ip) is not None
        assert m.value("galileo_late_results_total") == 0
    finally:
        await metrics.close()


async def test_inflight_queue_expired_rejected_and_restarts(make_farm: Make, recorder: Recorder) -> None:
    ips = loopback(2, start=75)
    farm: Farm = await make_farm(ips)
    metrics = FarmMetrics()
    metrics.attach(farm)
    address = await metrics.serve("127.0.0.1:0")
    try:
        # In flight: the server holds every request for a second.
        recorder.delay = 1.0
        slow = [farm.submit(get(f"{recorder.url}/slow", upstream="slow")) for _ in range(6)]
        await wait_for(lambda: sum(len(w.inflight) for w in farm.hub.workers.values()) == 6)
        held = {w.ip: len(w.inflight) for w in farm.hub.workers.values()}
        capacity = {w.ip: w.capacity for w in farm.hub.workers.values()}
        m, _ = await scrape(address)
        for ip in ips:
            assert m.value("galileo_ip_inflight", ip=ip) == held[ip]
            assert m.value("galileo_ip_utilization_ratio", ip=ip) == pytest.approx(held[ip] / capacity[ip])
        await asyncio.gather(*slow)
        recorder.delay = 0.0

        # Queued for an IP that does not exist, then expired; refused when the queue is full.
        waiting = farm.submit(get(f"{recorder.url}/x", upstream="nowhere", require_ip="127.0.0.254", timeout=0.5))
        m, _ = await scrape(address)
        assert m.value("galileo_queue_depth", upstream="nowhere") == 1
        assert (await waiting).result == "expired"
        farm.hub.max_queued = 0
        assert (await farm.submit(get(f"{recorder.url}/x", upstream="full", task="quote_sell"))).result == "rejected"
        farm.hub.max_queued = 50_000
        m, _ = await scrape(address)
        assert m.value("galileo_queue_depth", upstream="nowhere") == 0  # emptied, not vanished
        assert m.value("galileo_jobs_expired_total", upstream="nowhere") == 1
        assert m.value("galileo_jobs_rejected_total", upstream="full") == 1
        assert m.value("galileo_jobs_total", task="quote_buy", result="expired") == 1
        assert m.value("galileo_jobs_total", task="quote_sell", result="rejected") == 1

        # A worker killed and restarted by the supervisor is counted once, and is up again.
        victim = farm.supervisor.slots[f"local/{ips[0]}"]
        old_pid = victim.pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        await wait_for(lambda: any(w.ip == ips[0] and w.pid != old_pid for w in farm.hub.workers.values()))
        m, _ = await scrape(address)
        assert m.value("galileo_worker_restarts_total", ip=ips[0]) == 1
        assert m.value("galileo_worker_restarts_total", ip=ips[1]) == 0
        assert m.value("galileo_worker_up", ip=ips[0]) == 1
    finally:
        await metrics.close()


async def test_openmetrics_and_gzip_are_negotiated(make_farm: Make, recorder: Recorder) -> None:
    farm: Farm = await make_farm(loopback(1, start=78))
    metrics = FarmMetrics()
    metrics.attach(farm)
    address = await metrics.serve("127.0.0.1:0")
    try:
        assert (await farm.run(get(f"{recorder.url}/q"))).ok
        accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        m, resp = await scrape(address, accept)
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert resp.headers.get("Content-Encoding") == "gzip"
        assert m.value("galileo_ip_requests_total", task="quote_buy", ip="127.0.0.78", result="ok") == 1
        assert m.value("galileo_network_ip_inventory_total", ip="127.0.0.78") == 1
        assert m.families["galileo_network_ip_inventory_total"].type == "gauge"
        assert m.families["galileo_worker_restarts"].type == "counter"
    finally:
        await metrics.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        await scrape(address)


async def test_strategy_and_lander_series_and_safe_labels() -> None:
    metrics = FarmMetrics()
    url = "https://user:hunter2@ny.mainnet.block-engine.jito.wtf/api/v1/bundles?uuid=s3cr3t-uuid"
    for _ in range(3):
        metrics.lander_attempt("jito", url)
    metrics.lander_success("jito", url)
    metrics.lander_landed("jito", url)
    for n in range(100):  # a nonce in the query string makes no new series
        metrics.lander_landed("jito", url.replace("s3cr3t-uuid", f"nonce-{n}"))
    metrics.quote("blind", "SOL", "ok")
    metrics.quote("blind", "SOL", "empty")
    metrics.opportunity("blind", "SOL", profit_lamports=4_200_000)
    metrics.opportunity("blind", "SOL", profit_lamports=200_000_000)
    body, content_type = metrics.render()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert "hunter2" not in text and "s3cr3t" not in text and "uuid" not in text and "nonce" not in text
    m = Scrape(text)
    endpoint = "https://ny.mainnet.block-engine.jito.wtf/api/v1/bundles"
    assert m.value("galileo_lander_attempts_total", lander="jito", endpoint=endpoint) == 3
    assert m.value("galileo_lander_success_total", lander="jito", endpoint=endpoint) == 1
    assert m.value("galileo_lander_landed_total", lander="jito", endpoint=endpoint) == 101
    assert len(m.series("galileo_lander_landed_total")) == 1
    assert m.value("galileo_quotes_total", strategy="blind", mint="SOL", result="empty") == 1
    assert m.value("galileo_opportunities_total", strategy="blind", mint="SOL") == 2
    assert m.value("galileo_opportunity_profit_sol_count", strategy="blind", mint="SOL") == 2
    assert m.value("galileo_opportunity_profit_sol_sum", strategy="blind", mint="SOL") == pytest.approx(0.2042)
    assert m.value("galileo_opportunity_profit_sol_bucket", strategy="blind", mint="SOL", le="0.005") == 1
    assert not any(name.endswith("_created") for name, _ in m.samples)


async def test_label_sets_past_the_bound_share_one_series(monkeypatch: pytest.MonkeyPatch) -> None:
    import galileo.metrics

    monkeypatch.setattr(galileo.metrics, "MAX_SERIES_PER_METRIC", 3)
    metrics = FarmMetrics()
    for i in range(10):
        metrics.quote("blind", f"mint{i}", "ok")
    m = Scrape(metrics.render()[0].decode())
    assert len(m.series("galileo_quotes_total")) == 4
    assert m.value("galileo_quotes_total", strategy="other", mint="other", result="other") == 7


async def test_serve_refuses_a_taken_port_and_a_bad_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsError, match=r"bot\.prometheus\.listen: cannot serve /metrics on 127\.0\.0\.1:"):
            await FarmMetrics().serve(f"127.0.0.1:{port}")
    with pytest.raises(MetricsError, match="is not HOST:PORT"):
        await FarmMetrics().serve("localhost")
