"""A told pace through late arrivals: the send one window after a late one waits for it.

Virtual time (:mod:`tests.policy.limitsim`) and the simulator's own limiters: an upstream that
stalls now and then (judging what arrived meanwhile all at once, as a descheduled process or a
busy loop does) logs those requests late, and a told pace of 98 % leaves a one-second window only
20 ms of slack. Each test runs the same traffic with the guard off too, so it shows what the guard
changes, not only that nothing went wrong.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from galileo.policy.allocator import FarmPolicy
from galileo.policy.arrivals import ArrivalGuard
from galileo.policy.learning import PACE, PaceRules, RateLearner
from galileo.policy.pacing import PaceBook
from tests.policy.limitsim import UPSTREAM, Run, SimUpstream, simulate

IPS = [f"10.0.7.{i}" for i in range(1, 5)]
OFF = dataclasses.replace(PACE, arrival_window=0.0)


def _told(spec: str, latency: str, stalls: tuple[float, float] | None, guard: bool, **kw: object) -> Run:
    pacing = PaceBook({UPSTREAM: 20.0}, rules=PACE if guard else OFF)
    policy = FarmPolicy(pacing=pacing, rng=random.Random(5))
    return simulate(
        SimUpstream(spec, latency=latency, seed=5),
        IPS,
        policy=policy,
        stalls=stalls,
        seed=5,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(("latency", "stall"), [("300", 0.04), ("50", 0.03), ("150", 0.06)])
def test_a_told_pace_stays_out_of_a_penalty_box_when_the_upstream_stalls(latency: str, stall: float) -> None:
    spec = "penalty:20/1s,box=5s"
    off = _told(spec, latency, (3.0, stall), guard=False, seconds=120.0, warmup=5.0)
    on = _told(spec, latency, (3.0, stall), guard=True, seconds=120.0, warmup=5.0)
    assert off.penalties > 0  # the stalls alone box a 98 % pace
    assert on.penalties == 0 and on.share_429 == 0, (on.penalties, on.share_429)
    assert on.ratio(len(IPS) * 20.0) >= 0.97, on.ratio(len(IPS) * 20.0)


@pytest.mark.parametrize(("n", "latency", "stall"), [(4, "150", 0.04), (16, "50", 0.03)])
def test_a_learnt_pace_under_a_penalty_box_is_guarded_once_it_has_met_the_box(
    n: int, latency: str, stall: float
) -> None:
    """Nothing told: learning meets the box a few times per address (that is how it learns it is
    one), then paces a few percent under the refused pace, and the same stalls box it again, each
    box read as an overshoot that pulls what it proved down (0.90 of N·R at 4 addresses, 0.965 at 16).
    Guarded from the first box on, as a told pace is: no box after learning, and more of N·R."""
    ips = [f"10.0.8.{i}" for i in range(1, n + 1)]

    def run(rules: PaceRules) -> Run:
        policy = FarmPolicy(pacing=PaceBook(rules=rules), rng=random.Random(2))
        upstream = SimUpstream("penalty:20/1s,box=5s", latency=latency, seed=2)
        return simulate(upstream, ips, policy=policy, stalls=(3.0, stall), seed=2, seconds=300.0, warmup=120.0)

    off, on = run(OFF), run(PACE)
    assert on.ratio(n * 20.0) >= off.ratio(n * 20.0) + 0.01, (off.penalties_counted, off.ratio(n * 20.0))
    assert on.penalties_counted == 0 and on.share_429 == 0, (on.penalties_counted, on.share_429)
    assert on.ratio(n * 20.0) >= 0.97, on.ratio(n * 20.0)


def test_a_learnt_pace_is_guarded_only_under_a_box_and_never_capped_by_it() -> None:
    """The guard's budget for a learnt pace: none while galloping or testing past the refused pace
    (holding would cap the pace there), none where no box was met, and never fewer sends a window
    than the pace itself sends in one (a refusal a stall caused can put the refused pace that low)."""
    lr = RateLearner(PACE, 0.0)
    lr._hold(0.0, 19.0, 20.6, 0.02, 0.0)  # a bracket [18.6, 20.6]: no box met yet
    assert lr.arrivals is None
    lr.dear = True
    lr._repace(1.0)
    assert lr.arrivals is not None and lr.arrivals.span == 20  # the refused pace's window, rounded down
    lr.rate, lr.hi = 19.9, 19.95  # refused just above the pace: the pace's own window count, +0.5 %
    lr._repace(2.0)
    assert lr.arrivals.span == 20 and lr.arrivals.span >= 1.005 * lr.rate
    lr.rate = 21.0  # testing past it
    lr._repace(3.0)
    assert lr.arrivals.span == 0 and lr.arrivals.hold(3.0, 3.0) is None
    lr.rate, lr.hi = 19.0, 20.6
    lr._repace(4.0)
    lr.unbound(4.0)  # another limit's refusals: no refused pace known
    assert lr.arrivals.span == 0


def test_lateness_counts_against_the_fast_answers_when_one_way_delays_spread() -> None:
    """16 addresses at 50 ms, each request's way to the upstream 0-20 ms (4 ms on average), and a 35 ms
    stall every 3 s. The send a late one holds may itself travel fast: its lateness must be read
    against the fast answers. Read against the upper quartile (as first built) this met the box 15-20
    times a minute; against the lowest tenth, never."""
    ips = [f"10.0.9.{i}" for i in range(1, 17)]
    for seed in (1, 2):
        policy = FarmPolicy(pacing=PaceBook({UPSTREAM: 20.0}), rng=random.Random(seed))
        upstream = SimUpstream("penalty:20/1s,box=5s", latency="50", seed=seed)
        run = simulate(
            upstream, ips, policy=policy, stalls=(3.0, 0.035), seed=seed, seconds=60.0, warmup=5.0, send_jitter=0.004
        )
        assert run.penalties == 0, (seed, run.penalties)
        assert run.ratio(len(ips) * 20.0) >= 0.97, run.ratio(len(ips) * 20.0)


@pytest.mark.parametrize("spec", ["sliding:20/1s", "sliding:200/10s", "bucket:20/1s,burst=0.1", "fixed:20/1s"])
def test_late_arrivals_cost_a_told_pace_little_under_other_shapes(spec: str) -> None:
    """Where a late arrival costs one 429 rather than a box, the guard still saves most of them and
    costs no throughput to speak of (each hold is the lateness beyond the slack)."""
    off = _told(spec, "150", (2.0, 0.05), guard=False, seconds=90.0, warmup=5.0)
    on = _told(spec, "150", (2.0, 0.05), guard=True, seconds=90.0, warmup=5.0)
    assert sum(on.limited.values()) <= sum(off.limited.values())
    assert on.ratio(len(IPS) * 20.0) >= 0.97, on.ratio(len(IPS) * 20.0)
    if spec == "sliding:20/1s":
        assert sum(off.limited.values()) > 0 and sum(on.limited.values()) == 0


def test_without_late_arrivals_the_guard_holds_nothing() -> None:
    pacing = PaceBook({UPSTREAM: 20.0})
    policy = FarmPolicy(pacing=pacing, rng=random.Random(5))
    upstream = SimUpstream("penalty:20/1s,box=5s", latency="150", seed=5)
    run = simulate(upstream, IPS, policy=policy, seconds=60.0, warmup=5.0)
    guards = [p.learner.arrivals for p in pacing.rates().values()]
    assert guards and all(g is not None and g.held == 0.0 for g in guards)
    assert run.penalties == 0 and run.ratio(len(IPS) * 20.0) >= 0.975


def test_latencies_that_spread_on_their_own_cost_at_most_the_budget() -> None:
    """An upstream whose answers take 150 ms and a lognormal 100 ± 100 ms more as it computes them:
    most of the spread is not lateness. The guard holds sends back for at most 0.8 % of the
    time, so the pace keeps 97 %."""
    run = _told("sliding:200/10s", "150,jitter=100", None, guard=True, seconds=120.0, warmup=10.0)
    base = _told("sliding:200/10s", "150,jitter=100", None, guard=False, seconds=120.0, warmup=10.0)
    assert run.share_429 == 0
    assert run.ratio(len(IPS) * 20.0) >= 0.97, run.ratio(len(IPS) * 20.0)
    assert run.ratio(len(IPS) * 20.0) >= base.ratio(len(IPS) * 20.0) - 0.01


def test_the_guard_holds_the_send_a_window_after_a_late_answer() -> None:
    """The arithmetic, one budget of 5/s paced at 98 %: 20 answers in 100 ms set the usual latency;
    then the answer to the 21st send comes 40 ms late, and the 26th send (5 after it) may not go
    before its send time + 40 ms + 1 s (and 5 ms of margin)."""
    g = ArrivalGuard(5.0)
    t = 100.0
    sent = []
    for _ in range(20):
        assert g.hold(t, t) is None
        g.dispatched(t, t)
        sent.append(t)
        g.answered(t + 0.1, t)
        t += 0.204
    late_sent = t
    g.dispatched(t, t)  # the 21st (place 20)
    for _ in range(2):
        t += 0.204
        g.dispatched(t, t)
    g.answered(late_sent + 0.14, late_sent)
    assert g.hold(t, t) is None  # places 23 and 24 go as paced
    for _ in range(2):
        t += 0.204
        g.dispatched(t, t)
    hold = g.hold(t, t + 0.204)  # place 25: five after the late one
    assert hold is not None
    assert hold == pytest.approx(late_sent + 0.04 + 1.0 + 0.005)
    assert hold > t + 0.204  # later than the pace would send it
    g.dispatched(hold, t + 0.204)
    assert g.held == pytest.approx(hold - (t + 0.204))
    assert g.hold(hold, hold) is None


def test_the_guard_stops_holding_once_it_has_spent_its_budget() -> None:
    g = ArrivalGuard(20.0, budget=0.01)  # 0.6 s held back per minute at most
    t = 0.0
    for _ in range(40):
        g.dispatched(t, t)
        g.answered(t + 0.1, t)
        t += 0.05
    holds = 0
    slot = t
    for k in range(400):  # one answer in 5 is 200 ms late: each would hold a send ~200 ms
        hold = g.hold(slot, slot)
        now = max(slot, hold or slot)
        holds += now > slot
        g.dispatched(now, slot)
        assert g._decayed(now) <= 0.6 + 1e-9  # never past the budget: the last hold is cut short
        g.answered(now + (0.3 if k % 5 == 0 else 0.1), now)
        slot = now + 0.05
    # Unbounded, 80 holds of ~0.2 s (16 s in about 25 s); bounded, 0.6 s (the budget) and what
    # ~25 s of decay gave back (~0.2 s).
    assert 0.6 - 1e-9 <= g.held <= 0.85, g.held
    assert holds >= 3, holds


def test_what_the_guard_keeps_stays_bounded() -> None:
    """A pair runs for days: the guard keeps a few windows' sends, and an answer to a send it has
    forgotten only adds to the latencies."""
    g = ArrivalGuard(20.0)
    for k in range(100_000):
        g.dispatched(k * 0.05, k * 0.05)
        if k >= 6:
            g.answered(k * 0.05 + 0.001, (k - 6) * 0.05)
    assert len(g._sent) == len(g._took) <= 2 * max(64, 4 * 20)
    g.answered(5001.0, 1.0)  # sent long before what is kept
    hold = g.hold(5001.0, 5001.0)
    assert (hold is None or hold < 5001.0) and g.sends == 100_000  # nothing held back for it
