"""Fees that follow the market: the tip follows Jito's tip floor and is capped; the priority fee follows
recent fees on the writable accounts and is capped; both are read through the farm, not per trade."""

from __future__ import annotations

import asyncio

from broker.jobs import JitoTipFloor, RpcPrioritizationFees
from broker.results import PrioritizationFees, ResultValue, TipFloor
from broker.types import JobOutcome, JobSpec
from galileo.config import GalileoConfig, parse_config
from galileo.landing import FeeMarket
from galileo.landing.fees import cu_price_for, percentile, tip_for
from galileo.upstreams import Upstreams
from tests.fakefarm import FakeFarm
from tests.virtualtime import run_virtual

U = "http://127.0.0.1:7900"
FLOOR = TipFloor(p25=1_000, p50=10_000, p75=36_000, p95=1_400_000, p99=10_000_000)


def config(lander: str = "{}") -> GalileoConfig:
    return parse_config(f"""
upstreams:
  rpc: {{urls: ['{U}/rpc']}}
  jito: {{endpoints: ['{U}/jito/ny'], tip_floor_url: '{U}/jito/api/v1/bundles/tip_floor'}}
lander: {lander}
""")


def test_the_tip_is_the_floors_percentile_capped_at_a_share_of_the_profit_and_at_least_jitos_minimum() -> None:
    cfg = config("{tip_lamports: 7000, tip: {percentile: 75, max_profit_share: 0.5}}").lander
    assert tip_for(cfg, FLOOR, gross_lamports=1_000_000) == 36_000  # the 75th percentile
    assert tip_for(cfg, FLOOR, gross_lamports=50_000) == 25_000  # half of the profit, not the floor's 36,000
    assert tip_for(cfg, FLOOR, gross_lamports=1_500) == 1_000  # Jito's minimum (the profit check then says no)
    assert tip_for(cfg, None, gross_lamports=1_000_000) == 7_000  # floor not known: tip_lamports
    assert tip_for(cfg, None, gross_lamports=10_000) == 5_000  # ... capped too
    fixed = config("{tip_lamports: 7000, tip: {percentile: null}}").lander
    assert tip_for(fixed, FLOOR, gross_lamports=1_000_000) == 7_000


def test_the_priority_fee_is_a_percentile_of_recent_fees_capped_per_unit_and_by_the_profit() -> None:
    cfg = config(
        "{compute_unit_price_micro_lamports: 100, "
        "priority_fee: {percentile: 50, max_micro_lamports: 20000, max_profit_share: 0.5}}"
    ).lander
    recent = [0, 0, 0, 4_000, 5_000, 6_000, 50_000]
    assert percentile(recent, 50) == 4_000 and percentile(recent, 100) == 50_000 and percentile(recent, 0) == 0
    assert cu_price_for(cfg, recent, gross_lamports=10**9, cu_limit=400_000) == 4_000
    assert cu_price_for(cfg, [50_000] * 5, gross_lamports=10**9, cu_limit=400_000) == 20_000  # per unit
    # 400,000 units x 4,000 µlamports = 1,600 lamports; half of a 2,000-lamport profit is 1,000: 2,500 µlamports.
    assert cu_price_for(cfg, recent, gross_lamports=2_000, cu_limit=400_000) == 2_500
    assert cu_price_for(cfg, None, gross_lamports=10**9, cu_limit=400_000) == 100  # not known: the fixed price


