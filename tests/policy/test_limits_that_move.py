"""Limits that move: one that falls and comes back, and a cap found from a rate limit's refusals.

A provider halves its limits under congestion and restores them later. Learnt pacing followed the
fall at once, but then held the fallen pace until its next test past the bracket (every 60 s,
doubling after each failed test, up to 240 s), and at 300 ms the refusals of the fall found a
concurrency cap (3 in flight: what 10/s keeps out at 300 ms) that held the pair at the fallen rate
for good: a pair held by its cap is not saturated, so no faster pace is ever proven. Now the
bracket is tested every 20 s while the pace is under 0.8 of the highest one proven
(:meth:`RateLearner._reprobe`), and a cap that has held a pair back for 300 s is tried with one
more in flight (:meth:`CapFinder.probe`): a real cap refuses it at once and is tried half as
often, a false one lets it through and is raised again until it no longer holds the pair back.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from galileo.policy import concurrency
from galileo.policy.allocator import FarmPolicy
from galileo.policy.concurrency import NET, PROBE_CLEAN, PROBE_EVERY, PROBE_GIVE_UP, CapFinder
from galileo.policy.learning import PACE, PaceRules, RateLearner
from galileo.policy.pacing import PaceBook
from galileo.sim.latency import LatencyModel, parse_latency
from tests.policy.limitsim import START, Reply, SimUpstream, simulate

IPS = [f"10.0.0.{i}" for i in range(1, 5)]


class FallsAndComesBack:
    """A token bucket of 20/s (0.1 s of burst) per IP that gives 10/s from 60 s to 120 s; ``retry_after``:
    refusing with it as the simulator does (whole seconds, at least 1), else with none."""

    def __init__(self, latency: str, retry_after: bool = False) -> None:
        self.tokens: dict[str, tuple[float, float]] = {}
        self.latency = LatencyModel(parse_latency(latency), 1, "u")
        self.retry_after = retry_after

    def arrive(self, ip: str, now: float) -> Reply:
        delay = self.latency.sample()
        rate = 10.0 if 60 <= now - START < 120 else 20.0
        tokens, at = self.tokens.get(ip, (1.0, now))
        tokens = min(max(1.0, rate * 0.1), tokens + (now - at) * rate)
        ok = tokens >= 1
        self.tokens[ip] = (tokens - ok, now)
        wait = float(max(1, math.ceil((1 - tokens) / rate))) if self.retry_after and not ok else None
        return Reply(ok, delay, wait)

    def release(self, ip: str, now: float) -> None:
        pass


def per_second(policy: FarmPolicy, latency: str, seconds: float) -> dict[int, int]:
    run = simulate(FallsAndComesBack(latency), IPS, seconds=seconds, warmup=0, policy=policy)
    return {int(s): ok for s, ok, _ in run.series}


def share(ok: dict[int, int], start: int, end: int) -> float:
    """Successes/s from ``start`` to ``end`` over N·R (20/s per IP)."""
    return sum(ok.get(s, 0) for s in range(start, end)) / (end - start) / (len(IPS) * 20.0)


def test_a_limit_that_fell_and_came_back_is_found_again_within_a_minute() -> None:
    ok = per_second(FarmPolicy(rng=random.Random(1)), "50", 300)
    assert share(ok, 30, 60) >= 0.97
    assert 0.4 <= share(ok, 75, 120) <= 0.5  # the fall, followed
    assert share(ok, 240, 300) >= 0.93, share(ok, 240, 300)
    # Tested past the bracket every 60 to 240 s, as before, the fallen pace held.
    slow = PaceBook(rules=replace(PACE, fallen_reprobe=math.inf))
    ok = per_second(FarmPolicy(pacing=slow, rng=random.Random(1)), "50", 300)
    assert share(ok, 240, 300) <= 0.5, share(ok, 240, 300)


def test_a_cap_found_from_a_rate_limits_refusals_is_tried_again_and_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = FarmPolicy(rng=random.Random(1))
    ok = per_second(policy, "300", 600)
    assert share(ok, 100, 300) <= 0.55  # held by the false cap ...
    assert share(ok, 540, 600) >= 0.8, share(ok, 540, 600)  # ... until it was tried and raised
    assert all(p.cap is None or p.cap >= 5 for p in policy.pacing.rates().values())
    monkeypatch.setattr(concurrency, "PROBE_EVERY", math.inf)  # never tried: held for good
    policy = FarmPolicy(rng=random.Random(1))
    ok = per_second(policy, "300", 600)
    assert share(ok, 540, 600) <= 0.55, share(ok, 540, 600)
    assert [p.cap for p in policy.pacing.rates().values()] == [3, 3, 3, 3]


def test_a_real_cap_refuses_its_tries_and_is_tried_less_and_less_often() -> None:
    """A cap of 4 at 100 ms for 20 minutes: tried at 300 s and after, each try refused (a 429 or a
    few, no cooling), so tried after 600 s, then 1200 s."""
    policy = FarmPolicy(rng=random.Random(1))
    run = simulate(SimUpstream("concurrency:4", latency="100", seed=1), IPS, seconds=1200, warmup=200, policy=policy)
    pacers = list(policy.pacing.rates().values())
    assert [p.cap for p in pacers] == [4, 4, 4, 4]
    assert all(p.caps.probe_every >= 2 * PROBE_EVERY for p in pacers)  # tried, refused, tried again later
    assert run.ratio(len(IPS) * 4 / 0.1) >= 0.97 and run.share_429 <= 0.001, (run.ratio(160.0), run.share_429)


def test_the_lifecycle_of_a_try() -> None:
    caps = CapFinder()
    caps.cap = 4
    caps.probe(100.0, held_since=100.0 - PROBE_EVERY + 1)
    assert caps.probing is None  # not held back long enough
    caps.probe(100.0, held_since=100.0 - PROBE_EVERY)
    assert caps.cap == 5 and caps.trying(100.0) and not caps.trying(99.9)
    # A pace that never lets 5 out: no verdict, given up after a minute (tried again as often).
    for i in range(int(PROBE_GIVE_UP / 0.7) + 2):
        t = 100.0 + i * 0.7
        assert not caps.probed(t, t - 0.1, (t - 0.1, t))  # one at a time
    assert caps.cap == 4 and caps.probing is None and caps.probe_every == PROBE_EVERY
    # Five out at once, and no refusal for PROBE_CLEAN: kept, and the next try comes soon.
    caps.probe(200.0, held_since=200.0 - PROBE_EVERY)
    assert caps.cap == 5
    spans = [(200.0 + j * 0.01, 200.5 + j * 0.01) for j in range(5)]
    assert not any(caps.probed(200.5 + j * 0.01, s[0], s) for j, s in enumerate(spans))
    assert caps.probed(200.0 + PROBE_CLEAN, 200.0 + PROBE_CLEAN - 0.1, (200.0 + PROBE_CLEAN - 0.1, 200.0 + PROBE_CLEAN))
    assert caps.cap == 5 and caps.probe_every == PROBE_CLEAN
    # The next one is refused: the cap is back, tried half as often; a refusal of another request
    # sent during that try is the same event.
    caps.probe(210.0, held_since=210.0 - PROBE_CLEAN)
    assert caps.cap == 6
    assert caps.probe_refused(210.2, now=210.3)
    assert caps.cap == 5 and caps.probe_every == 2 * PROBE_EVERY
    assert caps.probe_refused(210.25, now=210.4) and caps.trying(210.25) and caps.cap == 5
    assert not caps.probe_refused(210.5, now=210.6) and not caps.trying(210.5)
    # A refusal the pace more likely earned: no verdict, the cap back, tried again soon.
    caps.probe(1000.0, held_since=0.0)
    assert caps.cap == 6
    caps.abandon()
    assert caps.cap == 5 and caps.probing is None and caps.probe_every == PROBE_CLEAN


def test_an_answer_crossing_a_send_is_not_two_out_at_once() -> None:
    assert concurrency._most_at_once([(0.0, 1.0), (1.0 - NET / 2, 2.0)]) == 1
    assert concurrency._most_at_once([(0.0, 1.0), (1.0 - 2 * NET, 2.0)]) == 2
    assert concurrency._most_at_once([(0.0, 3.0), (1.0, 2.0), (1.5, 4.0)]) == 3


@pytest.mark.parametrize(("latency", "least"), [("50", 0.75), ("300", 0.75)])
def test_a_limit_that_halves_is_followed_in_seconds_not_a_minute(latency: str, least: float) -> None:
    """Each refusal at a proven pace cut it 2 %, and cost its Retry-After's second: a halved limit took
    35 refusals and as many seconds to follow, at 0.08-0.10 of the halved budget (0.18-0.28 at 300 ms).
    A surprise right after the last one's cooling ended, nothing proven between, says the limit fell:
    each such cut doubles (2, 4, 8, 16 %...). From 65 s to 95 s: 0.83 and 0.81 of the halved budget
    (0.09 and 0.24 with every cut 2 %)."""

    def halved(rules: PaceRules) -> float:
        policy = FarmPolicy(pacing=PaceBook(rules=rules), rng=random.Random(1))
        run = simulate(FallsAndComesBack(latency, retry_after=True), IPS, seconds=130, warmup=0, policy=policy, seed=1)
        ok = {int(s): n for s, n, _ in run.series}
        return sum(ok.get(s, 0) for s in range(65, 95)) / 30 / (len(IPS) * 10.0)

    assert halved(PACE) >= least, halved(PACE)
    assert halved(replace(PACE, max_cut=1 - PACE.trim)) <= 0.3, halved(replace(PACE, max_cut=1 - PACE.trim))


def test_a_fall_whose_first_refusal_was_taken_for_jitter_is_cut_as_any_fall() -> None:
    """A converged pace long clean, refused: the jitter's tail as likely as the first refusal of a fall.
    Taken for the tail, it only grew the margin. Refused again as soon as its cooling ended, it was a
    fall: the cut doubles, and the 2 % the first would have cut is taken too, so a fall is followed in
    the same steps whatever its first refusal was taken for (one step later, a halved limit's cascade
    ended 0.5 % over it and cut once more, to a quarter: 0.75-0.77 of the halved budget where it was
    0.76-0.87)."""
    learner = RateLearner(PACE, 0.0)
    learner.phase, learner.rate, learner.lo, learner.hi = "hold", 19.8, 20.0, 20.2
    learner.converged_at = 0.0
    learner.dispatched(30.0)
    assert learner.refused(30.05, 30.0, 1.0, 1.0) == "surprise"  # cools until 31.05
    assert learner.jittered and (learner.lo, learner.hi) == (20.0, 20.2)
    rate = learner.rate
    assert rate == pytest.approx(20.0 * (1 - PACE.margin - PACE.jitter_step))
    start = learner.cooled_until + 0.01  # after the cooling: one admitted (the refilled token) ...
    learner.dispatched(start)
    learner.ok(start + 0.05, start)
    sent = start + 1 / learner.rate  # ... and the next refused at once
    learner.dispatched(sent)
    assert learner.refused(sent + 0.05, sent, 1.0, 1.0) == "surprise"
    assert not learner.jittered and learner.falling == 1
    assert learner.lo == pytest.approx(rate * PACE.trim * (1 - 2 * (1 - PACE.trim)))


def test_a_surprise_right_after_the_last_ones_cooling_doubles_the_cut_and_one_later_does_not() -> None:
    """Each doubled cut (a limit that fell) cuts the converged pace's margin with it: the margin is arrival
    jitter against the pace's interval, and the interval grew."""
    learner = RateLearner(PACE, 0.0)
    learner.phase, learner.rate, learner.lo, learner.hi = "hold", 20.0, 20.0, 20.4
    learner.margin = PACE.max_margin
    learner.dispatched(10.0)
    assert learner.refused(10.05, 10.0, 1.0, 1.0) == "surprise"  # cools until 11.05
    assert learner.lo == pytest.approx(20.0 * 0.98)
    assert learner.margin == PACE.max_margin  # one surprise alone: jitter as likely as a fall
    margin = learner.margin
    for k, cut in enumerate((0.04, 0.08, 0.16, 0.32, 0.5, 0.5)):
        start = learner.cooled_until + 0.01  # after the cooling: one admitted (the refilled token) ...
        learner.dispatched(start)
        learner.ok(start + 0.05, start)
        sent = start + 1 / learner.rate  # ... and the next refused at once
        rate = learner.rate
        learner.dispatched(sent)
        assert learner.refused(sent + 0.05, sent, 1.0, 1.0) == "surprise", k
        assert learner.lo == pytest.approx(rate * (1 - cut)), k
        margin = max(PACE.margin, margin * (1 - cut))
        assert learner.margin == pytest.approx(margin), k
    assert learner.margin == PACE.margin  # a limit cut to a tenth: the margin back at its least
    # Then a refusal a while after the cooling ended (the budget carried the pace meanwhile): 2 % again.
    t = learner.cooled_until
    rate = learner.rate
    for i in range(40):
        learner.dispatched(t + i / rate)
        learner.ok(t + i / rate + 0.05, t + i / rate)
    sent = t + 40 / rate
    learner.dispatched(sent)
    learner.refused(sent + 0.05, sent, 1.0, 1.0)
    assert learner.lo == pytest.approx(rate * 0.98)
    # Without a Retry-After the cooling was our own guess: no evidence, 2 % each.
    quiet = RateLearner(PACE, 0.0)
    quiet.phase, quiet.rate, quiet.lo, quiet.hi = "hold", 20.0, 20.0, 20.4
    quiet.dispatched(10.0)
    quiet.refused(10.05, 10.0, None, 1.0)
    quiet.dispatched(11.1)
    quiet.ok(11.15, 11.1)
    quiet.dispatched(11.15)
    assert quiet.refused(11.2, 11.15, None, 1.0) == "surprise"
    assert quiet.lo == pytest.approx(20.0 * 0.98 * 0.98)
