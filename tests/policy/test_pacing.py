"""Pacing per (IP, upstream) and per shared budget: the mechanics, with a fake clock.

Throughput against whole limiter shapes is in test_pacing_zoo.py and test_pacing_shapes.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import random
from collections.abc import Callable
from unittest import mock

import pytest

from broker.jobs import HttpRequest
from broker.protocol import Outcome
from broker.types import Job, JobSpec, WorkerInfo
from galileo.policy import concurrency
from galileo.policy.allocator import FarmPolicy
from galileo.policy.concurrency import CapFinder
from galileo.policy.learning import PACE, Heard, RateLearner
from galileo.policy.pacing import DISSOLVE, PaceBook, Pacer
from tests.conftest import fake_worker


def worker(ip: str) -> WorkerInfo:
    return fake_worker(ip, 256)


def job(sent_at: float, upstream: str = "u") -> Job:
    loop = asyncio.new_event_loop()
    j = Job(1, JobSpec(HttpRequest(url="http://x/"), upstream=upstream), "http", 1e9, 0.0, loop.create_future())
    loop.close()
    j.sent_at = sent_at
    return j


def limited(retry_after: float | None = None) -> Outcome:
    return Outcome(result="rate_limited", status=429, retry_after=retry_after)


def run_clean(learner: RateLearner, t: float, done: Callable[[float], bool]) -> float:
    """Keep ``learner`` saturated and clean from ``t`` (each request waited for, sent, answered 50 ms later)
    until ``done(t)``; returns the time it stopped."""
    while not done(t):
        learner.blocked(t)
        learner.dispatched(t)
        learner.ok(t + 0.05, t)
        t += 1 / learner.rate
    return t


def prove(learner: RateLearner, t: float) -> float:
    """Saturated and clean from ``t`` for the pace's trust time and half a second more: until proven."""
    return run_clean(learner, t, lambda now: now >= t + learner.trust() + 0.5)


def test_a_told_rate_is_paced_at_98_percent_and_refusals_trim_it_no_lower_than_96_5() -> None:
    book = PaceBook({"jupiter": 10.0})
    p = book.get("ip", "jupiter", 0.0)
    assert p.next_at(0.0) is None
    p.dispatched(0.0)
    at = p.next_at(0.0)
    assert at == pytest.approx(1 / 9.8) and p.next_at(at) is None
    t = 1.0
    for _ in range(5):  # isolated refusals (one success between), each news
        book.record("ip", "jupiter", "rate_limited", t + 0.01, sent_at=t)
        book.record("ip", "jupiter", "ok", t + 0.51, sent_at=t + 0.5)
        t += 1.0
    assert p.rate == pytest.approx(9.65)
    p.blocked(t + 61)
    book.record("ip", "jupiter", "ok", t + 61, sent_at=t + 60.9)  # a clean minute
    assert p.rate == pytest.approx(9.8)


def test_one_refusal_alone_leaves_a_told_pace_and_a_second_within_a_minute_trims_it() -> None:
    """One refusal is arrival jitter (it costs a second; a minute 2 % slower costs more); two are not."""
    book = PaceBook({"jupiter": 10.0})
    p = book.get("ip", "jupiter", 0.0)
    book.record("ip", "jupiter", "rate_limited", 5.01, sent_at=5.0)
    book.record("ip", "jupiter", "ok", 6.51, sent_at=6.5)
    assert p.rate == pytest.approx(9.8)  # the told pace holds
    book.record("ip", "jupiter", "rate_limited", 80.01, sent_at=80.0)  # 75 s later: alone again
    book.record("ip", "jupiter", "ok", 81.51, sent_at=81.5)
    assert p.rate == pytest.approx(9.8)
    book.record("ip", "jupiter", "rate_limited", 110.01, sent_at=110.0)  # 30 s after that one: trimmed
    assert p.rate == pytest.approx(9.65)  # 2 % less, no lower than 96.5 % of the told 10/s
    book.record("ip", "jupiter", "ok", 111.51, sent_at=111.5)
    p.blocked(172)
    book.record("ip", "jupiter", "ok", 172, sent_at=171.9)  # a clean minute restores it
    assert p.rate == pytest.approx(9.8)


def test_a_told_pace_that_met_a_penalty_box_stays_trimmed_for_five_minutes() -> None:
    """A box costs its length in requests: after one, the told pace stays at 96.5 % for 300 s, not 60."""
    book = PaceBook({"jupiter": 20.0})
    p = book.get("ip", "jupiter", 0.0)
    t = 10.0
    book.record("ip", "jupiter", "rate_limited", t + 0.01, sent_at=t)
    for k in range(1, 50):  # refused for 5 s: a penalty box
        book.record("ip", "jupiter", "rate_limited", t + 0.1 * k + 0.01, sent_at=t + 0.1 * k)
    t += 5.0
    book.record("ip", "jupiter", "ok", t + 0.05, sent_at=t)  # the box opens
    assert p.rate == pytest.approx(20 * 0.965) and p.learner.dear
    p.blocked(t + 61)
    book.record("ip", "jupiter", "ok", t + 61, sent_at=t + 60.9)  # a clean minute is not enough
    assert p.rate == pytest.approx(20 * 0.965)
    p.blocked(t + 301)
    book.record("ip", "jupiter", "ok", t + 301, sent_at=t + 300.9)
    assert p.rate == pytest.approx(20 * 0.98)


def test_a_family_limit_applies_to_its_members_and_pairs_are_independent() -> None:
    book = PaceBook({"jito": 5.0})
    assert book.known_rate("jito:frankfurt") == 5.0 and book.known_rate("jupiter") is None
    a = book.get("ip1", "jito:ny")
    a.dispatched(0.0)
    assert a.next_at(0.0) is not None
    assert book.get("ip2", "jito:ny").next_at(0.0) is None
    assert book.get("ip1", "jupiter").next_at(0.0) is None


def test_a_new_pair_ramps_up_its_in_flight_and_backs_off_when_answers_queue() -> None:
    book = PaceBook()
    p = book.get("ip", "u", 0.0)
    for _ in range(8):
        assert p.next_at(0.0) is None
        p.dispatched(0.0)
    assert p.next_at(0.0) == math.inf  # 8 in flight: wait for an answer
    p.blocked(0.55)
    book.record("ip", "u", "ok", 0.6, sent_at=0.0)  # one of the first two sent: the unloaded floor, 0.6 s
    assert p.open_cap == 16  # saturated for 0.5 s without a 429, not queueing: double
    for i in range(7):  # the rest came back ever later: the upstream queues what it cannot serve
        book.record("ip", "u", "ok", 3.0 + 0.3 * i, sent_at=0.0)
    assert p.queueing and p.open_cap <= 8  # over four times the floor: halved


def test_failed_light_requests_do_not_stop_the_floor_being_measured() -> None:
    """A request sent with little in flight measures the unloaded latency when it succeeds; one that
    fails (refused, timed out, its worker lost) is never answered ok. Three hundred of those, over
    minutes, and a light success still measures the floor."""
    book = PaceBook()
    p = book.get("ip", "u", 0.0)
    for i in range(300):
        p.dispatched(float(i))
        book.record("ip", "u", "error", i + 0.5, sent_at=float(i))
    assert p.floor == 0.0
    p.dispatched(400.0)
    book.record("ip", "u", "ok", 400.25, sent_at=400.0)
    assert p.floor == pytest.approx(0.25)


