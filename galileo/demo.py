"""``galileo demo``: the simulator plus a farm on loopback addresses, with a live table.

Everything is local and nothing is real money: ``galileo sim`` runs in its own process with a
per-IP rate limit, a farm of N workers on 127.0.0.2, 127.0.0.3, ... runs the blind strategy
against it with *live* landing (the simulator verifies and lands the bundles) and a throwaway
wallet, and a table shows each IP's traffic, 429s and cooldowns, and the strategy's totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from galileo.config import GalileoConfig, parse_config
from galileo.farm.forkserver import die_with_parent
from galileo.farm.runner import FarmRun, run_farm
from galileo.tx import ephemeral_keypair, write_keypair

__all__ = ["demo_config", "run_demo"]

SOL = "So11111111111111111111111111111111111111112"
_LISTENING = re.compile(rb"listening on (http://\S+)")


def demo_config(sim_url: str, ips: list[str], runtime: Path, keypair: Path) -> GalileoConfig:
    listed = ", ".join(f'"{ip}"' for ip in ips)
    u = sim_url
    return parse_config(f"""
bot:
  network: {{enable_multiple_ip: true, manual_ips: [{listed}]}}
  prometheus: {{enable: false}}
farm: {{runtime_dir: '{runtime}'}}
upstreams:
  jupiter: {{base_url: '{u}/jupiter/swap/v1', api_key_env: null}}
  rpc: {{urls: ['{u}/rpc']}}
  jito:
    endpoints: ['{u}/jito/frankfurt', '{u}/jito/ny', '{u}/jito/tokyo']
    tip_floor_url: '{u}/jito/api/v1/bundles/tip_floor'
    rate_limit_per_ip: null
intermedium:
  mints: [EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v, Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCE8BenwNYB,
          JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN, J1toso1uCk3RLmjorhTtrVwY9HJ7X8V9yYac6Y7kGCPn]
blind_strategy:
  enable: true
  quote_provider: jupiter
  base_mints:
    - mint: {SOL}
      trade_size_range: [250_000_000, 4_000_000_000]
      trade_range_count: 4
      trade_range_strategy: exponential
      min_quote_profit: 20_000
  enable_landers: [jito]
lander: {{mode: live, tip_lamports: 10_000}}
wallet: {{keypair_path: '{keypair}'}}
""")


@contextlib.asynccontextmanager
async def _simulator(rate_limit: float, seed: int) -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "galileo",
        "--log-level",
        "warning",
        "sim",
        "--port",
        "0",
        "--rate-limit",
        str(rate_limit),
        "--seed",
        str(seed),
        stdout=asyncio.subprocess.PIPE,
        # Out of the terminal's process group: Ctrl-C stops the farm first, then the simulator
        # (below); while the farm drains, its upstreams are still there.
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        match = _LISTENING.search(line)
        if match is None:
            raise RuntimeError(f"galileo sim did not start: {line!r}")
        yield match.group(1).decode()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()


def _table(run: FarmRun, started: float) -> Group:
    snap = run.farm.snapshot()
    t = Table(
        title=f"galileo demo: {snap['farm']['ready']} IPs, up {time.monotonic() - started:.0f}s", title_justify="left"
    )
    for col in ("ip", "state", "jobs/s", "ok", "429", "cooldowns"):
        t.add_column(col, justify="left" if col in ("ip", "state", "cooldowns") else "right", no_wrap=True)
    for w in snap["workers"]:
        cools = ", ".join(f"{c['upstream']} {c['left_s']:.1f}s" for c in w["cooldowns"]) or "-"
        t.add_row(w["ip"], w["state"], f"{w['jobs_per_s']:.1f}", str(w["ok"]), str(w["rate_limited"]), cools)
    totals: dict[str, Any] = run.strategy.stats.totals() if run.strategy else {}
    opp = sum(totals.get("opportunities", {}).values())
    line = Text(
        f"batches {totals.get('batches_completed', 0)}/{totals.get('batches_started', 0)}   "
        f"opportunities {opp}   bundles sent {totals.get('accepted', 0)}/{totals.get('sends', 0)}   "
        f"landed {totals.get('landed', 0)}   expired {totals.get('expired', 0)}",
        style="bold",
    )
    return Group(t, line)


async def run_demo(ips: int, duration: float | None, rate_limit: float, seed: int, console: Console) -> dict[str, Any]:
    """Run the demo; returns the strategy's totals at the end."""
    addresses = [f"127.0.0.{i}" for i in range(2, 2 + ips)]
    final: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="galileo-demo-") as tmp:
        runtime = Path(tmp)
        keypair = runtime / "demo-wallet.json"
        write_keypair(keypair, ephemeral_keypair())
        async with _simulator(rate_limit, seed) as sim_url:
            cfg = demo_config(sim_url, addresses, runtime, keypair)
            console.print(
                f"simulator on {sim_url} (rate limit {rate_limit:g}/s per IP and service); "
                f"farm on {addresses[0]} .. {addresses[-1]}; Ctrl-C to stop"
            )
            started = time.monotonic()

            async def show(run: FarmRun) -> None:
                nonlocal final
                with Live(_table(run, started), console=console, refresh_per_second=2) as live:
                    while True:
                        await asyncio.sleep(0.5)
                        live.update(_table(run, started))
                        if run.strategy is not None:
                            final = run.strategy.stats.totals()

            await run_farm(
                cfg, runtime_dir=runtime, duration=duration, log_level="warning", summary_every=0, on_started=show
            )
    return final
