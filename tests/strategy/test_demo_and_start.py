"""`galileo demo` and `galileo farm start` with the strategy, run as an operator runs them."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

from galileo.sim import SimConfig, start_sim
from galileo.tx import ephemeral_keypair, write_keypair


async def test_demo_finds_opportunities_and_sends_bundles_within_60s() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "galileo",
        "demo",
        "--ips",
        "4",
        "--duration",
        "15",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    done = re.search(rb"demo done: (\d+) batches, (\d+) opportunities, (\d+) bundles sent, (\d+) landed", out)
    assert done, out.decode()[-2000:]
    batches, opportunities, sent, landed = (int(x) for x in done.groups())
    # A round trip lands only if both legs still pay what it needs two slots later and it wins the
    # auction, else it fails for free. Pools hold their price 6 slots (`pool_hold_slots`), so in
    # 15 s some land: 17-20 in 5 runs (0 in 2 runs with a fresh price every slot).
    assert batches > 50 and opportunities > 0 and sent > 0 and landed > 0
    assert b"127.0.0.5" in out  # every worker has its row in the live table


async def test_farm_start_logs_a_summary_line_per_interval_and_no_line_per_event(tmp_path: Path) -> None:
    """Issue 17.5: per-event lines (a send per endpoint, an opportunity) are at debug; info gets the summary."""
    sim = await start_sim(SimConfig(port=0, seed=3))
    try:
        write_keypair(tmp_path / "id.json", ephemeral_keypair())
        cfg = tmp_path / "galileo.yaml"
        cfg.write_text(f"""
bot: {{network: {{enable_multiple_ip: true, manual_ips: [127.0.5.1, 127.0.5.2]}}, prometheus: {{enable: false}}}}
farm: {{runtime_dir: '{tmp_path / "rt"}'}}
upstreams:
  jupiter: {{base_url: '{sim.url}/jupiter/swap/v1', api_key_env: null}}
  rpc: {{urls: ['{sim.url}/rpc']}}
  jito: {{endpoints: ['{sim.url}/jito/ny'], tip_floor_url: '{sim.url}/jito/api/v1/bundles/tip_floor'}}
intermedium: {{mints: [EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v, JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN]}}
blind_strategy:
  enable: true
  base_mints: [{{mint: So11111111111111111111111111111111111111112, trade_size_range: [1000000000, 2000000000],
                trade_range_count: 2, min_quote_profit: 20000}}]
wallet: {{keypair_path: '{tmp_path / "id.json"}'}}
""")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "galileo",
            "farm",
            "start",
            "-c",
            str(cfg),
            "--summary-every",
            "2",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        # Startup takes a few seconds on a busy machine, then a summary comes every 2 s: read until
        # three came and one counted a dry run (about 11 s idle), then stop it.
        assert proc.stderr is not None
        head: list[bytes] = []
        summaries = dry = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while (summaries < 3 or not dry) and loop.time() < deadline:
            try:
                line = await asyncio.wait_for(proc.stderr.readline(), max(0.1, deadline - loop.time()))
            except TimeoutError:
                break
            if not line:
                break
            head.append(line)
            summaries += b"event=summary" in line
            dry += b"event=summary" in line and re.search(rb"dry run [1-9]\d*\)", line) is not None
        proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), 30)
        err = b"".join(head) + rest
    finally:
        await sim.close()
    assert proc.returncode == 0, err.decode()[-2000:]
    log = err.decode().splitlines()
    lines = [ln for ln in log if "event=summary" in ln]
    assert len(lines) >= 3
    assert all("opportunities:" in ln and "sends:" in ln and "landed:" in ln and "P&L" in ln for ln in lines)
    assert any(re.search(r"batches: [1-9]\d*/", ln) for ln in lines)
    assert any(re.search(r"dry run [1-9]\d*\)", ln) for ln in lines)  # the default lander.mode sends nothing
    assert not [ln for ln in log if "level=info" in ln and ("would send" in ln or 'msg="opportunity' in ln)]
    # From the strategy's start to its totals at the end, info carries the summaries and (nearly) nothing else.
    start = next(i for i, ln in enumerate(log) if 'msg="blind:' in ln)
    end = next(i for i, ln in enumerate(log) if 'msg="blind totals' in ln)
    steady = [ln for ln in log[start + 1 : end] if "level=info" in ln and "event=summary" not in ln]
    assert len(steady) <= 2, steady  # the old code wrote one line per opportunity and per endpoint sent to