def test_an_isolated_429_on_a_paced_pair_is_the_paces_business_and_cools_nothing() -> None:
    """On a two-token bucket a 500 ms pause throws away ten tokens' refill: a paced pair's first 429
    is left to the pace (a told one holds for one refusal alone), not cooled for."""
    policy = FarmPolicy(known_rates={"u": 20.0}, rng=random.Random(1))
    w = worker("1.1.1.1")
    policy.on_dispatch(job(1.0), w, 1.0)
    policy.on_outcome(job(1.0), w, limited(), 1.05)
    assert policy.cooldowns.cooling_until("1.1.1.1", "u", 1.05) is None
    assert policy.pacing.get("1.1.1.1", "u").rate == pytest.approx(19.6)
    # A second in a row (nothing admitted between): persistent refusal, the farm's 500 ms backoff.
    policy.on_outcome(job(1.1), w, limited(), 1.15)
    until = policy.cooldowns.cooling_until("1.1.1.1", "u", 1.15)
    assert until is not None and 0.5 <= until - 1.15 <= 1.0


def test_a_dead_worker_takes_only_its_own_jobs_out_of_its_ips_in_flight_counts() -> None:
    """The next incarnation on the same address may already have jobs out: they stay counted."""
    policy = FarmPolicy(rng=random.Random(1))
    old, new = worker("1.1.1.1"), worker("1.1.1.1")
    for k, (w, upstream) in enumerate([(old, "u"), (old, "u"), (old, "v"), (new, "u"), (new, "v")]):
        j = job(1.0 + k, upstream)
        policy.on_dispatch(j, w, j.sent_at)
        w.inflight[k] = j
    policy.on_worker_down(old, 6.0)
    assert policy.pacing.get("1.1.1.1", "u").inflight == 1
    assert policy.pacing.get("1.1.1.1", "v").inflight == 1


def test_retry_after_is_honoured_exactly_and_only_on_that_pair() -> None:
    policy = FarmPolicy(known_rates={"u": 20.0}, rng=random.Random(1))
    w = worker("1.1.1.1")
    policy.on_outcome(job(1.0), w, limited(retry_after=3.0), 1.05)
    assert policy.cooldowns.cooling_until("1.1.1.1", "u", 1.05) == pytest.approx(4.05)
    assert policy.cooldowns.cooling_until("1.1.1.2", "u", 1.05) is None
    assert policy.cooldowns.cooling_until("1.1.1.1", "v", 1.05) is None


def test_an_unpaced_pair_and_a_timeout_keep_the_farm_contract() -> None:
    policy = FarmPolicy(rng=random.Random(1))
    w = worker("1.1.1.1")
    policy.on_outcome(job(1.0), w, limited(), 1.05)  # first contact: no pace yet, the 500 ms backoff
    until = policy.cooldowns.cooling_until("1.1.1.1", "u", 1.05)
    assert until is not None and until - 1.05 >= 0.5
    policy.on_outcome(job(2.0, "v"), w, Outcome(result="timeout"), 2.5)
    until = policy.cooldowns.cooling_until("1.1.1.1", "v", 2.5)
    assert until is not None and until - 2.5 >= 0.25


def test_429s_of_requests_already_in_flight_are_echoes() -> None:
    learner = RateLearner(PACE, 0.0)
    assert learner.refused(1.0, 0.9, None, 0.0) == "refusal"
    assert learner.refused(1.01, 0.95, None, 0.0) == "echo"  # sent before the first one's answer came
    assert learner.refusals == 1


def test_a_429_of_a_request_its_worker_held_past_the_last_one_is_an_echo_if_it_was_dispatched_before() -> None:
    """A job picked up to ``lead`` before its slot leaves its worker then: sent after the last 429 was
    heard, but committed before the farm could react to it. It is the same event, not news."""
    learner = RateLearner(PACE, 0.0)
    assert learner.refused(1.0, 0.9, None, 0.0) == "refusal"
    assert learner.refused(1.2, 1.004, None, 0.0, decided=0.996) == "echo"
    assert learner.refusals == 1
    assert learner.refused(1.3, 1.1, None, 0.0, decided=1.095) == "refusal"  # committed after: news
    assert learner.refusals == 2


def send_at_pace(learner: RateLearner, start: float, end: float) -> None:
    """Demand fills the pace from ``start`` to ``end``: every slot it gives is taken."""
    t = start
    while t < end:
        learner.dispatched(t)
        t += 1 / learner.rate


def test_a_search_brackets_the_limit_and_settles_within_one_percent() -> None:
    learner = RateLearner(PACE, 0.0)
    learner.phase, learner.rate, learner.lo, learner.hi = "hold", 18.0, 18.0, 22.0
    t = 0.0
    for _ in range(30):  # every pace at or under 20 runs clean; every one over it is refused
        send_at_pace(learner, t, t + 10.0)
        t += 10.0
        learner.blocked(t)
        if learner.rate <= 20.0:
            learner.ok(t, t - 0.1)
        else:
            learner.ok(t - 9.0, t - 9.1)  # cut the clean run short: the refusal comes first
            learner.refused(t, t - 0.05, None, 0.0)
    assert 19.6 <= learner.lo <= 20.0 and 20.0 < learner.hi <= 20.4


def test_a_refusal_at_a_pace_only_estimated_does_not_make_proofs_take_longer() -> None:
    """A refusal at a proven pace doubles how long the next proof takes (what we proved was not so). A
    refusal at a first estimate does not: without Retry-After a 60 s fixed window met late in it
    reads 2-3x its rate, each trim or measurement down from there doubled the doubt, and the pace
    then climbed back to the window's rate in steps of 8 windows (0.897 of it in the zoo's 60 s
    window test, 0.952 without that)."""

    def refused_at_lo(prove: bool) -> RateLearner:
        learner = RateLearner(PACE, 0.0)
        learner._hold(10.0, 9.0 / PACE.set_point, 9.05, PACE.step, 0.0)  # a first estimate: lo 9.0
        assert (learner.phase, learner.rate, learner.doubt) == ("hold", pytest.approx(9.0), 1.0)
        t = 10.0
        if prove:  # saturated and clean for the trust time: proven, converged just under it
            t = run_clean(learner, t, lambda now: now >= 10.0 + 2 * learner.trust())
            assert learner.rate < learner.lo == pytest.approx(9.0)
        t += 1.0
        learner.dispatched(t)
        assert learner.refused(t + 0.05, t, None, 0.0) == "surprise"
        return learner

    assert refused_at_lo(prove=False).doubt == 1.0
    assert refused_at_lo(prove=True).doubt == 2.0


def test_a_guessed_upper_end_is_searched_towards_for_two_steps_then_past() -> None:
    """Without Retry-After the first run's guess at hi (admitted over the time until the last refused
    probe) bounds a window's rate, but a 30 s box over 100 per 10 s reads 3/s: bisecting up to it
    until within 1 % took 6-7 steps of a box's length each. Two steps towards it, then past it."""
    learner = RateLearner(PACE, 0.0)
    learner._hold(10.0, 2.2 / PACE.set_point, 4.16, PACE.start_step, 0.0)
    learner.hi_refused = False  # as the first run leaves a guess
    paces = []
    t = 10.0
    for _ in range(4):
        t = prove(learner, t)
        paces.append((round(learner.rate, 2), learner.hi))
    assert paces[0] == (pytest.approx(3.02, abs=0.01), 4.16)  # the geometric mean, twice ...
    assert paces[1][1] == 4.16 and paces[1][0] > paces[0][0]
    assert paces[2] == (pytest.approx(paces[1][0] * (1 + PACE.start_step), rel=0.01), math.inf)  # ... then past
    assert paces[3][0] > paces[2][0]


