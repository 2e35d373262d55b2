"""Titan as Titan is: a multi-leg run with a Titan buy leg against the simulator's real Titan limits.

``galileo sim`` in its own process holds Titan to one connection per token (its JWT ``jti``),
``concurrentStreams`` 4, and closes a connection when its token expires (the token here lives
an hour). The engine quotes SOL round trips through USDC and USDT at four sizes (8 (pair,
size)s for 4 streams), buying with Ultra and Titan and selling with Jupiter, over 8 IPs, with
one token. Streams update every 500 ms and are renewed every 30 s (in place).

Measured over the window, after every stream has delivered its first quote:

* the age of the freshest quote of each (pair, size) while it holds a stream, sampled every
  50 ms (a key enters with its stream's first quote; a renewal keeps it in, so a renewal's gap
  would show): max and p99, against 2 x the stream interval;
* connections refused or reconnected after the start (the simulator's count and ours);
* seconds of the window without a single Titan quote;
* the HTTP answers the IP holding the connection served meanwhile (it keeps serving HTTP).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from pathlib import Path
from typing import Any

from galileo.bench._util import percentile, target, temp_runtime
from galileo.bench.simproc import sim_process
from galileo.config import GalileoConfig, parse_config
from galileo.farm.coordinator import Farm
from galileo.sim.titan_auth import mint_token
from galileo.strategy.engine import RoundTripEngine, Shape
from galileo.strategy.stats import short_mint
from galileo.strategy.titan import TitanStreams
from galileo.tx import ephemeral_keypair, write_keypair

__all__ = ["titan", "titan_run"]

SOL = "So11111111111111111111111111111111111111112"
RATE = 20.0  # the simulator's per-IP HTTP limit, as in the blind scenario
INTERVAL_MS = 500
STREAMS = 4  # the simulator's concurrentStreams
TOKEN_ENV = "GALILEO_BENCH_TITAN_TOKEN"
SAMPLE = 0.05  # seconds between samples of the quotes' ages


def titan_config(sim_url: str, runtime: Path, ips: list[str], stream_seconds: float) -> GalileoConfig:
    quoted = ", ".join(f'"{ip}"' for ip in ips)
    ws = sim_url.replace("http", "ws", 1)
    return parse_config(f"""
bot: {{network: {{enable_multiple_ip: true, manual_ips: [{quoted}]}}, prometheus: {{enable: false}}}}
farm: {{runtime_dir: '{runtime}'}}
upstreams:
  jupiter: {{base_url: '{sim_url}/jupiter/swap/v1', api_key_env: null}}
  ultra: {{base_url: '{sim_url}/jupiter/ultra/v1', api_key_env: null}}
  rpc: {{urls: ['{sim_url}/rpc']}}
  jito: {{endpoints: ['{sim_url}/jito/ny'], rate_limit_per_ip: {RATE:g}}}
  titan: {{ws_url: '{ws}/titan/api/v1/ws', token_env: {TOKEN_ENV}, interval_ms: {INTERVAL_MS},
          stream_seconds: {stream_seconds:g}}}
intermedium: {{mints: [EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v, Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCE8BenwNYB]}}
blind_strategy:
  base_mints:
    - {{mint: {SOL}, trade_size_range: [500_000_000, 4_000_000_000], trade_range_count: 4,
       trade_range_strategy: exponential, min_quote_profit: 20_000}}
multi_leg: {{enable: true, buy_legs: [ultra, titan], sell_legs: [jupiter]}}
lander: {{mode: dry_run}}
wallet: {{keypair_path: '{runtime / "id.json"}'}}
""")


class _Ages:
    """The freshest quote's age of each (pair, size) while it holds a stream, sampled."""

    def __init__(self, titan: TitanStreams) -> None:
        self.titan = titan
        self.tenure: dict[tuple[str, str, int], float] = {}  # key -> since when it holds a stream
        self.samples: list[float] = []
        self.worst: dict[tuple[str, str, int], float] = {}
        self.quotes_by_second: dict[int, int] = {}
        self._seen = 0

    def sample(self, now: float) -> None:
        for key, slot in self.titan.slots.items():
            held = slot.stream_id is not None or slot.busy
            if not held:
                self.tenure.pop(key, None)
                continue
            start = self.tenure.setdefault(key, now)
            if slot.updated < start:
                continue  # its first quote since it got the stream has not come yet
            age = now - slot.updated
            self.samples.append(age)
            self.worst[key] = max(self.worst.get(key, 0.0), age)
        total = sum(slot.updates for slot in self.titan.slots.values())
        second = int(now)
        self.quotes_by_second[second] = self.quotes_by_second.get(second, 0) + total - self._seen
        self._seen = total


