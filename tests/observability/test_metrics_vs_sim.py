"""Issue 7's acceptance: /metrics scraped during a farm run against the simulator moves with its counts."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import aiohttp

from broker.jobs import JupiterQuote
from broker.types import JobSpec
from galileo.config import parse_config
from galileo.farm.coordinator import Farm
from galileo.sim import SimConfig, start_sim

IPS = ["127.0.11.1", "127.0.11.2", "127.0.11.3"]
SOL, USDC = "So11111111111111111111111111111111111111112", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def series(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric in Prometheus text format."""
    out: dict[str, float] = {}
    for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def by_ip(values: dict[str, float], **want: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, v in values.items():
        parsed = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if all(parsed.get(k) == val for k, val in want.items()):
            out[parsed["ip"]] = out.get(parsed["ip"], 0.0) + v
    return out


async def test_metrics_move_with_the_simulators_counts(tmp_path: Path) -> None:
    sim = await start_sim(SimConfig(port=0, seed=4, rate_limit=15))
    port = free_port()
    listed = ", ".join(f'"{ip}"' for ip in IPS)
    cfg = parse_config(
        f"bot: {{network: {{enable_multiple_ip: true, manual_ips: [{listed}]}}}}\nfarm: {{runtime_dir: '{tmp_path}'}}\n"
    )
    spec = JobSpec(
        JupiterQuote(base_url=f"{sim.url}/jupiter/swap/v1", input_mint=SOL, output_mint=USDC, amount=10**9),
        upstream="jupiter",
        timeout=5.0,
        task="quote_buy",
    )
    try:
        async with Farm(cfg, runtime_dir=tmp_path, log_level="warning") as farm, aiohttp.ClientSession() as http:
            assert await farm.wait_ready()
            await farm.metrics.serve(f"127.0.0.1:{port}")
            scrapes = []
            for _ in range(2):  # two rounds: the counts must move between scrapes, with the simulator's
                await asyncio.gather(*(farm.submit(spec) for _ in range(120)))
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    text = await resp.text()
                async with http.get(f"{sim.url}/sim/stats") as resp:
                    stats = await resp.json()
                scrapes.append((text, stats))
    finally:
        await sim.close()
    for text, stats in scrapes:
        requests = series(text, "galileo_ip_requests_total")
        inventory = series(text, "galileo_network_ip_inventory_total")
        assert {re.search(r'ip="([^"]+)"', k).group(1) for k in inventory} == set(IPS)  # type: ignore[union-attr]
        ok = by_ip(requests, task="quote_buy", result="ok")
        limited = by_ip(requests, task="quote_buy", result="rate_limited")
        sim_ip = stats["requests"]["by_ip_service"]
        for ip in IPS:
            assert ok.get(ip, 0) == sim_ip[ip]["jupiter"].get("200", 0), ip
            assert limited.get(ip, 0) == sim_ip[ip]["jupiter"].get("429", 0), ip
        for name in ("galileo_ip_inflight", "galileo_ip_utilization_ratio", "galileo_worker_up"):
            assert {re.search(r'ip="([^"]+)"', k).group(1) for k in series(text, name)} == set(IPS), name  # type: ignore[union-attr]
        assert re.search(r'^galileo_ip_latency_ms_bucket\{.*ip="127\.0\.11\.1".*le="1\.0"', text, re.M)
    (first, first_stats), (second, second_stats) = scrapes
    total = lambda t: sum(series(t, "galileo_ip_requests_total").values())  # noqa: E731
    assert total(second) - total(first) == second_stats["requests"]["total"] - first_stats["requests"]["total"] > 0
    cooled = series(second, "galileo_ip_cooldown_total")
    assert sum(cooled.values()) > 0  # the simulator's 429s cooled IPs down, and the metric says why