def test_a_pace_its_demand_never_filled_is_not_proven() -> None:
    """Jobs in pairs make a pair saturated (one of each pair waits for the pace) while it sends half its
    pace: clean at 10/s says nothing of a step to 20/s, so the step is not proven and the pace does not
    climb. Filled, it is."""
    learner = RateLearner(PACE, 0.0)
    learner.phase, learner.rate, learner.lo = "hold", 20.0, 18.0
    t = 0.0
    for _ in range(200):  # 40 s: two jobs every 0.2 s, the second held back one interval
        learner.dispatched(t)
        learner.blocked(t)
        learner.dispatched(t + 0.05)
        learner.ok(t + 0.1, t)
        learner.ok(t + 0.15, t + 0.05)
        t += 0.2
    assert learner.rate == 20.0 and learner.lo == 18.0  # never proven, never stepped
    while learner.rate == 20.0 and t < 100.0:  # the same pace, filled: proven within the trust
        send_at_pace(learner, t, t + 0.5)
        t += 0.5
        learner.blocked(t)
        learner.ok(t, t - 0.1)
    assert learner.rate > 20.0 and learner.lo == 20.0 and t < 45.0  # lo: the step, proven


def _first_window(learner: RateLearner) -> float:
    """100 admitted in the first second, then refused until 4 s (``Retry-After: 3``): 25/s, windowed."""
    for i in range(100):
        learner.dispatched(i / 100)
        learner.ok(i / 100 + 0.01, i / 100)
    learner.refused(1.01, 1.0, retry_after=3.0, cooled=3.0)
    learner.dispatched(4.0)
    learner.ok(4.01, 4.0)
    assert learner.phase == "hold" and learner.windowed and learner.lo == pytest.approx(0.98 * 100 / 4.0)
    return 4.0


def test_a_success_that_raced_the_first_refusal_does_not_end_its_run() -> None:
    """Many IPs' opening burst on one budget: a request sent just after the first refused one, on
    another path, is admitted first. Its success says nothing of when the budget came back: only
    one sent after the refusal was heard ends the run (here 100 in the first second, back at 4 s)."""
    learner = RateLearner(PACE, 0.0)
    for i in range(100):
        learner.dispatched(i / 100)
        learner.ok(i / 100 + 0.05, i / 100)
    learner.dispatched(1.0)
    learner.dispatched(1.001)  # raced: sent after the refused one, admitted before it
    learner.refused(1.05, 1.0, retry_after=3.0, cooled=3.0)
    learner.ok(1.06, 1.001)
    assert learner.phase == "learn" and learner.first_run  # not a run of 1 ms: 100/s, then 10 000/s
    learner.dispatched(4.0)
    learner.ok(4.05, 4.0)
    assert learner.phase == "hold" and learner.windowed and learner.lo == pytest.approx(0.98 * 100 / 4.0)


@pytest.mark.parametrize(("sends", "fell"), [(19, True), (14, False)])
def test_a_budget_measured_as_fallen_only_if_the_pace_was_kept_meanwhile(sends: int, fell: bool) -> None:
    """Two refusals at a proven pace close together: what the budget admitted between, over the time
    not spent cooling, is what it has fallen to (14 in 0.95 s). Only if we sent at the pace meanwhile,
    though: a farm short of CPU (64 addresses on 2 cores) sent 14 and got 14, its own rate, not the
    budget's; taken for it, one such refusal cut a learnt 20/s to 18.5. Then the pace is only trimmed."""
    learner = RateLearner(PACE, 0.0)
    learner.phase, learner.rate, learner.lo, learner.hi = "hold", 20.0, 20.0, 20.4
    learner.dispatched(10.0)
    assert learner.refused(10.05, 10.0, 1.0, 1.0) == "surprise"  # cools 1 s, as the farm honours Retry-After
    pace = learner.rate
    for i in range(sends):  # from 11.05 to 11.95: at the pace (19), or short of it (14)
        t = 11.05 + i * 0.9 / (sends - 1)
        learner.dispatched(t)
        if i < 14:  # 14 admitted either way
            learner.ok(t + 0.05, t)
    learner.dispatched(11.95)
    assert learner.refused(12.0, 11.95, 1.0, 1.0) == "surprise"
    if fell:
        assert learner.lo == pytest.approx(PACE.set_point * 14 / 0.95)
    else:
        assert learner.lo == pytest.approx(pace * PACE.trim)


def test_a_windows_second_return_measures_it_over_one_whole_window() -> None:
    """Met late in a 5 s window of 100, the first estimate is 25/s; the next window, spent once
    between the budget's two returns (100 in 5 s), says 20/s: the pace drops to 98 % of it, and the
    period to the time between the returns."""
    learner = RateLearner(PACE, 0.0)
    t = _first_window(learner)
    for i in range(99):  # the next window's budget, spent at the pace, then a refusal until it ends
        learner.dispatched(t + i * 0.04)
        learner.ok(t + i * 0.04 + 0.01, t + i * 0.04)
    learner.refused(8.0, 7.99, retry_after=1.0, cooled=1.0)
    learner.dispatched(9.0)
    learner.ok(9.01, 9.0)
    assert learner.lo == pytest.approx(0.98 * 100 / 5.0)
    assert learner.hi == pytest.approx(100 / 5.0) and learner.period == pytest.approx(5.0)


def test_a_windows_second_return_after_little_demand_measures_nothing() -> None:
    """Between the returns the pair sent a few requests only (demand stopped): 6 successes over 5 s
    are no window's rate, and the return changes nothing."""
    learner = RateLearner(PACE, 0.0)
    t = _first_window(learner)
    for i in range(5):
        learner.dispatched(t + i)
        learner.ok(t + i + 0.01, t + i)
    learner.refused(8.0, 7.99, retry_after=1.0, cooled=1.0)
    before = (learner.lo, learner.hi, learner.rate)
    learner.dispatched(9.0)
    learner.ok(9.01, 9.0)
    assert learner.first_return is None  # the second return came, and was judged
    assert (learner.lo, learner.hi, learner.rate) == before and learner.period == pytest.approx(4.0)


def test_a_concurrency_cap_is_told_from_a_rate_limit_by_what_was_held() -> None:
    caps = CapFinder()
    for i in range(20):  # one sent every 0.1 s, each served 0.3 s: each success found 2 still served
        caps.ok((i / 10, i / 10 + 0.3), pace=10.0, floor=0.3)
    # Sent between those, a request found 3 being served: under a cap of 3, refused for it.
    assert caps.held(1.95, 0.3) == 3
    assert not caps.refused((1.95, 1.95 + 0.3), 0.3, paced=True) and not caps.refused(
        (1.96, 1.96 + 0.3), 0.3, paced=True
    )
    assert caps.refused((1.97, 1.97 + 0.3), 0.3, paced=True) and caps.cap == 3
    # A rate limit refuses whatever is served: refusals that found what successes found prove nothing.
    rate = CapFinder()
    for i in range(20):
        rate.ok((i / 10, i / 10 + 0.3), pace=10.0, floor=0.3)
    assert (
        not any(rate.refused((sent, sent + 0.3), 0.3, paced=True) for sent in (1.7, 1.8, 1.9, 2.0)) and rate.cap is None
    )
    assert list(rate.votes) == [0, 0, 0, 0]  # each was counted, and none voted


def _held_three(retry_after: float) -> tuple[Pacer, list[str]]:
    """A pair paced at 10/s, each success served 0.3 s (so each found 2 held), then three refusals,
    each sent after the last came back, that each found 3 held, saying ``retry_after``; what the
    pair made of each."""
    p = Pacer(PACE, 0.0, told=10.0)
    p.floor = 0.3
    for i in range(40):
        p.caps.ok((i / 10, i / 10 + 0.3), pace=10.0, floor=0.3)
    return p, [p.refused(sent + 0.3, sent, retry_after, 0.0) for sent in (1.95, 2.35, 2.75)]


def test_a_refusal_that_says_when_in_seconds_is_no_concurrency_caps() -> None:
    """A box (or a window) tripped by a bunch of sends finds more in flight than the successes did, as
    a cap's refusal does; but its Retry-After of seconds says when a spent budget comes back, and a
    cap's slot frees when an answer leaves. Under a 5 s box at 64 addresses and 300 ms, 7 of 64 pairs
    found such a false cap; its pace then fell to a quarter and took past the warm-up to climb back."""
    boxed, _ = _held_three(retry_after=5.0)
    assert boxed.cap is None
    capped, _ = _held_three(retry_after=1.0)  # a rounded-up second: a cap's may say that much
    assert capped.cap == 3