async def titan_run(n_ips: int, *, seconds: float, stream_seconds: float, net: int) -> dict[str, Any]:
    """One run: ``n_ips`` IPs, one token, the simulator's real Titan limits, ``seconds`` measured."""
    ips = [f"127.47.{net}.{i}" for i in range(1, n_ips + 1)]
    previous = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = mint_token("galileo-bench", ttl=3600)  # workers inherit it at fork
    try:
        async with sim_process(rate_limit=RATE, seed=23) as sim:
            await sim.control(
                {"titan_connections_per_jti": 1, "titan_concurrent_streams": STREAMS, "titan_token_expiry": True}
            )
            with temp_runtime() as rt:
                wallet = ephemeral_keypair()
                write_keypair(rt / "id.json", wallet)
                cfg = titan_config(sim.url, rt, ips, stream_seconds)
                async with Farm(cfg, runtime_dir=rt, log_level="warning") as farm:
                    if not await farm.wait_ready(timeout=30):
                        raise RuntimeError(f"{n_ips} workers were not ready within 30 s")
                    engine = RoundTripEngine(farm, cfg, wallet, Shape.multi_leg(cfg))
                    assert engine.titan is not None
                    stop = asyncio.Event()
                    task = asyncio.create_task(engine.run(stop))
                    try:
                        return await _measure(engine.titan, sim, seconds, task)
                    finally:
                        stop.set()
                        await asyncio.wait_for(task, 30)
    finally:
        if previous is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = previous


async def _measure(titan: TitanStreams, sim: Any, seconds: float, task: asyncio.Task[None]) -> dict[str, Any]:
    t_start = time.monotonic()
    while len(titan.quote_ages()) < STREAMS:  # warm-up: every stream has quoted once
        if time.monotonic() - t_start > 15 or task.done():
            raise RuntimeError(f"Titan streams did not all quote within 15 s: {titan.report()}")
        await asyncio.sleep(SAMPLE)
    warmup = time.monotonic() - t_start
    s0 = await sim.stats()
    refused0 = sum(titan.refusals.values())
    connects0 = sum(link.connects for link in titan.links)
    ages = _Ages(titan)
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        ages.sample(loop.time())
        await asyncio.sleep(SAMPLE)
    window = time.monotonic() - t0
    s1 = await sim.stats()
    (link,) = titan.links
    holder = link.ip or ""

    def served(stats: dict[str, Any]) -> int:
        by = stats["requests"]["by_ip_service"].get(holder, {})
        return sum(v.get("200", 0) for k, v in by.items() if k != "titan")

    refused_sim = {k: v - s0["titan"]["refused"].get(k, 0) for k, v in s1["titan"]["refused"].items()}
    per_second = [ages.quotes_by_second.get(s, 0) for s in sorted(ages.quotes_by_second)[1:-1]]  # whole seconds
    interval = INTERVAL_MS / 1000
    worst = max(ages.samples, default=math.nan)
    return {
        "ips": len(titan.farm.eligible("titan")),
        "tokens": len(titan.links),
        "streams": STREAMS,
        "keys": len(titan.slots),
        "interval_s": interval,
        "stream_seconds": titan.cfg.stream_seconds,
        "warmup_s": round(warmup, 3),
        "window_s": round(window, 3),
        "samples": len(ages.samples),
        "quote_age_max_s": round(worst, 4),
        "quote_age_p99_s": round(percentile(ages.samples, 0.99), 4),
        "quote_age_p50_s": round(percentile(ages.samples, 0.50), 4),
        "quote_age_max_vs_interval": round(worst / interval, 3),
        "quote_age_max_by_key": {f"{short_mint(k[1])}:{k[2]}": round(v, 4) for k, v in sorted(ages.worst.items())},
        "quotes_per_s_min": min(per_second, default=0),
        "seconds_without_quotes": sum(1 for n in per_second if n == 0),
        "refused_after_start": sum(refused_sim.values()),  # the simulator's count: connections and streams
        "refused_sim": refused_sim,
        "refused_by_galileo": sum(titan.refusals.values()) - refused0,
        "reconnects": sum(link.connects for link in titan.links) - connects0,
        "connections_opened_sim": s1["titan"]["connections_total"] - s0["titan"]["connections_total"],
        "stream_limit_refusals": titan.refusals[(link.token, "stream_limit")],
        "streams_opened": s1["titan"]["streams_opened"] - s0["titan"]["streams_opened"],
        "titan_ip_http_ok_per_s": round((served(s1) - served(s0)) / window, 2),
    }


async def titan(quick: bool = False) -> dict[str, Any]:
    """8 IPs, one token, 2 minutes (quick: 4 IPs, 3 s)."""
    if quick:
        result = await titan_run(4, seconds=3.0, stream_seconds=1.5, net=0)
    else:
        result = await titan_run(8, seconds=120.0, stream_seconds=30.0, net=1)
    interval = result["interval_s"]
    result["targets"] = [
        target("quote_age_max_s", "<=", 2 * interval, "freshest Titan quote per streamed (pair, size) <= 2 x interval"),
        target("refused_after_start", "<=", 0, "no Titan connection or stream refused after the start"),
        target("reconnects", "<=", 0, "the one connection held the whole window"),
        target("seconds_without_quotes", "<=", 0, "Titan quotes every second of the window"),
    ]
    return result
