"""Issue 17.2 and 17.7: names promtool accepts, counters at 0 from the start, dry run on the landing
panels, and the opportunity profit in one stated unit (SOL) with buckets that fit it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from solders.hash import Hash
from solders.keypair import Keypair

from broker.jobs import HttpRequest
from broker.types import JobSpec
from galileo.chain import ChainState
from galileo.config import parse_config
from galileo.farm.coordinator import Farm
from galileo.landing import LanderStack, LandingStats
from galileo.metrics import COOLDOWN_REASONS, KEPT_NAMES, FarmMetrics
from galileo.metrics_state import BAD_FRAME_REASONS
from galileo.strategy.profit import SOL_MINT, PriceBook
from galileo.upstreams import Upstreams
from tests.fakefarm import FakeFarm
from tests.farm.conftest import Recorder, farm_config, loopback
from tests.fault.landing import opportunities
from tests.observability.promlint import lint
from tests.observability.test_metrics import Scrape

Make = Callable[..., Any]
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
BLIND = f"""
blind_strategy:
  enable: true
  base_mints: [{{mint: {SOL_MINT}, trade_size_range: [100000000, 2000000000]}}]
"""


def families(text: str) -> list[Metric]:
    return list(text_string_to_metric_families(text))


@pytest.fixture
async def blind_farm(tmp_path: Path) -> AsyncIterator[Make]:
    """Farms with blind_strategy configured (not run: only the labels it gives matter), stopped after."""
    farms: list[Farm] = []

    async def make(ips: list[str]) -> Farm:
        rt = tmp_path / f"rt-{ips[0]}"
        farm = Farm(farm_config(ips, rt, BLIND), runtime_dir=rt, log_level="warning")
        farms.append(farm)
        await farm.start()
        assert await farm.wait_ready(timeout=15), "workers did not register"
        return farm

    yield make
    for farm in farms:
        await farm.stop()


def test_the_linter_catches_what_promtool_catches() -> None:
    """The rules are real: each bad name of the issue's promtool run is caught, with promtool's words."""
    text = (
        "# HELP galileo_ip_cooldown_ms x\n# TYPE galileo_ip_cooldown_ms histogram\n"
        'galileo_ip_cooldown_ms_bucket{le="+Inf"} 0\ngalileo_ip_cooldown_ms_sum 0\ngalileo_ip_cooldown_ms_count 0\n'
        "# HELP galileo_inventory_total x\n# TYPE galileo_inventory_total gauge\ngalileo_inventory_total 1\n"
        "# HELP galileo_wait_milliseconds x\n# TYPE galileo_wait_milliseconds gauge\ngalileo_wait_milliseconds 1\n"
        "# HELP galileo_ok_seconds x\n# TYPE galileo_ok_seconds gauge\ngalileo_ok_seconds 1\n"
    )
    assert sorted(lint(families(text))) == [
        ("galileo_inventory_total", 'non-counter metrics should not have "_total" suffix'),
        ("galileo_ip_cooldown_ms", "metric names should not contain abbreviated units"),
        ("galileo_wait_milliseconds", 'use base unit "seconds" instead of "milliseconds"'),
    ]


async def test_every_name_passes_promtool_but_the_kept_design_names(blind_farm: Make, recorder: Recorder) -> None:
    farm = await blind_farm(loopback(2, start=150))
    out = await farm.run(JobSpec(HttpRequest(url=f"{recorder.url}/q"), upstream="jupiter", task="quote_buy"))
    assert out.ok
    farm.metrics.lander_endpoint("jito", "jito:ny")
    text = farm.metrics.render()[0].decode()
    fams = families(text)
    assert len(fams) >= 25  # every family is there, samples or not
    flagged = {name for name, _ in lint(fams)}
    assert flagged == set(KEPT_NAMES), lint(fams)
    promtool = shutil.which("promtool")
    if promtool is not None:  # the real thing, when installed (Debian: apt install prometheus)
        proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        named = {line.split()[0] for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("galileo_")}
        assert named == set(KEPT_NAMES), proc.stdout + proc.stderr


async def test_counters_that_have_not_moved_are_exported_at_zero(blind_farm: Make, recorder: Recorder) -> None:
    a, b = ips = loopback(2, start=153)
    farm = await blind_farm(ips)
    m = Scrape(farm.metrics.render()[0].decode())
    # Known at start: the IPs (cooldown reasons, suspension), the strategy's base mints, bad frames.
    for ip in ips:
        for reason in COOLDOWN_REASONS:
            assert m.value("galileo_ip_cooldown_total", ip=ip, reason=reason) == 0
        assert m.value("galileo_ip_suspended", ip=ip) == 0
    assert m.value("galileo_opportunities_total", strategy="blind", mint=SOL_MINT) == 0
    assert m.value("galileo_quotes_total", strategy="blind", mint=SOL_MINT, result="rate_limited") == 0
    for reason in BAD_FRAME_REASONS:
        assert m.value("galileo_bad_frames_total", reason=reason) == 0
    assert m.value("galileo_lander_dry_run") == 1

    # A task and an upstream, once seen, on every IP and for every result.
    out = await farm.run(JobSpec(HttpRequest(url=f"{recorder.url}/q"), upstream="jupiter", task="quote_buy"))
    m = Scrape(farm.metrics.render()[0].decode())
    other = b if out.ip == a else a
    assert m.value("galileo_ip_requests_total", task="quote_buy", ip=out.ip, result="ok") == 1
    assert m.value("galileo_ip_requests_total", task="quote_buy", ip=other, result="ok") == 0
    assert m.value("galileo_ip_requests_total", task="quote_buy", ip=out.ip, result="rate_limited") == 0
    for ip in ips:
        assert m.value("galileo_ip_rate_limited_total", ip=ip, upstream="jupiter") == 0
        assert m.value("galileo_ip_cooldown_active", ip=ip, upstream="jupiter") == 0
    assert m.value("galileo_jobs_total", task="quote_buy", result="ok") == 1
    assert m.value("galileo_jobs_total", task="quote_buy", result="expired") == 0
    assert m.value("galileo_jobs_expired_total", upstream="jupiter") == 0
    assert m.value("galileo_jobs_rejected_total", upstream="jupiter") == 0


async def test_dry_run_shows_what_would_have_been_sent() -> None:
    cfg = parse_config(
        "upstreams: {jito: {endpoints: ['https://ny.mainnet.block-engine.jito.wtf', "
        "'https://tokyo.mainnet.block-engine.jito.wtf']}}\nlander: {mode: dry_run}\n"
    )
    farm = FakeFarm(["10.0.0.1"])  # in memory: a dry run must give it no job at all
    upstreams = Upstreams(cfg)
    metrics = FarmMetrics()
    lander = LanderStack(farm, upstreams, ChainState(farm, upstreams), cfg.lander, ["jito"], LandingStats(), metrics)
    m = Scrape(metrics.render()[0].decode())
    for endpoint in ("jito:ny", "jito:tokyo"):  # every landing panel reads 0 before the first opportunity
        for name in ("would_send", "attempts", "success", "landed"):
            assert m.value(f"galileo_lander_{name}_total", lander="jito", endpoint=endpoint) == 0
    (opp,) = opportunities(Keypair(), str(Hash.default()), 1_000, 1)
    receipts = await asyncio.wait_for(lander.land(opp, SOL_MINT), 10)
    assert receipts == [] and farm.jobs == []
    m = Scrape(metrics.render()[0].decode())
    for endpoint in ("jito:ny", "jito:tokyo"):
        assert m.value("galileo_lander_would_send_total", lander="jito", endpoint=endpoint) == 1
        assert m.value("galileo_lander_attempts_total", lander="jito", endpoint=endpoint) == 0


def test_profit_is_one_unit_sol_with_buckets_that_fit() -> None:
    metrics = FarmMetrics()
    # The run: 209,433 lamports of profit (all 615 observations fell in +Inf before).
    metrics.opportunity("blind", SOL_MINT, profit_lamports=209_433)
    # A USDC round trip, converted at the price the strategy priced its costs with: 1 SOL = 150 USDC.
    prices = PriceBook()
    prices.observe(SOL_MINT, 1_000_000_000, USDC, 150_000_000)
    lamports = prices.to_lamports(USDC, 30_000)  # 0.03 USDC = 0.0002 SOL
    assert lamports == 200_000
    metrics.opportunity("blind", USDC, profit_lamports=lamports)
    text = metrics.render()[0].decode()
    fams = {f.name: f for f in families(text)}
    profit = fams["galileo_opportunity_profit_sol"]
    assert profit.type == "histogram" and "in SOL" in profit.documentation
    m = Scrape(text)
    for mint, sol in ((SOL_MINT, 0.000209433), (USDC, 0.0002)):
        assert m.value("galileo_opportunity_profit_sol_sum", strategy="blind", mint=mint) == pytest.approx(sol)
        assert m.value("galileo_opportunity_profit_sol_bucket", strategy="blind", mint=mint, le="0.0001") == 0
        assert m.value("galileo_opportunity_profit_sol_bucket", strategy="blind", mint=mint, le="0.00025") == 1
    finite = [
        float(s["le"]) for s in m.series("galileo_opportunity_profit_sol_bucket") if s["le"] != "+Inf"
    ]  # 1,000 lamports to 10 SOL: a tip-sized profit and a whale's both land in a finite bucket
    assert min(finite) <= 1e-6 and max(finite) >= 10.0
