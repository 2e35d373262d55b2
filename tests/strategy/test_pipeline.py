"""The batch pipeline on an in-memory farm and a virtual clock: Little's law, rotation, isolation."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from broker.jobs import HttpRequest
from broker.types import JobSpec
from galileo.client import Lane
from galileo.config.sections import BaseMintConfig, BlindStrategyConfig, IntermediumConfig
from galileo.strategy.pipeline import HEADROOM, MAX_WINDOW, SPARE, BatchPipeline, BatchShape, batch_window
from galileo.strategy.plan import QuoteBatchPlan, batches, plan_pairs
from galileo.strategy.profit import SOL_MINT
from tests.fakefarm import FakeFarm
from tests.virtualtime import run_virtual

USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
BLIND = BatchShape({"jupiter": 2}, (("jupiter",), ("jupiter",)))  # a buy quote, then a sell quote


def plans(n: int) -> list[QuoteBatchPlan]:
    strategy = BlindStrategyConfig(
        enable=True, base_mints=[BaseMintConfig(mint=SOL_MINT, trade_size_range=(1, n), trade_range_count=n)]
    )
    pairs = plan_pairs(strategy, IntermediumConfig(mints=[USDC]))
    return [QuoteBatchPlan(i + 1, p) for i, p in enumerate(pairs)]


def quote(ip: str) -> JobSpec:
    return JobSpec(HttpRequest(url="http://x/"), upstream="jupiter", prefer_ip=ip, task="quote")


def two_legs(farm: FakeFarm) -> tuple[Counter[str], Callable[[QuoteBatchPlan, str], Awaitable[None]]]:
    done: Counter[str] = Counter()

    async def run(plan: QuoteBatchPlan, ip: str) -> None:
        buy = await farm.run(quote(ip))
        await farm.run(quote(buy.ip or ip))  # the sell leg on the buy leg's IP
        done[ip] += 1

    return done, run


@pytest.mark.parametrize("latency", [0.0, 0.05, 0.15, 0.3])
def test_in_flight_follows_pace_times_latency_so_throughput_holds(latency: float) -> None:
    """4 IPs at 20 quotes/s each: N*R/2 = 40 batches/s at any latency, with pace x latency in flight."""
    ips = [f"10.0.0.{i}" for i in range(1, 5)]
    rate = 20.0
    farm = FakeFarm(ips, rate=rate, latency=latency)
    done, run = two_legs(farm)
    pipeline = BatchPipeline(farm, BLIND, batches([p.pair for p in plans(3)]), run)
    samples: list[int] = []
    windows: dict[str, int] = {}
    counted = 0

    async def main() -> None:
        nonlocal counted, windows
        stop = asyncio.Event()
        task = asyncio.create_task(pipeline.run(stop))
        await asyncio.sleep(5.0)  # warm up: latencies known, windows open
        before = sum(done.values())
        for _ in range(150):  # 15 s, sampled every 0.1 s
            await asyncio.sleep(0.1)
            samples.append(farm.inflight[ips[0]])
        counted = sum(done.values()) - before
        windows = dict(pipeline.windows)
        stop.set()
        await task
        await pipeline.drain(5)

    run_virtual(main())
    per_second = counted / 15.0
    assert per_second >= 0.97 * len(ips) * rate / 2, per_second  # one batch per IP at a time: 1/(2 x latency)
    # The window is Little's law on the batch: R x T / 2 quotes, T = 2 x latency, plus headroom.
    want = math.ceil(rate * 2 * latency / 2 * (1 + HEADROOM)) + SPARE
    assert windows == dict.fromkeys(ips, want)
    # At the upstream, an IP holds pace x latency jobs in flight (Little's law), whatever the latency.
    assert sum(samples) / len(samples) == pytest.approx(rate * latency, abs=0.15 + 0.05 * rate * latency)


def test_batch_window_is_the_binding_upstreams_little_law_plus_headroom() -> None:
    def lane(u: str, rate: float, latency: float, cap: int | None = None, floor: float = 0.0) -> Lane:
        return Lane("ip", u, rate, cap, latency, floor)

    # Blind at 150 ms, 20 req/s: T = 0.3 s, 10 batches/s -> 3 in flight, +25 % and one: 5.
    assert batch_window(BLIND, {"jupiter": lane("jupiter", 20.0, 0.15)}) == 5
    # Not paced yet, capped at 8 in flight while its pacer ramps: 8 batches (one job each), +25 % and one.
    assert batch_window(BLIND, {"jupiter": lane("jupiter", math.inf, 0.15, cap=8)}) == 11
    # ... but not while its answers take over twice their floor: the upstream queues, pushing adds delay.
    assert batch_window(BLIND, {"jupiter": lane("jupiter", math.inf, 0.15, cap=8, floor=0.05)}) == 8
    assert batch_window(BLIND, {"jupiter": lane("jupiter", math.inf, 0.15, cap=8, floor=0.1)}) == 11
    # Nothing known yet (no latency): one batch, to learn it.
    assert batch_window(BLIND, {"jupiter": lane("jupiter", 20.0, 0.0)}) == 1
    # No limit at all: as many as an IP may hold.
    assert batch_window(BLIND, {"jupiter": lane("jupiter", math.inf, 0.1)}) == MAX_WINDOW
    # Multi-leg, buy ultra (+ titan, no HTTP) x sell dflow, jupiter: 1 ultra, 2 dflow, 2 jupiter quotes a batch.
    multi = BatchShape({"ultra": 1, "dflow": 2, "jupiter": 2}, (("ultra",), ("dflow", "jupiter")))
    lanes = {
        "ultra": lane("ultra", 10.0, 0.2),
        "dflow": lane("dflow", 20.0, 0.1),
        "jupiter": lane("jupiter", 50.0, 0.1),
    }
    # T = 0.2 + 0.1; ultra allows 10 x 0.3 / 1 = 3, dflow 20 x 0.3 / 2 = 3, jupiter 7.5: 3 binds -> 5.
    assert batch_window(multi, lanes) == 5
    # dflow cooling on this IP: its quotes go elsewhere, it does not bind here.
    assert batch_window(multi, {k: v for k, v in lanes.items() if k != "dflow"}) == 5
    lanes["dflow"] = lane("dflow", 80.0, 0.1)
    assert batch_window(multi, lanes) == 5  # dflow allows 12 now: ultra's 3 still binds
    lanes["ultra"] = lane("ultra", 40.0, 0.2)
    assert batch_window(multi, lanes) == 11  # ultra 12, dflow 12, jupiter 7.5 binds: ceil(9.4) + 1
    assert multi.primary == "ultra"


def test_an_ip_never_holds_more_than_its_window_and_a_freed_slot_is_refilled_at_once() -> None:
    farm = FakeFarm(["a", "b"], rate=math.inf, cap=1)  # window: 1 x 1.25 -> 2, + 1 = 3
    gates: dict[int, asyncio.Future[None]] = {}
    peak: Counter[str] = Counter()
    running: Counter[str] = Counter()

    async def run(plan: QuoteBatchPlan, ip: str) -> None:
        running[ip] += 1
        peak[ip] = max(peak[ip], running[ip])
        gates[plan.batch_id] = asyncio.get_running_loop().create_future()
        await gates[plan.batch_id]
        running[ip] -= 1

    async def main() -> BatchPipeline:
        d = BatchPipeline(farm, BLIND, iter(plans(10)), run)
        task = asyncio.create_task(d.run(asyncio.Event()))
        await asyncio.sleep(0.01)
        assert d.started == 6 and d.running == {"a": 3, "b": 3}  # the rest queue
        gates[1].set_result(None)
        await asyncio.sleep(0.001)
        assert d.started == 7 and d.running == {"a": 3, "b": 3}  # refilled at once, not at the next look
        for i in range(2, 11):
            while i not in gates:
                await asyncio.sleep(0.001)
            gates[i].set_result(None)
        await asyncio.wait_for(task, 2)
        return d

    d = run_virtual(main())
    assert d.started == 10 and max(peak.values()) == 3


def test_more_ips_than_batches_spare_ips_rotate() -> None:
    farm = FakeFarm([f"ip{i}" for i in range(8)], rate=math.inf, cap=1)

    async def run(plan: QuoteBatchPlan, ip: str) -> None:
        await asyncio.sleep(0.01)

    rounds = [b for _ in range(8) for b in plans(3)]  # 8 ticks of 3 batches
    d = BatchPipeline(farm, BLIND, iter(rounds), run)
    run_virtual(asyncio.wait_for(d.run(asyncio.Event()), 5))
    used = Counter(ip for _, ip in d.assignments)
    assert set(used) == set(farm.ips)  # every IP took batches
    assert max(used.values()) - min(used.values()) <= 1


def test_cooling_ips_take_no_batches_and_failures_stay_local() -> None:
    farm = FakeFarm(["a", "b", "c"])
    farm.cooling.add("b")
    seen: list[str] = []

    async def run(plan: QuoteBatchPlan, ip: str) -> None:
        seen.append(ip)
        if plan.batch_id == 2:
            raise RuntimeError("boom")

    d = BatchPipeline(farm, BLIND, iter(plans(6)), run)
    run_virtual(asyncio.wait_for(d.run(asyncio.Event()), 5))
    assert "b" not in seen and d.started == 6 and d.failed == 1


def test_stop_ends_the_pipeline_and_drain_lets_batches_finish() -> None:
    farm = FakeFarm(["a"], rate=20.0, latency=0.1)
    finished = 0

    async def run(plan: QuoteBatchPlan, ip: str) -> None:
        nonlocal finished
        await farm.run(quote(ip))
        finished += 1

    async def main() -> BatchPipeline:
        stop = asyncio.Event()
        d = BatchPipeline(farm, BLIND, batches([p.pair for p in plans(1)]), run)
        task = asyncio.create_task(d.run(stop))
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.wait_for(task, 1)
        await d.drain(5)
        return d

    d = run_virtual(main())
    assert d.started > 20 and finished == d.started and d.in_flight == 0


@pytest.mark.parametrize("n", [1, 3])
def test_every_batch_runs_exactly_once(n: int) -> None:
    farm = FakeFarm(["a", "b", "c", "d"][:n], rate=10.0, latency=0.05)
    ran: list[int] = []

    async def run(plan: QuoteBatchPlan, ip: str) -> None:
        await farm.run(quote(ip))
        ran.append(plan.batch_id)

    d = BatchPipeline(farm, BLIND, iter(plans(10)), run)
    run_virtual(asyncio.wait_for(d.run(asyncio.Event()), 30))
    assert sorted(ran) == list(range(1, 11))