def test_the_refusal_that_finds_a_cap_makes_those_in_flight_with_it_echoes() -> None:
    """The refusal that showed the cap went to the cap, not the pace; a refusal of a request sent
    before it came is the same event all the same, not news for the pace."""
    p, heard = _held_three(retry_after=1.0)
    assert p.cap == 3 and heard[-1] == "refusal"
    p.ok(3.1, 2.8)  # a success ends the refusal run
    assert p.refused(3.3, 3.0, 1.0, 0.0) == "echo"  # sent before the cap's refusal came back (3.05)
    assert p.refused(3.4, 3.1, 1.0, 0.0) != "echo"  # sent after it: news


def test_on_the_workers_clock_two_refusals_above_every_success_make_a_cap() -> None:
    """Exact counts: a cap's refusal finds more held than any success did. Two running, over 16 or more
    successes, are a cap of what they found; on the coordinator's clock it takes three of four above
    the median. One success may have found as many (an answer crossing the network as a request
    arrives); refusals that found no more than two successes did prove nothing."""

    def finder(worker: bool) -> CapFinder:
        caps = CapFinder()
        for i in range(20):  # one every 0.1 s, each served 0.3 s: each success found 2 held
            caps.ok((i / 10, i / 10 + 0.3), pace=10.0, floor=0.3, worker=worker)
        return caps

    exact = finder(worker=True)
    assert not exact.refused((1.95, 1.95 + 0.3), 0.3, paced=True, worker=True) and exact.cap is None
    assert exact.refused((1.96, 1.96 + 0.3), 0.3, paced=True, worker=True) and exact.cap == 3
    sparse = CapFinder()
    for i in range(20):  # one every 0.2 s, each served 0.3 s: each success found 1 held
        sparse.ok((i / 5, i / 5 + 0.3), pace=5.0, floor=0.3, worker=True)
    for span in ((3.93, 4.33), (3.90, 4.30)):  # a bunch, its answers heard out of order: each found 1
        sparse.ok(span, pace=5.0, floor=0.3, worker=True)
    assert sparse.held(3.95, 0.3) == 3  # a refusal then found 3 held: what a cap's refusal finds is K
    # (each refusal counted once the longest recent latency, 0.4 s, has passed since it was sent)
    assert not sparse.refused((3.95, 3.95 + 0.4), 0.3, paced=True, worker=True)
    assert sparse.refused((3.96, 3.96 + 0.4), 0.3, paced=True, worker=True) and sparse.cap == 3  # (not 1 + the most, 2)
    blurred = finder(worker=False)
    assert not blurred.refused((1.95, 1.95 + 0.3), 0.3, paced=True) and not blurred.refused(
        (1.96, 1.96 + 0.3), 0.3, paced=True
    )
    assert blurred.refused((1.97, 1.97 + 0.3), 0.3, paced=True) and blurred.cap == 3

    def over(reached: int) -> CapFinder:
        """20 successes found 2 held and ``reached`` more found 3; then two refusals that found 3."""
        caps = CapFinder()
        counts = iter([2] * 20 + [3] * reached + [3, 3])
        with mock.patch.object(caps, "held", lambda sent_at, floor: next(counts)):
            for i in range(20 + reached):
                caps.ok((i / 10, i / 10 + 0.3), pace=10.0, floor=0.3, worker=True)
            for t in (5.0, 5.01):
                caps.refused((t, t + 0.3), 0.3, paced=True, worker=True)
        return caps

    assert over(reached=1).cap == 3  # one success found as many: an answer crossing the network
    rate = over(reached=2)  # two did: the refusals found no more than successes do
    assert list(rate.over) == [0, 0] and rate.cap is None


def test_three_refusals_above_nearly_every_success_make_a_cap_of_what_they_found_on_the_workers_clock() -> None:
    """Of 40 successes 38 found 1 held and 2 found 3 (answers crossing the network, or a bunch), so no
    two refusals find more than all successes but one. Three refusals that found 3 (more than 90 % of
    the successes did, and no more than 5 % found as many) make the cap: 3 on the worker's clock, where
    the counts are exact; one more than the median success, 2, on the coordinator's, where they are
    blurred."""

    def voted(worker: bool) -> CapFinder:
        caps = CapFinder()
        counts = iter([1] * 38 + [3, 3] + [3, 3, 3])  # 40 successes, then 3 refusals
        with mock.patch.object(caps, "held", lambda sent_at, floor: next(counts)):
            for i in range(40):
                caps.ok((i / 5, i / 5 + 0.3), pace=5.0, floor=0.3, worker=worker)
            refusals = [caps.refused((t, t + 0.3), 0.3, paced=True, worker=worker) for t in (8.0, 8.01, 8.02)]
        assert refusals == [False, False, True]
        assert list(caps.votes) == [3, 3, 3] and not any(caps.over)
        return caps

    assert voted(worker=True).cap == 3 and voted(worker=False).cap == 2


def test_refusals_that_found_no_more_than_many_successes_did_make_no_cap() -> None:
    """A rate limit refuses after a bunch of sends, and a bunch has more in flight: with a latency that
    varies, its refusals find more held than most successes did. Three refusals found 8, more than 90 %
    of the successes; but 10 % of them found 8 too, which under a cap of 8 none could (but for an
    answer crossing the network, allowed in 5 %): no cap. With 2 of 40 at 8 it is one."""

    def finder(at_eight: int) -> CapFinder:
        caps = CapFinder()
        counts = iter([5] * (40 - at_eight) + [8] * at_eight + [8, 8, 8])  # 40 successes, then 3 refusals
        with mock.patch.object(caps, "held", lambda sent_at, floor: next(counts)):
            for i in range(40):
                caps.ok((i / 20, i / 20 + 0.3), pace=20.0, floor=0.3, worker=True)
            for t in (2.0, 2.01, 2.02):
                caps.refused((t, t + 0.3), 0.3, paced=True, worker=True)
        assert list(caps.votes) == [8, 8, 8]
        return caps

    assert finder(at_eight=4).cap is None and finder(at_eight=2).cap == 8


def test_a_count_settles_after_the_longest_recent_latency() -> None:
    """A request sent before a refusal and answered long after it (a latency with a long tail) was
    held when the refusal arrived: the refusal is counted once the longest recent latency has passed
    since it was sent, not when it came back, and finds it. Counted when it came back, it found one
    fewer, as many as the successes did."""

    def refused(settle: float) -> list[int]:
        caps = CapFinder()
        with mock.patch.object(concurrency, "SETTLE", settle):
            for i in range(20):  # one every 0.1 s, served 0.3 s, the first 0.6 s: each found 2 held
                caps.ok((i / 10, i / 10 + (0.6 if i == 0 else 0.3)), pace=10.0, floor=0.3, worker=True)
            caps.refused((2.05, 2.35), 0.3, paced=True, worker=True)  # back before 2.0's answer (2.6)
            if settle:
                assert list(caps.votes) == []  # not counted yet: 2.0, sent before it, is still out
            caps.ok((2.0, 2.6), pace=10.0, floor=0.3, worker=True)
            caps.ok((2.1, 2.7), pace=10.0, floor=0.3, worker=True)  # past 2.05 + 0.6: counted now
        return list(caps.votes)

    assert refused(concurrency.SETTLE) == [3] and refused(0.0) == [0]


