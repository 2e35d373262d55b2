"""Blind strategy pieces, pure: trade sizes, batch plans, profit arithmetic, and the dispatcher."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from galileo.config.sections import BaseMintConfig, BlindStrategyConfig, IntermediumConfig, LaneConfig
from galileo.strategy.dispatcher import BatchDispatcher
from galileo.strategy.plan import QuoteBatchPlan, batches, lane_sizes, plan_pairs
from galileo.strategy.profit import SOL_MINT, Costs, PriceBook, evaluate

USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"


def lane(lo: int, hi: int, n: int, strategy: str = "linear") -> LaneConfig:
    return LaneConfig(min=lo, max=hi, count=n, strategy=strategy)  # type: ignore[arg-type]


def test_linear_sizes() -> None:
    assert lane_sizes(lane(100, 500, 5), random.Random(0)) == [100, 200, 300, 400, 500]


def test_exponential_sizes_are_denser_at_the_small_end() -> None:
    sizes = lane_sizes(lane(1_000, 1_000_000, 4, "exponential"), random.Random(0))
    assert sizes == [1_000, 10_000, 100_000, 1_000_000]


def test_random_sizes_are_distinct_in_range_and_seeded() -> None:
    a = lane_sizes(lane(10, 1000, 7, "random"), random.Random(42))
    assert a == lane_sizes(lane(10, 1000, 7, "random"), random.Random(42))
    assert len(a) == 7 and all(10 <= x <= 1000 for x in a) and a == sorted(a)


def test_degenerate_lanes() -> None:
    assert lane_sizes(lane(5, 5, 3), random.Random(0)) == [5]
    assert lane_sizes(lane(5, 9, 1), random.Random(0)) == [9]
    assert lane_sizes(lane(1, 3, 5, "random"), random.Random(0)) == [1, 2, 3]  # too few integers: linear


def test_pairs_are_base_x_intermediate_x_size_deduplicated() -> None:
    strategy = BlindStrategyConfig(
        enable=True,
        base_mints=[
            BaseMintConfig(
                mint=SOL_MINT,
                trade_size_range=(100, 300),
                trade_range_count=3,
                lanes=[lane(300, 500, 2)],
                min_quote_profit=7,
            ),
            BaseMintConfig(mint=USDC, trade_size_range=(10, 10), min_quote_profit=9),
        ],
    )
    inter = IntermediumConfig(mints=[SOL_MINT, USDC, JUP], disable_mints=[JUP])
    pairs = plan_pairs(strategy, inter)
    assert [(p.base_mint, p.intermediate_mint, p.trade_size) for p in pairs] == [
        (SOL_MINT, USDC, 100),
        (SOL_MINT, USDC, 200),
        (SOL_MINT, USDC, 300),
        (SOL_MINT, USDC, 500),
        (USDC, SOL_MINT, 10),
    ]
    assert {p.base_mint: p.min_profit for p in pairs} == {SOL_MINT: 7, USDC: 9}  # per mint, not the minimum


def test_batches_rotate_and_ids_never_repeat() -> None:
    strategy = BlindStrategyConfig(
        enable=True, base_mints=[BaseMintConfig(mint=SOL_MINT, trade_size_range=(1, 3), trade_range_count=3)]
    )
    pairs = plan_pairs(strategy, IntermediumConfig(mints=[USDC]))
    first = [next(it) for it in [batches(pairs)] for _ in range(6)]
    assert [b.batch_id for b in first] == [1, 2, 3, 4, 5, 6]
    assert [b.trade_size for b in first] == [1, 2, 3, 2, 3, 1]  # each round starts one pair further on


def test_profit_arithmetic_sol_base() -> None:
    v = evaluate(
        size=1_000_000_000, sell_out=1_000_050_000, costs_in_base=Costs(tip=10_000).lamports, min_profit=20_000
    )
    assert (v.gross, v.costs, v.profit, v.profitable) == (50_000, 15_000, 35_000, True)
    assert not evaluate(1_000, 1_010, 15, 0).profitable  # costs exceed the gross


def test_profit_per_mint_threshold_applies() -> None:
    assert not evaluate(100, 200, 10, min_profit=95).profitable
    assert evaluate(100, 200, 10, min_profit=90).profitable


def test_costs_in_usdc_from_observed_quotes() -> None:
    book = PriceBook()
    assert book.to_base(SOL_MINT, 15_000) == 15_000
    assert book.to_base(USDC, 15_000) is None
    book.observe(SOL_MINT, 1_000_000_000, USDC, 150_000_000)  # 1 SOL = 150 USDC
    assert book.to_base(USDC, 15_000) == 2_250  # 0.000015 SOL = 0.00225 USDC, raw 6 decimals
    book.observe(USDC, 300_000_000, SOL_MINT, 1_000_000_000)  # now 1 SOL = 300 USDC
    assert book.to_base(USDC, 1) == 1  # rounded up: costs are never understated
    assert book.to_base(USDC, 10_000) == 3_000


class FakePool:
    def __init__(self, ips: list[str]) -> None:
        self.ips = ips
        self.cooling: set[str] = set()

    def eligible_ips(self, upstream: str) -> list[str]:
        return [ip for ip in self.ips if ip not in self.cooling]


def plans(n: int) -> list[QuoteBatchPlan]:
    strategy = BlindStrategyConfig(
        enable=True, base_mints=[BaseMintConfig(mint=SOL_MINT, trade_size_range=(1, n), trade_range_count=n)]
    )
    pairs = plan_pairs(strategy, IntermediumConfig(mints=[USDC]))
    return [QuoteBatchPlan(i + 1, p) for i, p in enumerate(pairs)]


async def test_fewer_ips_than_batches_queue_one_batch_per_ip() -> None:
    pool = FakePool(["a", "b"])
    gates: dict[int, asyncio.Future[None]] = {}
    peak = 0
    running: set[int] = set()

    async def run(plan: QuoteBatchPlan, ip: str) -> None:
        nonlocal peak
        running.add(plan.batch_id)
        peak = max(peak, len(running))
        gates[plan.batch_id] = asyncio.get_running_loop().create_future()
        await gates[plan.batch_id]
        running.discard(plan.batch_id)

    d = BatchDispatcher(pool, "jupiter", iter(plans(5)), run)
    task = asyncio.create_task(d.run(asyncio.Event()))
    await asyncio.sleep(0.01)
    assert sorted(d.busy.values()) == [1, 2] and d.started == 2  # the rest queue
    gates[1].set_result(None)
    await asyncio.sleep(0.01)
    assert d.started == 3 and sorted(d.busy.values()) == [2, 3]
    for i in range(2, 6):
        while i not in gates:
            await asyncio.sleep(0.001)
        gates[i].set_result(None)
    await asyncio.wait_for(task, 2)
    assert peak == 2 and d.started == 5


async def test_more_ips_than_batches_spare_ips_rotate() -> None:
    pool = FakePool([f"ip{i}" for i in range(8)])

    async def run(plan: QuoteBatchPlan, ip: str) -> None:
        await asyncio.sleep(0)

    rounds = [b for _ in range(8) for b in plans(3)]  # 8 ticks of 3 batches
    d = BatchDispatcher(pool, "jupiter", iter(rounds), run)
    await asyncio.wait_for(d.run(asyncio.Event()), 5)
    used = Counter(ip for _, ip in d.assignments)
    assert set(used) == set(pool.ips)  # every IP took batches
    assert max(used.values()) - min(used.values()) <= 1


async def test_cooling_ips_take_no_batches_and_failures_stay_local() -> None:
    pool = FakePool(["a", "b", "c"])
    pool.cooling.add("b")
    seen: list[str] = []

    async def run(plan: QuoteBatchPlan, ip: str) -> None:
        seen.append(ip)
        if plan.batch_id == 2:
            raise RuntimeError("boom")

    d = BatchDispatcher(pool, "jupiter", iter(plans(6)), run)
    await asyncio.wait_for(d.run(asyncio.Event()), 5)
    assert "b" not in seen and d.started == 6 and d.failed == 1


async def test_stop_ends_the_dispatcher() -> None:
    pool = FakePool(["a"])

    async def run(plan: QuoteBatchPlan, ip: str) -> None:
        await asyncio.sleep(0.001)

    stop = asyncio.Event()
    d = BatchDispatcher(
        pool,
        "jupiter",
        batches(
            plan_pairs(
                BlindStrategyConfig(enable=True, base_mints=[BaseMintConfig(mint=SOL_MINT, trade_size_range=(1, 1))]),
                IntermediumConfig(mints=[USDC]),
            )
        ),
        run,
    )
    task = asyncio.create_task(d.run(stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 1)
    await d.drain(1)
    assert d.started > 5


@pytest.mark.parametrize("n", [1, 3])
async def test_every_batch_runs_exactly_once(n: int) -> None:
    pool = FakePool(["a", "b", "c", "d"][:n])
    ran: list[int] = []

    async def run(plan: QuoteBatchPlan, ip: str) -> None:
        ran.append(plan.batch_id)

    d = BatchDispatcher(pool, "jupiter", iter(plans(10)), run)
    await asyncio.wait_for(d.run(asyncio.Event()), 5)
    assert sorted(ran) == list(range(1, 11))
