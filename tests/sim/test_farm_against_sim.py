"""Issue 4's acceptance: 8 bound workers hammering the simulator's per-IP limit, counted by both sides."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from broker.jobs import JupiterQuote
from broker.types import JobSpec
from galileo.config import parse_config
from galileo.farm.coordinator import Farm
from galileo.sim import SimConfig, start_sim

IPS = [f"127.0.10.{i}" for i in range(1, 9)]
RATE = 20.0
SOL, USDC = "So11111111111111111111111111111111111111112", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


async def test_each_ip_is_held_to_the_limit_and_both_sides_count_the_same(tmp_path: Path) -> None:
    sim = await start_sim(SimConfig(port=0, seed=2, rate_limit=RATE))
    listed = ", ".join(f'"{ip}"' for ip in IPS)
    cfg = parse_config(
        f"bot: {{network: {{enable_multiple_ip: true, manual_ips: [{listed}]}}}}\nfarm: {{runtime_dir: '{tmp_path}'}}\n"
    )
    try:
        async with Farm(cfg, runtime_dir=tmp_path, log_level="warning") as farm:
            assert await farm.wait_ready()
            spec = JobSpec(
                JupiterQuote(
                    base_url=f"{sim.url}/jupiter/swap/v1", input_mint=SOL, output_mint=USDC, amount=1_000_000_000
                ),
                upstream="jupiter",
                timeout=5.0,
            )
            stop = time.monotonic() + 5.0
            started = time.monotonic()

            async def lane() -> None:
                while time.monotonic() < stop:
                    await farm.submit(spec)

            await asyncio.gather(*(lane() for _ in range(128)))  # as fast as it can: 16 lanes per IP
            elapsed = time.monotonic() - started
            farm_counts = {ip: farm.counters.by_upstream(ip).get("jupiter", {}) for ip in IPS}
        async with aiohttp.ClientSession() as s, s.get(f"{sim.url}/sim/stats") as resp:
            stats = await resp.json()
    finally:
        await sim.close()
    by_ip = stats["requests"]["by_ip_service"]
    for ip in IPS:
        sim_counts = by_ip[ip]["jupiter"]
        ok, limited = sim_counts.get("200", 0), sim_counts.get("429", 0)
        # The farm's own ledger equals what the simulator saw, exactly.
        assert farm_counts[ip].get("ok", 0) == ok, ip
        assert farm_counts[ip].get("rate_limited", 0) == limited, ip
        # At most R ok/s per source IP (a token bucket adds its one-second burst once).
        assert ok <= RATE * elapsed + RATE, (ip, ok, elapsed)
        assert ok >= 0.5 * RATE * elapsed, (ip, ok)  # and every IP was actually used near its limit
        per_second = stats["ok_per_second"][ip]["jupiter"]
        assert max(per_second.values()) <= 2 * RATE  # no one-second window beyond burst + refill