def floor_at(p50: int) -> TipFloor:
    return TipFloor(p25=p50 // 10, p50=p50, p75=p50 * 4, p95=p50 * 100, p99=p50 * 1000)


def test_the_tip_follows_the_floor_read_every_refresh_period_through_the_farm_not_per_trade() -> None:
    floors = iter([floor_at(10_000), floor_at(20_000), floor_at(5_000)])

    def answer(spec: JobSpec, ip: str) -> ResultValue | None:
        return next(floors) if isinstance(spec.payload, JitoTipFloor) else None

    farm = FakeFarm(["10.0.0.1"], latency=0.01, answer=answer)
    cfg = config("{tip: {percentile: 50, refresh_s: 10, max_profit_share: 0.9}}")
    market = FeeMarket(farm, Upstreams(cfg), cfg.lander, jito=True, rpc=False)
    tips: list[int] = []

    async def main() -> None:
        market.start()
        for _ in range(25):  # a trade every second for 25 s
            await asyncio.sleep(1.0)
            tips.append(market.tip(gross_lamports=10**9))
        await market.stop()

    run_virtual(main())
    reads = [(t, s) for t, s, _ in farm.jobs if isinstance(s.payload, JitoTipFloor)]
    assert [t for t, _ in reads] == [0.0, 10.01, 20.02]  # three reads in 25 s, whatever the trades
    assert reads[0][1].payload.url == f"{U}/jito/api/v1/bundles/tip_floor"  # type: ignore[union-attr]
    assert reads[0][1].upstream == "jito_tip_floor"
    assert tips[:10] == [10_000] * 10 and tips[10:20] == [20_000] * 10 and tips[20:] == [5_000] * 5


def test_an_unreadable_floor_falls_back_to_tip_lamports_and_an_old_one_is_not_trusted() -> None:
    answers: list[ResultValue | JobOutcome] = [floor_at(30_000)]

    def answer(spec: JobSpec, ip: str) -> ResultValue | JobOutcome | None:
        if answers:
            return answers.pop(0)
        return JobOutcome(job_id=0, result="network_error", task=spec.task, upstream=spec.upstream, error="down")

    farm = FakeFarm(["10.0.0.1"], answer=answer)
    cfg = config("{tip_lamports: 4000, tip: {percentile: 50, refresh_s: 1}}")
    market = FeeMarket(farm, Upstreams(cfg), cfg.lander, jito=True, rpc=False)
    seen: list[int] = []

    async def main() -> None:
        market.start()
        for _ in range(8):
            await asyncio.sleep(1.0)
            seen.append(market.tip(10**9))
        await market.stop()

    run_virtual(main())
    # Read once at 0 s; the reads after it fail: its value serves for six periods, then tip_lamports.
    assert seen == [30_000] * 6 + [4_000] * 2


def test_recent_fees_are_read_once_per_set_of_writable_accounts_per_refresh_period() -> None:
    def answer(spec: JobSpec, ip: str) -> ResultValue | None:
        job = spec.payload
        if isinstance(job, RpcPrioritizationFees):
            hot = "Pool1" in job.accounts
            return PrioritizationFees(slot=9, fees=[0, 1_000, 90_000 if hot else 2_000])
        return None

    farm = FakeFarm(["10.0.0.1"], latency=0.05, answer=answer)
    cfg = config("{priority_fee: {percentile: 100, refresh_s: 10, max_micro_lamports: 1000000}}")
    market = FeeMarket(farm, Upstreams(cfg), cfg.lander, jito=False, rpc=True)
    prices: list[int] = []

    async def main() -> None:
        hot, cold = ("Pool1", "Vault"), ("Pool2", "Vault")
        prices.extend(await asyncio.gather(*(market.cu_price(hot, 10**9, 200_000) for _ in range(5))))
        prices.append(await market.cu_price(cold, 10**9, 200_000))
        await asyncio.sleep(5.0)
        prices.append(await market.cu_price(hot, 10**9, 200_000))  # within refresh_s: not read again
        await asyncio.sleep(6.0)
        prices.append(await market.cu_price(hot, 10**9, 200_000))  # after it: read again

    run_virtual(main())
    reads = [s.payload for _, s, _ in farm.jobs if isinstance(s.payload, RpcPrioritizationFees)]
    assert [r.accounts for r in reads] == [["Pool1", "Vault"], ["Pool2", "Vault"], ["Pool1", "Vault"]]
    assert prices == [90_000] * 5 + [2_000, 90_000, 90_000]
    assert market.estimate(10**9, 200_000).cu_price == 90_000  # screening: the newest fees read


def test_landing_defaults_to_dry_run_with_the_documented_fees() -> None:
    lander = parse_config("{}").lander
    assert lander.mode == "dry_run"  # nothing is sent unless lander.mode: live
    assert (lander.tip.percentile, lander.tip.max_profit_share, lander.tip.refresh_s, lander.tip_lamports) == (
        50,
        0.5,
        10.0,
        10_000,
    )
    pf = lander.priority_fee
    assert (pf.percentile, pf.max_micro_lamports, pf.max_profit_share, pf.refresh_s) == (50, 100_000, 0.5, 10.0)
    assert (lander.max_quote_age_slots, lander.rebroadcast_s) == (4, 2.0)
    jito = parse_config("{}").upstreams.jito
    assert jito.tip_floor_url == "https://bundles.jito.wtf/api/v1/bundles/tip_floor"
