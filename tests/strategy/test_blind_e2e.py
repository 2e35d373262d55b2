"""The blind strategy end to end: 8 loopback IPs, the real simulator, real workers, real bundles."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address

from galileo.bench.blind import blind_config
from galileo.farm.coordinator import Farm
from galileo.sim import SimConfig, SimServer, start_sim
from galileo.sim.prices import MINTS
from galileo.strategy.engine import RoundTripEngine, Shape
from galileo.tx import ephemeral_keypair, write_keypair

IPS = [f"127.0.4.{i}" for i in range(1, 9)]
SOL = "So11111111111111111111111111111111111111112"


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    server = await start_sim(SimConfig(port=0, seed=11, rate_limit=20))
    yield server
    await server.close()


async def run_strategy(
    sim: SimServer, tmp_path: Path, mode: str, seconds: float, min_landed: int = 0
) -> tuple[RoundTripEngine, Farm, dict[str, Any]]:
    """Runs the strategy `seconds`, and on until `min_landed` round trips landed (at most 3x as long):
    how many land in a few seconds is chance (3-8 in 6 s here), and a test must not hinge on it."""
    kp = ephemeral_keypair()
    write_keypair(tmp_path / "id.json", kp)
    cfg = blind_config(sim.url, tmp_path, IPS, mode)  # the configuration `galileo bench blind` runs
    async with Farm(cfg, runtime_dir=tmp_path, log_level="warning") as farm:
        assert await farm.wait_ready()
        strategy = RoundTripEngine(farm, cfg, kp, Shape.blind(cfg), metrics=farm.metrics)
        stop = asyncio.Event()
        task = asyncio.create_task(strategy.run(stop))
        await asyncio.sleep(seconds)
        for _ in range(int(seconds * 2 / 0.25)):
            if strategy.stats.totals()["landed"] >= min_landed:
                break
            await asyncio.sleep(0.25)
        stop.set()
        await asyncio.wait_for(task, 30)
        # Count with nothing queued or in flight: a status poll cancelled at close still runs.
        for _ in range(100):
            snapshot = farm.snapshot()
            if not snapshot["farm"]["queued"] and not any(row["inflight"] for row in snapshot["workers"]):
                break
            await asyncio.sleep(0.05)
    return strategy, farm, snapshot


async def sim_json(sim: SimServer, path: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(f"{sim.url}{path}") as resp:
        return await resp.json()


async def test_live_blind_strategy_over_8_ips(sim: SimServer, tmp_path: Path) -> None:
    strategy, farm, snapshot = await run_strategy(sim, tmp_path, "live", 6.0, min_landed=1)
    stats = await sim_json(sim, "/sim/stats")
    log = (await sim_json(sim, "/sim/requests?service=jupiter"))["requests"]

    # Batches spread over all 8 IPs, as the simulator saw them.
    by_ip = stats["requests"]["by_ip_service"]
    assert {ip for ip in by_ip if by_ip[ip].get("jupiter", {}).get("200", 0) > 20} == set(IPS)

    # Each batch's legs came from the addresses the farm says, the sell leg on the buy leg's IP
    # unless that IP had just been rate-limited (cooling).
    seen: set[tuple[str, str, str, str]] = set()
    limited_at: dict[str, list[float]] = {}
    for r in log:
        if not r["path"].startswith("/jupiter/swap/v1/quote"):
            continue
        q = parse_qs(urlsplit(r["path"]).query)
        if r["status"] == "200":
            seen.add((r["ip"], q["inputMint"][0], q["outputMint"][0], q["amount"][0]))
        elif r["status"] == "429":
            limited_at.setdefault(r["ip"], []).append(r["t"])
    records = list(strategy.stats.recent)
    assert len(records) > 100
    for b in records:
        assert (b.buy_ip, b.base_mint, b.intermediate_mint, str(b.size)) in seen, b
        assert (b.sell_ip, b.intermediate_mint, b.base_mint, str(b.buy_out)) in seen, b
        if b.sell_ip != b.buy_ip:
            assert limited_at.get(b.buy_ip), f"batch {b.batch_id} moved off {b.buy_ip}, which was never limited"
    # Staying is the rule, moving the exception: how often an IP is cooling depends on how many
    # 429s learning costs on a busy machine (0.86-0.97 seen), so the bound is loose on purpose;
    # the exact promise is the per-batch check above.
    assert strategy.stats.sell_on_buy_ip > 0.6 * len(records)

    # Profitable round trips became bundles the simulator verified and landed.
    bundles = stats["sends"]["jito_bundle"]
    totals = strategy.stats.totals()
    assert totals["opportunities"]["SOL"] > 0
    # Each bundle goes to both regions. A copy that reaches its region after the other copy has
    # landed (it waited on its IP's Jito pacing) is "already processed": nothing else is refused.
    # The simulator counts that answer as a refusal, the lander as a success (the bytes are on
    # chain and it follows them).
    rejected = bundles["rejected"]
    assert bundles["accepted"] > 0 and set(rejected) <= {"already_processed"}
    assert bundles["received"] == bundles["accepted"] + rejected.get("already_processed", 0)
    # A send that timed out may have reached the simulator: only those make the counts differ.
    lost = sum(row["timeouts"] + row["errors"] for row in snapshot["workers"])
    assert totals["accepted"] <= bundles["received"] <= totals["accepted"] + lost
    # Every bundle runs in the VM. One that fails lost the auction or met a price that moved past a
    # leg's minimum out (6001), never an assembly error; one that lands made at least its
    # min_quote_profit (20 000 lamports), so the wallet never loses. The ones that landed are seen
    # by both. Pools hold their price `pool_hold_slots` (6) slots, so most gaps outlive the two
    # slots before a bundle runs: 6 s land a few (4-6 in 6 runs) and usually see failures too, but
    # not always (CI once saw none), so failures are only checked for their kind here; the VM
    # refusing outbid and slipped bundles is shown deterministically in tests/sim/test_sim_vm.py
    # and tests/tx/test_round_trips_in_sim.py.
    chain = stats["chain"]
    assert bundles["landed"] > 0, f"no round trip landed in 6 s: {chain['failures_by_error']}"
    assert set(chain["failures_by_error"]) <= {"auction: outbid", "jupiter: 6001 SlippageToleranceExceeded"}
    assert totals["landed"] == bundles["landed"]
    assert chain["pnl"]["total_lamports"] >= 20_000 * bundles["landed"]

    # Each landed round trip's realised P&L was read back from the chain (getTransaction): together
    # exactly what the wallet's SOL (its lamports and its token accounts', wrapped SOL and rent) moved.
    landing = strategy.stats.landing
    assert landing.realised == totals["landed"] and landing.unrealised == 0
    vm, wallet = sim.state.vm, strategy.wallet.pubkey()
    atas = [get_associated_token_address(wallet, Pubkey.from_string(m)) for m in MINTS]
    holdings = vm.balance(wallet) + sum(vm.balance(a) for a in atas)
    assert landing.realised_profit[SOL] == holdings - vm.wallets[wallet].deposited
    (row,) = snapshot["round_trips"]  # what `galileo farm stats` shows, next to the expected profit
    assert (row["strategy"], row["mint"], row["on_chain"]) == ("blind", SOL, totals["landed"])
    assert row["realised_sol"] * 1e9 == pytest.approx(landing.realised_profit[SOL])
    assert row["expected_sol"] * 1e9 == pytest.approx(landing.realised_expected[SOL])

    # `galileo farm stats` (its snapshot) and /sim/stats agree, IP by IP (up to the requests
    # the simulator answered after the worker had given up on them).
    for row in snapshot["workers"]:
        sim_ip = stats["requests"]["by_ip"].get(row["ip"], {})
        assert row["ok"] <= sim_ip.get("200", 0) <= row["ok"] + row["timeouts"], row["ip"]
        assert row["rate_limited"] == sim_ip.get("429", 0), row["ip"]
    del farm


async def test_dry_run_sends_nothing_and_says_what_it_would_send(
    sim: SimServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="galileo.lander")  # per-send lines are at debug
    strategy, _, _ = await run_strategy(sim, tmp_path, "dry_run", 4.0)
    stats = await sim_json(sim, "/sim/stats")
    assert strategy.stats.totals()["opportunities"], "no opportunity in the run: nothing was tested"
    assert all(v["received"] == 0 for v in stats["sends"].values())
    would = [r for r in caplog.records if r.getMessage().startswith("dry run: would send bundle")]
    assert would and all(len(r.ident) == 64 for r in would)  # type: ignore[attr-defined]
    assert strategy.stats.landing.dry_run_sends == len(would) > 0
