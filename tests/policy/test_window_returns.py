"""A window's rate read from the budget's returns, whatever its refusals say (tests/policy/limitsim.py).

Where a probe after a refusal is refused too, the limiter held the budget spent (a window, a box, or
other IPs spending a budget we share). From one such return to the next a window admits the same
count whatever the pace, over its period: three spans in a row that agree give its rate
(``RateLearner._held_return``). The refusals could not tell it:

- a ``Retry-After: 1`` at a window's fill (as many gateways say, whatever the limit) counts the
  window's tail as cooling, and the pace since the return is our own;
- a first burst that met a window just before its reset read the next window's burst as the rate
  (600 in 4.4 s: 136/s for 10/s), and each fill after trimmed it 2 %.
"""

from __future__ import annotations

import math
import random

import pytest

from galileo.policy.allocator import FarmPolicy
from galileo.policy.pacing import PaceBook
from tests.policy.limitsim import Gateway, Run, SimUpstream, simulate

MINUTE = "fixed:600/60s"


def _run(
    spec: str, n: int, latency: str, *, lie: bool, offsets: dict[str, float] | None = None, seconds: float = 600
) -> Run:
    """``n`` IPs for ``seconds``, counted over the last 240 (four of the minute's windows)."""
    ips = [f"10.0.0.{i}" for i in range(1, n + 1)]
    policy = FarmPolicy(rng=random.Random(1))
    upstream = Gateway(spec, says_one_second=lie, offsets=offsets, latency=latency, seed=2)
    run = simulate(upstream, ips, seconds=seconds, warmup=seconds - 240, policy=policy, seed=1)
    assert policy.pacing.group("u") is None  # per IP, as they are
    return run


@pytest.mark.parametrize("latency", ["50", "300"])
def test_a_minutes_window_under_a_seconds_bucket_whose_retry_after_always_says_one_second(latency: str) -> None:
    """20/s and 600 a minute, each refusal ``Retry-After: 1``: the pace read 14.7/s for 10, each fill
    trimmed it 2 %, and the window's tail was 20 s of refusals a minute: 2.8 % 429s at 50 ms (0.7 % at
    300 ms); 0.04 % and 0.17 % now."""
    run = _run("bucket:20/1s,burst=0.1 & " + MINUTE, 4, latency, lie=True)
    assert run.ratio(4 * 10.0) >= 0.97, run.ratio(4 * 10.0)
    assert run.share_429 <= 0.005, run.share_429


# Offsets (seconds) of four IPs' windows: 10.0.0.4's first burst met its window 1.3 s before it reset
# (so did 10.0.0.14's, one of sixteen, at 300 ms).
OFFSETS = {"10.0.0.1": 19.07, "10.0.0.2": 45.53, "10.0.0.3": 49.91, "10.0.0.4": 15.0}


def test_a_minutes_window_not_aligned_to_the_clock_and_without_retry_after() -> None:
    """An IP whose first burst met its window just before the reset read 98/s for 10 (600 oks in the 5.3 s
    to the next refusal), and each fill trimmed it 2 %: 2.2 % 429s; 0.6 % now."""
    run = _run(MINUTE + ",retry_after=no", 4, "50", lie=False, offsets=OFFSETS)
    assert run.ratio(4 * 10.0) >= 0.95, run.ratio(4 * 10.0)
    assert run.share_429 <= 0.01, run.share_429


def test_a_minutes_window_met_before_its_reset_is_checked_at_its_second_return_without_retry_after() -> None:
    """1200 a minute, no ``Retry-After``, 300 ms: 10.0.0.4's first burst met its window just before the reset,
    and the next window's 1200 in 5 s read 230/s for 20. Only the surprises' 2 % trims and, three windows
    on, the held returns' halvings brought it down: 4.95 % 429s over the run's fourth to seventh minutes.
    The budget's second return now bounds the rate from both sides (0.63 %)."""
    run = _run("fixed:1200/60s,retry_after=no", 4, "300", lie=False, offsets=OFFSETS, seconds=420)
    assert run.share_429 <= 0.01, run.share_429
    assert run.ratio(4 * 20.0) >= 0.9, run.ratio(4 * 20.0)


def test_refusals_after_a_first_window_came_back_are_news() -> None:
    """A sliding window counter (``rolling``) admits its rate again from the moment it reopens. A minute's
    one met by the opening burst, without ``Retry-After``, came back after 22 s: 600 over that read 27/s for
    10. Its refusals were then taken for the echoes of a measurement for 20 s (the time scale), and 17 of
    every 27 requests were refused unheard: 16 % of 429s over the first 150 s at 4 IPs. Heard, the surprises
    bring the pace down within seconds (0.75 %)."""
    ips = [f"10.0.0.{i}" for i in range(1, 5)]
    policy = FarmPolicy(rng=random.Random(1))
    upstream = SimUpstream("rolling:600/60s,retry_after=no", latency="50", seed=2)
    run = simulate(upstream, ips, seconds=150, warmup=30, policy=policy, seed=1)
    assert run.share_429 <= 0.015, run.share_429
    assert run.ratio(4 * 10.0) >= 0.95, run.ratio(4 * 10.0)