def test_a_refusal_answered_at_once_is_judged_when_what_it_found_held_is_answered() -> None:
    """A gateway's refusal comes back before the requests it found held are answered: judged then, it
    found none. It waits until a success sent after it is answered (all sent before it were, by then),
    and the cap it shows is found then."""

    def gateway(settle: float) -> tuple[CapFinder, list[bool]]:
        caps = CapFinder()
        for i in range(17):  # one every 0.1 s, each served 0.3 s: each found 2 held
            caps.ok((i / 10, i / 10 + 0.3), pace=10.0, floor=0.3, worker=True)
        with mock.patch.object(concurrency, "SETTLE", settle):
            refused = [caps.refused((t, t + 0.001), 0.3, paced=True, worker=True) for t in (1.95, 1.96)]
            found = [caps.ok((t, t + 0.3), pace=10.0, floor=0.3, worker=True) for t in (1.7, 1.8, 1.9, 2.0)]
        return caps, refused + found

    caps, said = gateway(concurrency.SETTLE)
    assert said == [False, False, False, False, False, True] and caps.cap == 3
    early, said = gateway(0.0)  # judged as they came back: nothing held yet
    assert not any(said) and early.cap is None and list(early.votes) == [0, 0]


def test_a_cap_finder_never_compares_a_workers_clock_with_the_coordinators() -> None:
    """Times on a worker's clock (``Outcome.sent``) start a finder over that had the coordinator's:
    what it held is forgotten, so no count mixes the two."""
    caps = CapFinder()
    for i in range(20):
        caps.ok((i / 10, i / 10 + 0.3), pace=10.0, floor=0.3)
    assert caps.held(1.95, 0.3) == 3
    caps.ok((5000.0, 5000.3), pace=10.0, floor=0.3, worker=True)  # another clock altogether
    assert caps.held(1.95, 0.3) == 0 and caps.held(5000.1, 0.3) == 1
    assert not caps.refused((5000.1, 5000.1 + 0.3), 0.3, paced=True, worker=True)  # too few successes on this clock yet


@pytest.mark.parametrize(
    ("sent", "latency", "span"),
    [
        (7.5, 0.25, (7.5, 7.75)),  # a worker's times: passed on as they are
        (0.0, 0.25, None),  # none said
        (math.nan, 0.25, None),  # a peer's nonsense: the coordinator's own clock instead
        (math.inf, 0.25, None),
        (-3.0, 0.25, None),
        (7.5, math.nan, None),
        (7.5, -1.0, None),
    ],
)
def test_an_outcomes_worker_times_reach_the_pace_only_when_they_make_sense(
    sent: float, latency: float, span: tuple[float, float] | None
) -> None:
    policy = FarmPolicy(rng=random.Random(1))
    w = worker("1.1.1.1")
    seen: list[tuple[float, float] | None] = []
    record = policy.pacing.record

    def spy(*args: object, **kwargs: object) -> None:
        seen.append(kwargs["span"])  # type: ignore[arg-type]
        record(*args, **kwargs)  # type: ignore[arg-type]

    policy.pacing.record = spy  # type: ignore[method-assign]
    policy.on_outcome(job(10.0), w, Outcome(result="ok", status=200, latency=latency, sent=sent), 10.3)
    assert seen == [span]


def test_an_api_key_makes_one_budget_for_every_ip_and_each_lane_carries_its_share() -> None:
    policy = FarmPolicy(keyed={"jupiter"}, rng=random.Random(1))
    ws = {w.worker_id: w for w in (worker("1.1.1.1"), worker("1.1.1.2"))}
    shared = policy.pacing.group("jupiter") or policy.pacing._group("jupiter", 0.0).learner
    for w in ws.values():
        policy.pacing.get(w.ip, "jupiter", 0.0)
    shared.phase, shared.rate = "hold", 10.0
    lanes = policy.lanes(ws, "jupiter", 0.0)
    assert [lane.rate for lane in lanes] == [5.0, 5.0]
    assert policy.pacing.group("dflow") is None  # no key there: per IP


def test_a_converged_pace_keeps_a_margin_that_follows_the_jitters_refusals() -> None:
    """Arrival jitter refuses a pace right at the limit now and then: converged, it keeps 1 % below the
    highest proven pace. Refused a second after converging, what was proven was over the limit: the
    refused pace is the bracket's top, and the margin doubles. Refused after 20 s converged and clean,
    it is the jitter's tail (a pace a few percent under a bucket's rate is refused too): the bracket
    stands, the margin grows 0.5 %, and shrinks 0.25 % for each 10 s clean (20 times the cooling, if
    longer). Each such refusal taken for the limit cut the pace by the margin and 2 % more, down to 0.88
    of a two-token bucket over a quarter of an hour. Refused three times in a row, each before the margin
    shrank, the refusals come more often than jitter's: the old rule again. (Unguarded: a pace guarded
    against late arrivals keeps half of the margin.)"""
    learner = RateLearner(dataclasses.replace(PACE, arrival_window=0.0), 0.0)
    learner.phase, learner.rate, learner.lo, learner.hi = "hold", 19.9, 19.9, 20.05
    t = 0.0

    def clean_for(seconds: float) -> None:
        nonlocal t
        send_at_pace(learner, t, t + seconds)
        t += seconds
        learner.blocked(t)
        learner.ok(t, t - 0.1)

    def refused() -> Heard:
        """Refused at ``t`` (sent 50 ms before), and the next request, sent at ``t``, admitted: a bucket's
        refusal run (one of seconds reads as a window or a penalty box)."""
        heard = learner.refused(t, t - 0.05, None, 0.0)
        learner.ok(t + 0.05, t)
        return heard

    def clean_until_converged() -> None:
        for _ in range(20):
            clean_for(10.0)
            if learner.converged_at is not None:
                return

    clean_until_converged()
    assert learner.rate == pytest.approx(learner.lo * (1 - PACE.margin))
    lo, rate, t = learner.lo, learner.rate, t + 1.0
    assert refused() == "surprise"  # a second after converging
    assert learner.hi == rate and learner.lo < lo and learner.margin == 2 * PACE.margin
    assert not learner.jittered and not learner.tail
    clean_until_converged()
    lo, hi, margin = learner.lo, learner.hi, learner.margin
    assert learner.rate == pytest.approx(lo * (1 - margin))
    clean_for(PACE.jitter_after)  # converged and clean for a while
    t += 0.1
    assert refused() == "surprise"  # refused at the converged pace: jitter
    assert learner.jittered and learner.tail
    assert (learner.lo, learner.hi) == (lo, hi)  # the bracket stands ...
    assert learner.margin == pytest.approx(margin + PACE.jitter_step)  # ... the margin grows
    assert learner.rate == pytest.approx(lo * (1 - learner.margin))
    margin = learner.margin
    clean_for(PACE.jitter_clean + 0.1)
    assert learner.margin == pytest.approx(margin - PACE.jitter_relief)  # and shrinks, clean
    assert learner.rate == pytest.approx(lo * (1 - learner.margin))
    t += 1.0  # past jitter_clean since the last: a tail again, but not 20 s clean (so not one alone)
    assert refused() == "surprise"
    assert learner.jittered and not learner.tail and learner.lo == lo
    for k in range(PACE.jitter_quick):  # refused again, each before the margin shrank
        t += 2.0
        assert refused() == "surprise", k
        assert learner.jittered and learner.lo == lo, k
    rate, t = learner.rate, t + 2.0
    assert refused() == "surprise"  # once more: not jitter
    assert not learner.jittered and learner.hi == rate and learner.lo == pytest.approx(rate * PACE.trim)


def test_a_refusal_that_says_seconds_is_no_jitter_however_long_the_pace_ran_clean() -> None:
    """A minute's window under a bucket fills while the pace has run clean for a minute: its refusal
    comes after 20 s converged like the jitter's tail, but its ``Retry-After`` says the budget comes back
    in seconds. The limit remembers seconds: the refused pace is the bracket's top, as before."""
    for wait, jittered in ((1.0, True), (PACE.long_wait, False), (30.0, False)):
        learner = RateLearner(PACE, 0.0)
        learner.phase, learner.rate, learner.lo, learner.hi = "hold", 19.8, 20.0, 20.1
        learner.converged_at = 0.0
        learner.dispatched(30.0)
        assert learner.refused(30.05, 30.0, wait, wait) == "surprise"
        assert learner.jittered is jittered, wait
        assert (learner.hi == 20.1) is jittered, wait  # the bracket stands only for the tail


