"""The blind strategy end to end: 8 loopback IPs, ``galileo sim`` in its own process, live landing.

The configuration is the end-to-end test's (``tests/strategy/test_blind_e2e.py``): SOL against
USDC, USDT and JUP, three trade sizes, Jupiter quotes (the simulator allows 20 req/s per IP),
Jito bundles landed into the simulator's chain from a throwaway keypair. After a warm-up it
counts completed batches (both legs quoted), opportunities (profitable round trips) and
bundles accepted and landed per second. The full run adds a cell at 150 ms of simulated
latency with 4 IPs: with one batch per IP at a time it reached 0.32 of N·R/2; pipelined by
Little's law (see :mod:`galileo.strategy.pipeline`) throughput should not depend on latency.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from galileo.bench._util import temp_runtime
from galileo.bench.simproc import sim_process
from galileo.config import GalileoConfig, parse_config
from galileo.farm.coordinator import Farm
from galileo.farm.heap import frozen_heap
from galileo.strategy.engine import RoundTripEngine, Shape
from galileo.tx import ephemeral_keypair, write_keypair

__all__ = ["blind"]

SOL = "So11111111111111111111111111111111111111112"
RATE = 20.0  # the simulator's per-IP limit, as in the end-to-end test


def blind_config(sim_url: str, runtime: Path, ips: list[str], mode: str = "live") -> GalileoConfig:
    """The end-to-end test's configuration, pointed at ``sim_url``."""
    quoted = ", ".join(f'"{ip}"' for ip in ips)
    return parse_config(f"""
bot: {{network: {{enable_multiple_ip: true, manual_ips: [{quoted}]}}, prometheus: {{enable: false}}}}
farm: {{runtime_dir: '{runtime}'}}
upstreams:
  jupiter: {{base_url: '{sim_url}/jupiter/swap/v1', api_key_env: null}}
  rpc: {{urls: ['{sim_url}/rpc']}}
  jito:
    endpoints: ['{sim_url}/jito/frankfurt', '{sim_url}/jito/ny']
    rate_limit_per_ip: {RATE:g}
    tip_floor_url: '{sim_url}/jito/api/v1/bundles/tip_floor'
intermedium:
  mints: [EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v, Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCE8BenwNYB,
          JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN]
blind_strategy:
  enable: true
  base_mints:
    - mint: {SOL}
      trade_size_range: [500_000_000, 2_000_000_000]
      trade_range_count: 3
      trade_range_strategy: exponential
      min_quote_profit: 20_000
lander: {{mode: {mode}}}
wallet: {{keypair_path: '{runtime / "id.json"}'}}
""")


def _counts(strategy: RoundTripEngine) -> dict[str, int]:
    t = strategy.stats.totals()
    return {
        "batches": int(t["batches_completed"]),
        "opportunities": sum(int(n) for n in t["opportunities"].values()),
        "accepted": int(t["accepted"]),
        "landed": int(t["landed"]),
    }


async def blind(quick: bool = False, n_ips: int = 8) -> dict[str, Any]:
    """8 IPs at the simulator's own speed; the full run adds 4 IPs at 150 ms of latency."""
    seconds, warmup = (4.0, 1.0) if quick else (20.0, 3.0)
    result = await blind_run(n_ips, 0.0, seconds=seconds, warmup=warmup, net=0)
    if not quick:
        result["at_150ms"] = await blind_run(4, 150.0, seconds=seconds, warmup=5.0, net=1)
    return result


async def blind_run(n_ips: int, latency_ms: float, *, seconds: float, warmup: float, net: int) -> dict[str, Any]:
    """One cell: ``n_ips`` IPs, every simulated request ``latency_ms`` slower."""
    ips = [f"127.43.{net}.{i}" for i in range(1, n_ips + 1)]
    async with sim_process(rate_limit=RATE, seed=11) as sim:
        if latency_ms:
            await sim.control({"latency_ms": latency_ms})
        with temp_runtime() as rt:
            wallet = ephemeral_keypair()
            write_keypair(rt / "id.json", wallet)
            cfg = blind_config(sim.url, rt, ips)
            async with Farm(cfg, runtime_dir=rt, log_level="warning") as farm:
                if not await farm.wait_ready(timeout=30):
                    raise RuntimeError(f"{n_ips} workers were not ready within 30 s")
                strategy = RoundTripEngine(farm, cfg, wallet, Shape.blind(cfg))
                stop = asyncio.Event()
                with frozen_heap():  # as galileo farm start does
                    task = asyncio.create_task(strategy.run(stop))
                    try:
                        await asyncio.sleep(warmup)
                        before, t0 = _counts(strategy), time.monotonic()
                        stats0 = await sim.stats()
                        await asyncio.sleep(seconds - warmup)
                        after, t1 = _counts(strategy), time.monotonic()
                        stats1 = await sim.stats()
                    finally:
                        stop.set()
                        await asyncio.wait_for(task, 30)
    window = t1 - t0
    per_s = {k: round((after[k] - before[k]) / window, 2) for k in after}
    jupiter = {
        status: stats1["requests"]["by_service"].get("jupiter", {}).get(status, 0)
        - stats0["requests"]["by_service"].get("jupiter", {}).get(status, 0)
        for status in ("200", "429")
    }
    answered = jupiter["200"] + jupiter["429"]
    # Two quotes per batch: the ideal is N*R/2 batches/s if quoting were the only load.
    ideal_batches = n_ips * RATE / 2
    return {
        "ips": n_ips,
        "latency_ms": latency_ms,
        "window_s": round(window, 3),
        "batches_per_s": per_s["batches"],
        "opportunities_per_s": per_s["opportunities"],
        "bundles_accepted_per_s": per_s["accepted"],
        "bundles_landed_per_s": per_s["landed"],
        "batches_vs_ideal": round(per_s["batches"] / ideal_batches, 4),
        "sim_jupiter_ok_per_s": round(jupiter["200"] / window, 2),
        "sim_jupiter_ok_vs_NR": round(jupiter["200"] / window / (n_ips * RATE), 4),  # quotes + swap-instructions
        "sim_jupiter_share_429": round(jupiter["429"] / answered, 5) if answered else 0.0,
        "totals": after,
        "sim_sends": stats1["sends"],  # the whole run, by door: received, accepted, rejected (why), landed
        "targets": [],  # the issue sets none: this scenario reports what the whole pipeline does
    }