def test_the_second_return_without_retry_after_is_bounded_by_the_refused_probes() -> None:
    """Unit: without a word, a window reset after the last refused probe and before the return. From the
    first return to the second it admitted its budget once, so its rate lies between that count over the
    time from the first run's last refused probe to the second return, and over the time from the first
    return to the second run's last refused probe: the pace goes to 98 % of the first, the second is the
    guess to search up to."""
    learner = PaceBook().get("10.0.0.1", "u", 0.0).learner
    for j in range(600):  # the first burst, met 5 s before the window's reset
        learner.dispatched(0.005 * j)
        learner.ok(0.005 * j + 0.05, 0.005 * j)
    for sent in (3.0, 4.0, 4.5):  # the budget is spent: refusals until it comes back
        learner.dispatched(sent)
        learner.refused(sent + 0.05, sent, None, 0.5)
    learner.dispatched(5.2)
    learner.ok(5.25, 5.2)  # the first return: 601 over 5.2 s read as 115/s
    assert learner.phase == "hold" and learner.lo > 100
    for j in range(600):  # the next window's budget, at that pace
        sent = 5.3 + j * 0.01
        learner.dispatched(sent)
        learner.ok(sent + 0.05, sent)
    for sent, cooled in ((11.4, 0.0), (12.5, 1.0), (40.0, 20.0), (64.0, 2.0)):
        learner.dispatched(sent)
        learner.refused(sent + 0.05, sent, None, cooled)
    learner.dispatched(66.0)
    learner.ok(66.05, 66.0)  # the second return: the window reset between 64.0 and 66.0
    assert learner.lo == pytest.approx(0.98 * 601 / (66.0 - 4.5))
    assert learner.hi == pytest.approx(601 / (64.0 - 5.2)) and not learner.hi_refused


def test_held_returns_a_window_apart_with_the_same_count_give_its_rate() -> None:
    """Unit: four returns after held runs, 60 s apart, 600 successes between each: the pace goes to 98 %
    of 10/s (from 14.7). Spans whose counts differ (a box tripped at a moment jitter chose, what other IPs
    left of a shared budget) say nothing, nor do two alone."""

    def returns(spans: list[tuple[int, float]]) -> float:
        learner = PaceBook().get("10.0.0.1", "u", 0.0).learner
        learner.phase, learner.rate, learner.lo, learner.hi = "hold", 14.7, 14.7, 15.0
        t = 10.0
        for count, length in [(0, 0.0), *spans]:
            sends = [t + length * (j + 1) / (count + 1) for j in range(count)]
            for sent in sends:
                learner.dispatched(sent)
                learner.ok(sent + 0.05, sent)
            t += length
            learner.dispatched(t)  # the window is spent: a refusal, a probe refused too, then the return
            learner.refused(t + 0.05, t, 1.0, 1.0)
            learner.dispatched(t + 1.1)
            learner.refused(t + 1.15, t + 1.1, 1.0, 1.0)
            t += 2.5
            learner.dispatched(t)
            learner.ok(t + 0.05, t)
        return learner.lo

    window = (600, 57.5)
    assert returns([window] * 3) == pytest.approx(0.98 * 600 / 60.0, rel=0.01)
    # Else only the surprises' 2 % trims: 14.7 -> 13.5 (13.8 after two spans)
    assert returns([window, window, (540, 57.5)]) >= 13.0  # not the same count
    # A return found late lengthens one span and shortens the next: the three are taken together
    assert returns([window, (600, 70.0), (600, 45.0)]) == pytest.approx(0.98 * 1800 / 180.0, rel=0.01)
    assert returns([window, window]) >= 13.0  # two alone: a box tripped twice at one pace agrees as often