def test_a_refusal_taken_for_jitter_whose_run_lasts_seconds_was_a_windows_fill() -> None:
    """Without a word (or with a ``Retry-After`` that says a second whatever the limit holds), a minute's
    window filling after a minute clean is refused like the jitter's tail. The refusals go on until the
    window ends: a run of seconds. Then it was the fill, and what a surprise does is done: the refused pace
    is the bracket's top and ``lo`` is 2 % under it (left taken for the tail, 16 IPs under offset minute
    windows read 0.847-0.878 of N·R where 0.879-0.908)."""
    learner = RateLearner(PACE, 0.0)
    learner.phase, learner.rate, learner.lo, learner.hi = "hold", 19.8, 20.0, 20.1
    learner.converged_at = 0.0
    learner.dispatched(30.0)
    assert learner.refused(30.05, 30.0, None, 0.0) == "surprise"
    assert learner.jittered and learner.hi == 20.1
    refused, margin = 19.8, learner.margin
    for k in range(1, 10):  # the window stays spent: each probe refused, the same run
        learner.dispatched(30.0 + k)
        assert learner.refused(30.05 + k, 30.0 + k, None, 1.0) == "echo"
    learner.dispatched(40.0)
    learner.ok(40.05, 40.0)  # it ended: 10 s
    assert learner.windowed and not learner.jittered
    assert learner.hi == refused and learner.lo == pytest.approx(refused * PACE.trim)
    assert learner.margin == pytest.approx(margin - PACE.jitter_step)


def test_a_short_retry_after_does_not_read_as_a_budget_that_fell() -> None:
    """Two refusals at a proven pace, each with ``Retry-After: 1`` (a bucket's 50 ms, rounded up): the
    second cooled second is not a second the budget gave nothing. The pace is trimmed, not halved."""
    learner = RateLearner(PACE, 0.0)
    learner.phase, learner.rate, learner.lo, learner.hi = "hold", 19.6, 19.6, 20.0
    learner.refused(10.0, 9.95, 1.0, 1.0)  # cools 1 s, as the farm honours Retry-After
    sent = 11.0
    while sent < 13.0:  # then runs at the pace for 2 s
        learner.ok(sent + 0.1, sent)
        sent += 1 / 19.6
    assert learner.refused(13.1, 13.0, 1.0, 1.0) == "surprise"
    # Over the 3 s between the refusals it got 2 s worth (12.2/s); over the 2 s it sent, 19.2/s.
    assert learner.lo >= 18.0, learner.lo


def test_a_shared_budget_refused_far_below_what_every_ip_got_is_dissolved() -> None:
    """Per-IP limits taken for a shared budget (jittered surprises on many IPs): the IPs got 80/s together,
    and the budget paced as one is refused on down past 75 % of that (what they got is its floor, so it
    comes down only by the cuts of surprises). It was not shared: each IP paces
    itself again from what it had proven, and for five minutes no surprise makes it shared again."""
    book = PaceBook()
    ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    for ip in ips:
        learner = book.get(ip, "u", 0.0).learner
        learner.phase, learner.rate, learner.lo, learner.hi = "hold", 19.8, 20.0, 20.2
    t = 0.0
    for k in range(800):  # 10 s at 80/s over the four IPs
        t = k / 80
        ip = ips[k % 4]
        book.dispatched(ip, "u", t)
        book.record(ip, "u", "ok", t + 0.1, sent_at=t)
    now = t + 0.1
    book.share("u", now)
    group = book.group("u")
    assert group is not None and group.rate == pytest.approx(4 * 19.8)
    assert group.lo == pytest.approx(PACE.set_point * 80, rel=0.02)  # what the budget admitted: the floor
    refusals = 0
    while book.group("u") is not None and refusals < 50:  # each refusal news: a success between
        now += 2.0
        book.record("10.0.0.1", "u", "ok", now, sent_at=now - 0.1)
        book.record("10.0.0.2", "u", "rate_limited", now + 0.01, sent_at=now)
        refusals += 1
        if book.group("u") is not None:
            assert book.group("u").rate >= DISSOLVE * 80 * 0.95  # kept while above 75 % of what they got
    assert book.group("u") is None and refusals < 50
    p = book.get("10.0.0.3", "u", now)
    assert not p.grouped and p.rate == pytest.approx(19.8)  # its own proven pace again
    assert book.next_at("10.0.0.3", "u", now) is None or book.next_at("10.0.0.3", "u", now) <= now + 1 / 19.8


def test_a_keyed_budget_is_never_dissolved() -> None:
    """A budget shared because the config sends an API key is the account's: refusals trim it, whatever."""
    book = PaceBook(keyed={"u"})
    now = 0.0
    for _ in range(40):
        now += 2.0
        book.record("10.0.0.1", "u", "ok", now, sent_at=now - 0.1)
        book.record("10.0.0.2", "u", "rate_limited", now + 0.01, sent_at=now)
    group = book.group("u")
    assert group is not None and group.phase == "hold" and book.get("10.0.0.1", "u").grouped


@pytest.mark.parametrize("tested", [True, False])
def test_a_box_a_test_tripped_is_not_counted_against_the_pace_back_under_it(tested: bool) -> None:
    """Under a 5 s box, the bracket is tested at 20.1/s and boxed; the pace goes back to its proven
    19.9/s and, 3 s after the box, is refused again (arrival jitter at 64 addresses). The box was the
    test's: the 60 admitted in the 3 s since say 19.9 fell a little, not that 60 over the 8 s since
    the test (7.4/s: the pace fell to a third, and took a minute to climb back). Had the refusal
    before been at this pace too (boxed again), the whole 8 s is what it sustains, box included."""
    learner = RateLearner(PACE, 0.0)
    learner.arrivals = None  # the arrival guard has its own tests
    learner.phase, learner.lo, learner.hi, learner.dear = "hold", 19.9, 20.4, True
    learner.rate = 20.1 if tested else 19.9
    learner.dispatched(10.0)
    assert learner.refused(10.05, 10.0, 5.0, 5.0) == ("refusal" if tested else "surprise")
    # Tested, the bracket stands: back under the proven 19.9/s by its margin (a surprise: 2 % under it)
    assert learner.rate == pytest.approx(19.9 * (1 - PACE.margin) if tested else 19.5, rel=0.001)
    t, sent = 15.05, 0
    while t < 18.05:  # back at its pace after the box
        learner.dispatched(t)
        learner.ok(t + 0.3, t)
        t, sent = t + 1 / 19.9, sent + 1
    learner.dispatched(t)
    assert learner.refused(t + 0.3, t, 5.0, 5.0) == "surprise"
    if tested:
        assert learner.lo >= 0.95 * 19.9, learner.lo
    else:
        assert learner.lo == pytest.approx(PACE.set_point * sent / (t - 10.0), rel=0.01)


def test_a_box_a_test_tripped_without_a_word_is_not_counted_against_the_pace_back_under_it() -> None:
    """As above, but the box never says when: the backoff probes it (within a fifth of the run so far) until
    a probe is admitted, 5 s on. Back at its settled pace, refused 4 s later: the 80 admitted since the
    box ended say the pace fell a little, not that 80 over the 9 s since the test (8.7/s) are the rate.
    Its coolings (4.3 s in all, 48 % of that) are too little of it to be taken for cooling."""
    learner = RateLearner(PACE, 0.0)
    learner.arrivals = None
    learner.phase, learner.lo, learner.hi, learner.dear = "hold", 19.9, 20.4, True
    learner.rate = 20.1  # the test past the bracket
    learner.dispatched(10.0)
    assert learner.refused(10.05, 10.0, None, 0.0) == "refusal"
    for sent, cooled in ((10.1, 0.5), (10.65, 0.8), (11.5, 0.9), (12.45, 1.0), (13.5, 1.1)):
        learner.dispatched(sent)
        assert learner.refused(sent + 0.05, sent, None, cooled) == "echo"  # the box's run
    t, admitted = 15.0, 0
    while t < 19.0:  # the box is over: back at its pace
        learner.dispatched(t)
        learner.ok(t + 0.05, t)
        t, admitted = t + 1 / learner.rate, admitted + 1
    learner.dispatched(t)
    assert learner.refused(t + 0.05, t, None, 0.0) == "surprise"
    assert learner.lo >= 0.95 * 19.9, learner.lo


