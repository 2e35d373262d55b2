"""A learnt cap that keeps an upstream's queue full is trimmed (galileo.policy.queueing).

Unit tests drive :class:`QueueTrim` with an injected clock; the virtual-time tests run the farm's
real policy against the simulator's ``queue`` shape (requests wait their turn at the rate, and
those past the burst are refused) and a concurrency cap whose latency moves, with the trim and
without it (``QUEUED`` set out of reach).
"""

from __future__ import annotations

import math
import random

import pytest

from galileo.policy import queueing
from galileo.policy.allocator import FarmPolicy
from galileo.policy.queueing import ROUND, QueueTrim
from tests.policy.limitsim import Reply, SimUpstream, simulate

IPS = [f"10.0.0.{i}" for i in range(1, 5)]


def feed(trim: QueueTrim, start: float, rate: float, took: float, *, floor: float, cap: int, n: int = ROUND):
    """``n`` successes answered ``1 / rate`` apart from ``start``, each taking ``took``; what the last returned."""
    out = None
    for i in range(n):
        now = start + i / rate
        out = trim.ok(now, now - took, took, floor, cap)
    return out


def test_a_queue_at_the_cap_is_trimmed_to_what_the_rate_needs_and_the_trim_is_kept() -> None:
    """Cap 26, answers in 1.3 s against a floor of 0.3 s, 20/s: the upstream holds a second of queue.
    The pair carries 26 x 0.3 / 1.3 + 1 = 7; answered as fast after (the queue's rate), it keeps 7;
    with the queue gone (answers at the floor) it takes one more at a time."""
    trim = QueueTrim()
    assert feed(trim, 0.0, 20.0, 1.3, floor=0.3, cap=26) is None
    assert trim.limit == 7 and trim.trims == 1
    # What was sent before the queue drained (the trim, plus the latency then) is not the trial's.
    feed(trim, 1.6, 20.0, 1.3, floor=0.3, cap=26, n=10)
    assert trim.limit == 7
    # The same 20/s, answered at 0.35 s (the first 4 were sent before 2.85 s, when the queue had drained).
    assert feed(trim, 3.0, 20.0, 0.35, floor=0.3, cap=26, n=ROUND + 4) is None
    assert trim.limit == 7 and trim._took == []
    feed(trim, 5.0, 20.0, 0.33, floor=0.3, cap=26)  # under 1.25 x the floor: room for one more
    assert trim.limit == 8


def test_a_slower_upstream_is_not_a_queue_the_trim_goes_back_and_its_latency_is_the_floor() -> None:
    """Cap 4 at 50 ms, and the upstream's latency triples: 4 / 0.15 s = 26.7/s. The trim to 3 gets
    20/s, not 26.7: more in flight was not waiting in a queue. The cap comes back and 0.15 s is
    the pair's floor (so it is not tried again)."""
    trim = QueueTrim()
    feed(trim, 0.0, 4 / 0.15, 0.15, floor=0.05, cap=4)
    assert trim.limit == 3
    assert feed(trim, 2.0, 3 / 0.15, 0.15, floor=0.05, cap=4) == pytest.approx(0.15)
    assert trim.limit is None
    assert feed(trim, 4.0, 4 / 0.15, 0.15, floor=0.15, cap=4) is None and trim.limit is None


def test_a_latency_spike_now_and_then_does_not_trim_and_garbage_is_not_counted() -> None:
    trim = QueueTrim()
    for i in range(ROUND * 4):
        took = 2.0 if i % 16 == 0 else 0.05  # 6 % of answers take 2 s
        trim.ok(i * 0.01, i * 0.01 - took, took, 0.05, 4)
    assert trim.limit is None and trim.trims == 0
    for bad in (math.inf, math.nan, -1.0, 0.0):
        for i in range(ROUND):
            assert trim.ok(10.0 + i, 9.0 + i, bad, 0.05, 4) is None
    assert trim.limit is None and trim.trims == 0 and trim._took == []


def test_a_cap_of_one_is_never_trimmed() -> None:
    trim = QueueTrim()
    feed(trim, 0.0, 2.0, 0.5, floor=0.05, cap=1)
    assert trim.limit is None and trim.trims == 0


def learned(spec: str, latency: str, seed: int = 1):
    policy = FarmPolicy(rng=random.Random(seed))
    run = simulate(
        SimUpstream(spec, latency=latency, seed=seed), IPS, seconds=120, warmup=60, policy=policy, seed=seed, hop=0.001
    )
    return run, [policy.pacing.get(ip, "u") for ip in IPS]


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


@pytest.mark.parametrize(
    ("spec", "latency", "was", "now"),
    [
        ("queue:20/1s,burst=1", "300", 1.5, 0.6),  # a second of queue: 1.65 s before, 0.5 s now
        ("queue:20/1s,burst=0.25", "50", 0.35, 0.25),  # 400 ms before, 200 ms now
    ],
)
def test_a_queue_found_as_a_cap_keeps_the_rate_and_sheds_the_wait(
    spec: str, latency: str, was: float, now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, pacers = learned(spec, latency)
    assert all(p.caps.cap is not None for p in pacers)  # the refusals found a cap: the burst and the rate
    assert all(p.cap is not None and p.cap < p.caps.cap for p in pacers)  # ... trimmed
    assert run.ratio(len(IPS) * 20.0) >= 0.97 and run.share_429 <= 0.01
    assert median(run.latencies) < now, median(run.latencies)
    monkeypatch.setattr(queueing, "QUEUED", math.inf)  # without the trim: the queue stays full
    run, pacers = learned(spec, latency)
    assert run.ratio(len(IPS) * 20.0) >= 0.97
    assert median(run.latencies) > was, median(run.latencies)


class SlowerCap:
    """A cap of 4 whose latency triples from 60 s to 150 s (a slower route), each answer +-10 %."""

    def __init__(self, seed: int) -> None:
        self.held: dict[str, int] = {}
        self.rng = random.Random(seed)

    def arrive(self, ip: str, now: float) -> Reply:
        if self.held.get(ip, 0) >= 4:
            return Reply(False, 0.05, 1.0)
        self.held[ip] = self.held.get(ip, 0) + 1
        base = 0.15 if 1060 <= now < 1150 else 0.05
        return Reply(True, base * self.rng.uniform(0.9, 1.1))

    def release(self, ip: str, now: float) -> None:
        self.held[ip] -= 1


def test_a_cap_whose_upstream_slows_down_is_tried_once_and_keeps_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    def run_it() -> tuple[list[int], list[int]]:
        policy = FarmPolicy(rng=random.Random(1))
        run = simulate(SlowerCap(1), IPS, seconds=240, warmup=0, policy=policy, hop=0.001)
        per_second = {int(s): ok for s, ok, _ in run.series}
        slow = [per_second.get(s, 0) for s in range(70, 150)]
        pacers = [policy.pacing.get(ip, "u") for ip in IPS]
        assert all(p.caps.cap == 4 and p.cap == 4 for p in pacers)  # the cap found, and not trimmed now
        return slow, [p.queue.trims for p in pacers]

    slow, trims = run_it()
    assert all(t >= 1 for t in trims)  # each pair tried a trim when its answers tripled ...
    monkeypatch.setattr(queueing, "QUEUED", math.inf)
    without, _ = run_it()
    # ... and the slow minute and a half got what it gets without the trim (16 in flight / 0.15 s)
    assert sum(slow) >= 0.98 * sum(without) and sum(without) >= 0.9 * 80 * 16 / 0.15
