"""Landing that scales with IPs: Jito sends accepted per second against N x regions x the per-(IP, region) rate.

The simulator limits every (source IP, Jito region) pair to ``rate`` requests/s (its
``--rate-limit`` is per source IP and bucket, and each region is its own bucket; the same
rate applies to its RPC, which only serves the blockhash and one status poll a second here).
The farm is told the rate (``upstreams.jito.rate_limit_per_ip``). A producer offers
``OVERLOAD`` times more bundles than fit, each a distinct signed transaction (a tip transfer),
straight to the :class:`~galileo.landing.LanderStack`; every bundle goes to every region.
Counted over a window after a warm-up: sends the simulator accepted per second, against
``N x regions x rate``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from solders.keypair import Keypair

from galileo.bench._util import target, temp_runtime
from galileo.bench.simproc import sim_process
from galileo.chain import ChainState
from galileo.config import GalileoConfig, parse_config
from galileo.farm.coordinator import Farm
from galileo.landing import Assembled, LanderStack
from galileo.tx import JITO_TIP_ACCOUNTS, build_transaction, tip_instruction
from galileo.upstreams import Upstreams

__all__ = ["landing", "landing_run"]

SOL = "So11111111111111111111111111111111111111112"
REGIONS = ("frankfurt", "ny")
OVERLOAD = 1.5  # bundles offered per second, as a multiple of what the IPs can send


def _config(sim_url: str, runtime: Any, ips: list[str], rate: float) -> GalileoConfig:
    quoted = ", ".join(f'"{ip}"' for ip in ips)
    regions = ", ".join(f"'{sim_url}/jito/{r}'" for r in REGIONS)
    return parse_config(f"""
bot: {{network: {{enable_multiple_ip: true, manual_ips: [{quoted}]}}, prometheus: {{enable: false}}}}
farm: {{runtime_dir: '{runtime}'}}
upstreams:
  rpc: {{urls: ['{sim_url}/rpc'], rate_limit_per_ip: {rate:g}}}
  jito: {{endpoints: [{regions}], rate_limit_per_ip: {rate:g}}}
lander: {{mode: live, follow_timeout_s: 10}}
""")


async def _offer(lander: LanderStack, chain: ChainState, wallet: Keypair, per_s: float, stop: asyncio.Event) -> None:
    """``per_s`` distinct bundles a second (a tip of its own amount each), landed without waiting."""
    payer = str(wallet.pubkey())
    tasks: set[asyncio.Task[Any]] = set()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in itertools.count():
        if stop.is_set():
            break
        await asyncio.sleep(max(0.0, start + i / per_s - loop.time()))
        bh = await chain.blockhash()
        tip = tip_instruction(payer, JITO_TIP_ACCOUNTS[i % len(JITO_TIP_ACCOUNTS)], 10_000 + i)
        built = build_transaction(wallet, [tip], [], bh.blockhash)
        tx = Assembled(
            jito=built, rpc=None, last_valid_block_height=bh.last_valid_block_height, tip=10_000 + i, priority_fee=0
        )
        task = asyncio.create_task(lander.land(tx, SOL))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=5)


async def landing_run(n_ips: int, rate: float, *, warmup: float, seconds: float, net: int) -> dict[str, Any]:
    """One cell: ``n_ips`` IPs, every region limited to ``rate`` per IP."""
    ips = [f"127.46.{net}.{i}" for i in range(1, n_ips + 1)]
    capacity = n_ips * len(REGIONS) * rate
    async with sim_process(rate_limit=rate, seed=17) as sim:
        with temp_runtime() as rt:
            cfg = _config(sim.url, rt, ips, rate)
            async with Farm(cfg, runtime_dir=rt, log_level="warning") as farm:
                if not await farm.wait_ready(timeout=30):
                    raise RuntimeError(f"{n_ips} workers were not ready within 30 s")
                upstreams = Upstreams(cfg)
                chain = ChainState(farm, upstreams)
                chain.start()
                lander = LanderStack(farm, upstreams, chain, cfg.lander, ["jito"])
                stop = asyncio.Event()
                producer = asyncio.create_task(_offer(lander, chain, Keypair(), OVERLOAD * n_ips * rate, stop))
                try:
                    await asyncio.sleep(warmup)
                    s0, t0 = await sim.stats(), time.monotonic()
                    await asyncio.sleep(seconds)
                    s1, t1 = await sim.stats(), time.monotonic()
                finally:
                    stop.set()
                    await producer
                    await lander.close(timeout=1)
                    await chain.stop()
    window = t1 - t0

    def jito(stats: dict[str, Any], status: str) -> int:
        by = stats["requests"]["by_service"]
        return sum(v.get(status, 0) for k, v in by.items() if k.startswith("jito"))

    accepted = (s1["sends"]["jito_bundle"]["accepted"] - s0["sends"]["jito_bundle"]["accepted"]) / window
    limited = jito(s1, "429") - jito(s0, "429")
    answered = jito(s1, "200") - jito(s0, "200") + limited
    return {
        "ips": n_ips,
        "regions": len(REGIONS),
        "rate_per_ip_region": rate,
        "offered_bundles_per_s": OVERLOAD * n_ips * rate,
        "capacity_sends_per_s": capacity,
        "accepted_sends_per_s": round(accepted, 2),
        "accepted_vs_capacity": round(accepted / capacity, 4),
        "jito_share_429": round(limited / answered, 5) if answered else 0.0,
        "landed": s1["sends"]["jito_bundle"]["landed"],
        "window_s": round(window, 3),
    }


async def landing(quick: bool = False) -> dict[str, Any]:
    """N = 16 at 1/s per (IP, region); N = 4 and 16 at 5/s (the documented Jito limit)."""
    warmup, seconds = (1.5, 2.0) if quick else (4.0, 12.0)
    cells = [(8, 1.0)] if quick else [(16, 1.0), (4, 5.0), (16, 5.0)]
    runs = {
        f"n{n}_r{rate:g}": await landing_run(n, rate, warmup=warmup, seconds=seconds, net=i + 1)
        for i, (n, rate) in enumerate(cells)
    }
    if quick:
        return {"runs": runs, "targets": []}
    return {
        "runs": runs,
        "targets": [
            target("runs.n16_r1.accepted_sends_per_s", ">=", 0.9 * 32, "N=16, 2 regions, 1/s per (IP, region)"),
            target("runs.n4_r5.accepted_vs_capacity", ">=", 0.9, "N=4 at 5/s: 0.9 of 40 sends/s"),
            target("runs.n16_r5.accepted_vs_capacity", ">=", 0.9, "N=16 at 5/s: 0.9 of 160 sends/s"),
        ],
    }