@pytest.mark.parametrize("depth", [0.0, 10.0])
def test_a_failed_test_of_a_closed_bracket_goes_back_to_the_pace_that_held(depth: float) -> None:
    """Converged 1 % under a bracket of 10.0-10.1/s, the test at 10.25/s is refused: the bracket stands, and
    the pace goes back to 9.9/s, where it held, not to lo (a limit within arrival jitter of lo boxed again
    there, seconds after the test's box). Under a bucket with depth it goes to lo and proves it again: the
    test spent the bank that may have carried lo over the rate."""
    learner = RateLearner(PACE, 0.0)
    learner.phase, learner.lo, learner.hi, learner.depth = "hold", 10.0, 10.1, depth
    learner.rate = 10.1 * (1 + PACE.eps)  # the test past the bracket (converged_at cleared for it)
    learner.dispatched(100.0)
    assert learner.refused(100.05, 100.0, 1.0, 1.0) == "refusal"
    assert (learner.lo, learner.hi) == (10.0, 10.1)
    assert learner.rate == pytest.approx(10.0 if depth else 10.0 * (1 - PACE.margin))
    assert learner.reprobe_every == 2 * PACE.reprobe  # the next test waits twice as long either way


def _first_run_of_ten(wait: float) -> RateLearner:
    """Ten admitted in 0.1 s, then refused for ``wait`` seconds (its ``Retry-After``), then back."""
    learner = RateLearner(PACE, 0.0)
    for i in range(10):
        learner.dispatched(i / 100)
        learner.ok(i / 100 + 0.05, i / 100)
    learner.dispatched(0.1)
    learner.refused(0.15, 0.1, retry_after=wait, cooled=wait)
    learner.dispatched(0.2 + wait)
    learner.ok(0.25 + wait, 0.2 + wait)
    return learner


def test_a_pace_is_proven_in_the_time_it_takes_to_send_a_first_runs_count_not_the_runs_length() -> None:
    """Ten admitted, then refused for 30 s (``penalty:10/1s,box=30s``, or a window of 10 per 30 s): the
    pace starts at 0.33/s. A window of 10 that the pace outruns refuses it within the time the pace takes
    to send 10 past a reset (whatever its length, up to the proven pace's 10 at a time), so a pace proves
    itself in 4 of those times: 8 s at 5/s, where the box's 30 s cost a 30 s proof at every step (a 30 s
    box: 0.49 of N·R counted 420-600 s, 0.99 now). Where the count takes longer than the run, the run
    stands, and so it does within 5 % of a refused pace (a box that arrival jitter trips there shows
    later); a first run that ended at once (a bucket's) counts nothing."""
    learner = _first_run_of_ten(30.0)
    assert learner.phase == "hold" and learner.windowed and learner.scale == pytest.approx(30.1)
    assert learner.lo == pytest.approx(0.98 * 10 / 30.2, rel=1e-3)
    assert learner.trust() == pytest.approx(30.2)  # 4 x 10 at 0.33/s is 120 s: the period's 30 s stand
    learner.rate = 5.0
    assert learner.trust() == pytest.approx(PACE.count_trust * 10 / 5.0)
    learner.hi = 5.2  # within 5 % of a refused pace, where arrival jitter's boxes take longer to show
    assert learner.trust() == pytest.approx(30.2)
    learner.hi = math.inf
    learner.rate = 40.0
    assert learner.trust() == PACE.min_trust  # (1 s)
    bucket = _first_run_of_ten(1.0)
    bucket.rate = 40.0  # (10 at 40/s: 0.25 s)
    assert not bucket.windowed and bucket.window_count == 0
    assert bucket.trust() == pytest.approx(bucket.period) and bucket.period > PACE.min_trust


def test_where_overshooting_is_dear_and_proofs_cheap_the_search_climbs_from_lo_in_steps() -> None:
    """A 30 s box met at 19.5/s, 9.8/s proven: halfway (13.8/s) and each bisection after it were boxed in
    turn where the limit sat just above lo (six boxes of 30 s). Where a proof takes a third of the box or
    less (10 admitted a run: 4 s at 10/s), the search steps up from lo, +2 % then doubling while proven. A
    minute's window, dear too, proves a pace in a minute: it bisects, as a limit cheap to overshoot does."""
    paces = {}
    for case in ("box", "window", "cheap"):
        learner = RateLearner(PACE, 0.0)
        learner.phase, learner.lo, learner.hi, learner.gain = "hold", 9.77, 19.53, PACE.step
        learner.dear, learner.scale = case != "cheap", 30.0 if case == "box" else 60.0
        learner.window_count = 10 if case == "box" else 0  # (the window's 600: its 60 s stand)
        learner.rate = 9.77
        steps, t = [], 0.0
        for _ in range(3):
            t = prove(learner, t)
            steps.append(learner.rate)
        paces[case] = steps
    assert paces["box"] == pytest.approx([9.77 * 1.02, 9.77 * 1.02 * 1.04, 9.77 * 1.02 * 1.04 * 1.08])
    assert paces["window"][0] == paces["cheap"][0] == pytest.approx(math.sqrt(9.77 * 19.53))


def test_under_a_box_each_failed_test_past_the_bracket_doubles_the_wait_for_the_next_up_to_20_minutes() -> None:
    """A test just past the bracket costs a box where overshooting is dear (5 s of the pace: 1.7 % every
    300 s); each failed one doubles the wait for the next, up to 1200 s, where a rate-only limit's stop at 240 s."""
    learner = RateLearner(PACE, 0.0)
    learner.phase, learner.lo, learner.hi, learner.dear = "hold", 19.7, 20.0, True
    learner.reprobe_every = PACE.dear_reprobe
    waits = []
    t = 100.0
    for _ in range(4):
        learner.rate, learner.converged_at = learner.hi * (1 + PACE.dear_eps), None  # the test past the bracket
        t += 10.0
        assert learner.refused(t, t - 0.05, None, 0.0) == "refusal"
        waits.append(learner.reprobe_every)
        learner.run_start = None  # the box ended
    assert waits == [600.0, 1200.0, 1200.0, 1200.0]
    plain = RateLearner(PACE, 0.0)
    plain.phase, plain.lo, plain.hi, plain.rate = "hold", 19.7, 19.9, 19.9 * (1 + PACE.eps)
    plain.reprobe_every = PACE.max_reprobe
    plain.refused(10.0, 9.95, None, 0.0)
    assert plain.reprobe_every == PACE.max_reprobe