def test_a_held_return_raises_a_windowed_pace_to_what_came_since_the_last_ones_refused_probe() -> None:
    """Unit: 600 a minute, resets at 40 s and 100 s. A fill at 8 s, probes until 39.5 s refused, the
    return at 41 s; the next fill at 73.3 s, at 19/s less 2 %: a surprise, measured over the 65 s since
    the last fill (two points of two windows), cuts the pace to 9.0/s. The return after the reset at
    100 s came after a held run: from the last refused probe before the first return (39.5 s, before
    the first reset) to it, longer than the window, 601 came: 98 % of that, 9.62/s, is a pace the window
    holds (the first held run, 31 s, marked the pair windowed)."""
    learner = PaceBook().get("10.0.0.1", "u", 0.0).learner
    learner.phase, learner.rate, learner.lo, learner.hi = "hold", 19.0, 19.0, 19.5
    for sent, cooled in ((8.0, 0.5), (9.1, 30.0), (39.5, 1.0)):
        learner.dispatched(sent)
        learner.refused(sent + 0.05, sent, None, cooled)
    learner.dispatched(41.0)
    learner.ok(41.05, 41.0)  # the first held return
    for j in range(600):
        sent = 41.1 + j / 18.62
        learner.dispatched(sent)
        learner.ok(sent + 0.05, sent)
    learner.dispatched(73.3)
    learner.refused(73.35, 73.3, None, 0.5)
    assert learner.lo == pytest.approx(0.98 * 601 / (73.3 - 8.0))  # the cut: 9.02/s
    for sent, cooled in ((74.5, 25.0), (99.6, 1.0)):
        learner.dispatched(sent)
        learner.refused(sent + 0.05, sent, None, cooled)
    learner.dispatched(100.7)
    learner.ok(100.75, 100.7)  # the second
    assert learner.lo == pytest.approx(0.98 * 601 / (100.7 - 39.5))
    assert learner.hi > learner.lo


def test_a_box_tripped_by_late_timers_is_not_read_as_a_window() -> None:
    """A 20/s box without ``Retry-After``, 16 IPs whose timers wake 3 ms late on average: jitter trips it
    now and then, and two trips in a row with 210 successes each, taken for a window's spans, cut a pace
    to 12.7/s (0.969 of N·R with 8 boxes counted, where there had been none). Three must agree."""
    ips = [f"10.0.0.{i}" for i in range(1, 17)]
    upstream = SimUpstream("penalty:20/1s,box=5s,retry_after=no", latency="50", seed=2)
    run = simulate(
        upstream, ips, seconds=420, warmup=180, policy=FarmPolicy(rng=random.Random(1)), seed=1, timers_late=0.003
    )
    assert run.penalties_counted <= 2, run.penalties_counted
    assert run.ratio(16 * 20.0) >= 0.975, run.ratio(16 * 20.0)


def test_a_held_run_whose_retry_after_always_says_one_second_probes_one_request_at_a_time() -> None:
    """A minute's window whose 429s all say ``Retry-After: 1``, 300 ms away. 10.0.0.4's first burst met its
    window 0.3 s before the reset and read 272/s for 10; it filled each window in seconds and was held for
    the rest of it, probing once a second with the 6 requests a 300 ms path carries at its pace: 22.7 % of
    the answers were 429 over the fourth to seventh minutes. Each probe now goes alone: 3.1 %. The rest is
    the three held spans it takes to believe the window, each cut at most by half."""
    offsets = {**OFFSETS, "10.0.0.4": 16.55}
    run = _run(MINUTE, 4, "300", lie=True, offsets=offsets, seconds=420)
    assert run.share_429 <= 0.05, run.share_429
    assert run.ratio(4 * 10.0) >= 0.97, run.ratio(4 * 10.0)


def test_a_held_run_probes_one_request_at_a_time() -> None:
    """Unit: once a probe after a refusal is refused too, the budget is held spent (a window, a box), and
    the next probe goes alone, when its ``Retry-After`` ends or the backoff's step does. The first probe
    after a refusal still goes at the pace (a bucket's refusal from arrival jitter is over by then), and a
    success ends the run. Without a word a pace's worth in flight found a box's end sooner while the
    backoff's steps doubled up to 30 s (16 IPs under a 20/s box at 150 ms: 0.980 of it with single probes,
    0.983 without, 12 seeds); within a fifth of the run so far (galileo.policy.cooldown) both read 0.985,
    and single probes halve the 429s of the first minute (6.9 % -> 3.4 %)."""
    book = PaceBook(known={"u": 20.0, "v": 20.0})
    pacer, quiet = book.get("10.0.0.1", "u", 0.0), book.get("10.0.0.1", "v", 0.0)
    for upstream, said in (("u", 1.0), ("v", None)):
        book.record("10.0.0.1", upstream, "rate_limited", 1.0, 0.9, retry_after=said, cooled=1.0)
        assert book.get("10.0.0.1", upstream).allowance()[1] is None  # one refusal: the pace, once cooled
        book.record("10.0.0.1", upstream, "rate_limited", 2.3, 2.0, retry_after=said, cooled=1.0)
    assert quiet.allowance() == (quiet.learner.rate, 1)  # no word: held too
    assert pacer.allowance() == (pacer.learner.rate, 1)  # its probe refused too: held
    book.dispatched("10.0.0.1", "u", 3.3)
    assert book.next_at("10.0.0.1", "u", 3.4) == math.inf  # the next waits for the probe's answer
    book.record("10.0.0.1", "u", "ok", 3.6, 3.3)
    assert pacer.allowance() == (pacer.learner.rate, None)  # back: the pace again
    assert book.next_at("10.0.0.1", "u", 3.6) is None