def test_under_a_long_box_the_bracket_is_tested_as_rarely_as_the_box_is_long() -> None:
    """A test past the bracket costs a box, so a learnt pace under a 30 s box waits 120 boxes' length
    (3600 s) before one, and a 5 s box 600 s, and each failed test doubles it up to 4x that; a told pace
    is never tested: its trim holds the 300 s as before."""
    waits = {}
    for box, told in ((30.0, None), (5.0, None), (30.0, 10.0)):
        learner = RateLearner(PACE, 0.0, told=told)
        if told is None:
            learner.phase, learner.lo, learner.hi, learner.rate = "hold", 9.7, 10.0, 9.7
        t = 100.0
        learner.refused(t, t - 0.05, None, 0.0)  # over the limit: boxed ...
        learner.ok(t + box, t + box - 0.05)  # ... for the box's length
        assert learner.dear, (box, told)
        waits[(box, told)] = learner.reprobe_every
        learner.converged_at, learner.lo, learner.hi = None, 9.7, 9.8
        learner.rate = 9.8 * (1 + PACE.dear_eps)  # the test past the bracket, refused
        learner.refused(t + 2 * box, t + 2 * box - 0.05, None, 0.0)
        waits[(box, told, "failed")] = learner.reprobe_every
    assert waits[(30.0, None)] == pytest.approx(3600.0, rel=0.01)
    assert waits[(30.0, None, "failed")] == pytest.approx(7200.0, rel=0.01)
    assert waits[(5.0, None)] == pytest.approx(600.0, rel=0.01)
    assert waits[(30.0, 10.0)] == PACE.dear_reprobe


def test_a_send_the_loop_made_late_keeps_catch_up_of_the_schedule_however_late_it_was() -> None:
    """Timers wake late on a busy host. A send a request waited for (the pace held one back since the
    last send) keeps up to ``catch_up`` of its schedule however late the loop made it (it used to
    start a new schedule past ``catch_up`` and lose all its lateness, which at 64 addresses on 2
    cores cost a learnt pace percents). Never are two sends closer than the interval less
    ``catch_up``, never does the schedule run ahead of one send per interval, and a send after the
    pace sat idle (no request waited) keeps nothing."""
    learner = RateLearner(PACE, 0.0, told=10.0)
    learner.arrivals = None  # the arrival guard has its own tests
    interval = 1 / learner.rate
    lates = [0.001, 0.004, 0.0, 0.050, 0.003, 0.0005]
    went = [0.0]
    learner.dispatched(0.0)
    for late in lates:
        slot = learner.next_at(went[-1])
        assert slot is not None
        learner.blocked(went[-1])  # a request asked at once, and waits for the slot
        went.append(slot + late)  # the loop wakes this late for the slot
        learner.dispatched(went[-1])
    gaps = [b - a for a, b in itertools.pairwise(went)]
    assert min(gaps) >= interval - PACE.catch_up - 1e-9
    # Each send but the last lost only what it was late past catch_up (the 4 ms one 2 ms, the 50 ms
    # one 48 ms); the last is as late as it woke.
    lost = sum(max(0.0, late - PACE.catch_up) for late in lates[:-1])
    assert lost == pytest.approx(0.051)
    assert went[-1] == pytest.approx(6 * interval + lost + lates[-1])
    # Idle: no request came until 5 s later; the send then is late for nothing, and keeps nothing.
    learner.dispatched(went[-1] + 5.0)
    assert learner.next_at(went[-1] + 5.0) == pytest.approx(went[-1] + 5.0 + interval)


def test_under_a_concurrency_cap_a_send_the_cap_held_keeps_one_interval_of_the_schedule() -> None:
    """A cap frees its slots in bunches (answers come together): a send it held late would otherwise
    keep at most ``catch_up`` of the schedule, and the pace hold back the next slot as well. Under a cap
    the schedule keeps up to one interval: never more than one send sooner than the pace's own spacing."""
    capped, plain = RateLearner(PACE, 0.0, told=10.0), RateLearner(PACE, 0.0, told=10.0)
    capped.arrivals = plain.arrivals = None  # the arrival guard has its own tests
    interval = 1 / capped.rate
    for learner, cap in ((capped, True), (plain, False)):
        learner.dispatched(0.0, capped=cap)
        learner.dispatched(interval + 0.08, capped=cap)  # held 80 ms past its slot
    assert capped.next_at(interval + 0.08) == pytest.approx(2 * interval)  # its own slot still
    assert plain.next_at(interval + 0.08) == pytest.approx(2 * interval + 0.08)  # nothing waited: nothing kept
    # Held far longer, it catches up one send, and no more: the third goes one interval after the second.
    t = 10.0
    capped.dispatched(t, capped=True)
    assert capped.next_at(t) is None
    capped.dispatched(t, capped=True)
    assert capped.next_at(t) == pytest.approx(t + interval)


@pytest.mark.parametrize(("wait", "box"), [(1.0, False), (10.0, True)])
def test_after_a_long_wait_the_next_refusal_s_own_wait_says_what_the_time_between_measures(
    wait: float, box: bool
) -> None:
    """A proven 10/s is refused with a long Retry-After (20 s: a window spent early, or a box) and
    cools; then it runs 10 s at its pace, 100 admitted, and is refused again. Refused with a short
    wait (a window's end), the 100 came in the 10 s of sending: the pace is only trimmed, not cut
    to 100 over the 30 s between (a minute's window under a second's limit read so fell to two
    thirds). Refused with a wait as long as its sending again (a box), the 30 s between, box
    included, is the lower bound it climbs back from: the time since a box ended holds its
    window's whole budget at any pace."""
    learner = RateLearner(PACE, 0.0)
    learner.phase, learner.rate, learner.lo, learner.hi = "hold", 10.0, 10.0, 10.2
    learner.dispatched(10.0)
    assert learner.refused(10.05, 10.0, 20.0, 20.0) == "surprise"
    pace = learner.rate
    for i in range(100):
        t = 30.0 + i * 0.1
        learner.dispatched(t)
        learner.ok(t + 0.05, t)
    learner.dispatched(40.0)
    assert learner.refused(40.05, 40.0, wait, wait) == "surprise"
    if box:
        assert learner.lo == pytest.approx(PACE.set_point * 100 / 30.0)
    else:
        assert learner.lo == pytest.approx(pace * PACE.trim)


def test_under_a_bucket_with_depth_a_step_above_lo_runs_clean_for_as_long_as_its_bank_could_carry_it() -> None:
    """A first run of a second that admitted 20 (a bucket's depth, and its refill meanwhile): a step 5 %
    above lo (0.9/s over it) must run clean for twice the time 20 take at that excess, up to 10 s, where it
    was proven in a second (each refusal's cooling banks the depth again: 1.4 times the rate proven so).
    A pace at lo proves as before; a first run of 2 (a two-token bucket) sets no depth."""

    def after_first_run(burst: int) -> RateLearner:
        learner = RateLearner(PACE, 0.0)
        for i in range(burst):  # the opening burst, answered at once
            learner.dispatched(0.001 * i)
            learner.ok(0.001 * i + 0.05, 0.001 * i)
        learner.dispatched(0.02)
        learner.refused(0.07, 0.02, 1.0, 1.0)  # Retry-After: 1
        learner.dispatched(1.07)
        learner.ok(1.12, 1.07)  # back in a second: a bucket
        learner.hi = learner.lo * 1.1  # (a pace refused above it)
        return learner

    def proven_in(learner: RateLearner, t: float) -> tuple[float, float]:
        """Saturated and clean from ``t`` until the pace changes: (the time it took, when)."""
        start, pace = t, learner.rate
        t = run_clean(learner, t, lambda now: learner.rate != pace or now >= start + 60.0)
        return t - start, t

    assert after_first_run(2).depth == 0.0
    took = {}
    for depth in (20.0, 0.0):
        learner = after_first_run(20)
        assert learner.depth == 20.0
        learner.depth = depth  # (0: as before)
        at_lo, t = proven_in(learner, 1.2)
        assert learner.rate == pytest.approx(math.sqrt(learner.lo * learner.hi))  # the step
        step, _ = proven_in(learner, t)
        took[depth] = (at_lo, step)
    assert took[20.0][0] == pytest.approx(took[0.0][0]) and took[0.0][0] < 1.5  # at lo: a second or so
    assert 10.0 <= took[20.0][1] < 10.5  # 2 x 20 / 0.9 = 44 s, capped at 10 s
    assert took[0.0][1] < 1.5
