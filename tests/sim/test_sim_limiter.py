"""The limiter zoo as pure objects: every shape with an injected clock and exact counts."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from galileo.sim.limiter import (
    ConcurrencyCap,
    Decision,
    FixedWindow,
    PenaltyBox,
    Queue,
    RollingWindow,
    Shed,
    SlidingLog,
    TokenBucket,
    build,
    parse_limiter,
    parse_limiters,
    refusal_header,
    retry_after_header,
)
from galileo.sim.limitspec import LimiterSpec


def admitted(limiter: object, times: list[float], key: str = "k") -> list[float]:
    assert hasattr(limiter, "admit")
    return [t for t in times if limiter.admit(key, t).ok]


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "target", "canonical"),
    [
        ("bucket:5/1s,burst=0.05,scope=ip+region", "jito", "bucket:5/1s,burst=0.05s,scope=ip+region"),
        ("bucket:20", None, "bucket:20/1s,burst=1s,scope=ip"),
        ("sliding:50/10s", "jupiter", "sliding:50/10s,scope=ip"),
        ("sliding:50/10s", "jito:ny", "sliding:50/10s,scope=ip+region"),
        ("fixed:600/1m,scope=global", None, "fixed:600/60s,scope=global"),
        ("penalty:5/1s,box=2", "rpc", "penalty:5/1s,box=2s,scope=ip"),
        ("concurrency:4, retry-after=no", None, "concurrency:4,scope=ip,retry_after=no"),
        ("sliding:3/500ms,scope=key,retry_after=yes", "ultra", "sliding:3/0.5s,scope=key"),
        ("fixed:600/60s,retry_after=reset", None, "fixed:600/60s,scope=ip,retry_after=reset"),
        ("fixed:600/60s,retry_after=one", None, "fixed:600/60s,scope=ip,retry_after=one"),
        ("rolling:100/1m,scope=key", None, "rolling:100/60s,scope=key"),
        ("concurrency:4,refuse=at-once", None, "concurrency:4,scope=ip,refuse=at_once"),
        ("sliding:5/1s,refuse=delayed,retry_after=no", None, "sliding:5/1s,scope=ip,retry_after=no"),
        ("queue:20/1s", None, "queue:20/1s,burst=1s,scope=ip"),
        ("queue:5,burst=400ms,refuse=at_once", None, "queue:5/1s,burst=0.4s,scope=ip,refuse=at_once"),
        ("shed:0.05", None, "shed:0.05,scope=ip"),
        ("shed:0.01,retry_after=one,refuse=at_once", None, "shed:0.01,scope=ip,refuse=at_once,retry_after=one"),
    ],
)
def test_parse_and_canonical_text(text: str, target: str | None, canonical: str) -> None:
    spec = parse_limiter(text, target)
    assert str(spec) == canonical
    assert parse_limiter(canonical, target) == spec  # the canonical text means the same


@pytest.mark.parametrize(
    "text",
    [
        "",
        "leaky:5/1s",
        "bucket",
        "bucket:0/1s",
        "bucket:-1",
        "bucket:5/0s",
        "sliding:50",
        "sliding:0/10s",
        "sliding:1.5/10s",
        "fixed:5/2h",
        "penalty:5/1s",
        "sliding:5/1s,box=2",
        "fixed:5/1s,burst=1",
        "concurrency:0",
        "concurrency:2,scope=account",
        "sliding:5/1s,retry_after=maybe",
        "sliding:5/1s,refuse=soon",
        "sliding:5/1s,scope=ip,scope=key",
        "sliding:5/1s,flavour=mint",
    ],
)
def test_bad_specs_say_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_limiter(text)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("shed:0", "share must be > 0 and < 1, got '0'"),
        ("shed:1", "share must be > 0 and < 1, got '1'"),
        ("shed:1.5", "share must be > 0 and < 1"),
        ("shed:-0.1", "share must be > 0 and < 1"),
        ("shed:nan", "share must be > 0 and < 1"),
        ("shed:inf", "share must be > 0 and < 1"),
        ("shed:abc", "'abc' is not a share"),
        ("shed:", "'' is not a share"),
        ("shed:0.01/1s", "takes no period"),
        ("shed:0.01,burst=1", "burst= is for bucket and queue only"),
        ("shed:0.01,box=1s", "only penalty takes it"),
    ],
)
def test_a_bad_shed_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_limiter(text)


def test_a_shed_is_a_share_with_no_rate() -> None:
    spec = parse_limiter("shed:0.05")
    assert (spec.shape, spec.limit, spec.window, spec.rate) == ("shed", 0.05, 1.0, math.inf)
    assert isinstance(build(spec), Shed)


def test_limits_stack_with_an_ampersand_each_with_its_own_scope() -> None:
    stack = parse_limiters("bucket:20/1s,burst=0.1 & sliding:600/60s,scope=key", "jupiter")
    assert [str(spec) for spec in stack] == [
        "bucket:20/1s,burst=0.1s,scope=ip",
        "sliding:600/60s,scope=key",
    ]
    assert parse_limiters("sliding:5/1s", "jito") == (parse_limiter("sliding:5/1s", "jito"),)
    bucket, shed = parse_limiters("bucket:20/1s & shed:0.01")
    assert (bucket.shape, bucket.rate, shed.shape, shed.limit) == ("bucket", 20.0, "shed", 0.01)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("bucket:20/1s &", "empty limit"),
        ("& fixed:5/1s", "empty limit"),
        ("fixed:1/1s & fixed:2/1s & fixed:3/1s & fixed:4/1s & fixed:5/1s", "at most 4"),
        ("bucket:20/1s & fixed:5/1s,burst=1", "burst= is for bucket and queue only"),
    ],
)
def test_a_bad_stack_says_which_part_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_limiters(text)


def test_spec_numbers() -> None:
    spec = parse_limiter("bucket:20/1s,burst=0.05")
    assert (spec.rate, spec.capacity) == (20.0, 1.0)  # 0.05 s of 20/s is one token
    assert parse_limiter("bucket:600/60s,burst=2").capacity == 20.0
    assert isinstance(build(spec), TokenBucket)
    assert isinstance(build("penalty:1/1s,box=1"), PenaltyBox)
    assert isinstance(build(LimiterSpec("concurrency", 3)), ConcurrencyCap)


def test_a_refusal_says_when_as_its_spec_tells_it_to() -> None:
    """One place for what a refusal says (the live simulator's middleware and the virtual-time upstream of
    tests/policy/limitsim.py both ask it): when the budget comes back, in ``Retry-After`` or
    ``RateLimit-Reset``, one second whatever it holds, or nothing."""
    refused = Decision(False, 42.3, "limit")
    said = {
        opt: refusal_header(parse_limiter(f"sliding:1/60s,retry_after={opt}"), refused)
        for opt in ("yes", "reset", "one", "no")
    }
    assert said == {
        "yes": ("Retry-After", "43"),
        "reset": ("RateLimit-Reset", "43"),
        "one": ("Retry-After", "1"),
        "no": None,
    }


def test_retry_after_header_is_whole_seconds_rounded_up() -> None:
    values = [0.0, 0.05, 1.0, 1.0 + 1e-12, 7.2, 59.999]
    assert [retry_after_header(Decision(False, v, "limit")) for v in values] == ["1", "1", "1", "1", "8", "60"]


# --- token bucket --------------------------------------------------------------------------


def test_bucket_exact_counts_and_retry_after() -> None:
    bucket = build("bucket:10/1s,burst=0.5")  # capacity 5, a token every 0.1 s
    assert [bucket.admit("a", 0.0).ok for _ in range(6)] == [True] * 5 + [False]
    assert bucket.admit("a", 0.0) == Decision(False, pytest.approx(0.1), "limit")
    assert bucket.admit("a", 0.1).ok and not bucket.admit("a", 0.1).ok
    assert [bucket.admit("a", 0.35).ok for _ in range(3)] == [True, True, False]  # 2.5 tokens
    assert bucket.admit("a", 0.35).retry_after == pytest.approx(0.05)
    assert bucket.admit("b", 0.35).ok  # another key, another bucket


def test_bucket_burst_down_to_005_seconds() -> None:
    bucket = build("bucket:20/1s,burst=0.05")  # one token, one more every 50 ms
    times = [i / 1000 for i in range(1001)]  # a request every ms for one second
    assert admitted(bucket, times) == pytest.approx([i * 0.05 for i in range(21)])


@settings(max_examples=150, deadline=None)
@given(
    rate=st.floats(0.5, 50),
    burst=st.floats(0.05, 3),
    gaps=st.lists(st.floats(0, 0.3), min_size=1, max_size=150),
)
def test_bucket_never_exceeds_capacity_plus_rate_times_window(rate: float, burst: float, gaps: list[float]) -> None:
    bucket = build(LimiterSpec("bucket", rate, 1.0, burst))
    assert isinstance(bucket, TokenBucket)
    now, passed = 0.0, []
    for gap in gaps:
        now += gap
        if bucket.admit("ip", now).ok:
            passed.append(now)
    for i, start in enumerate(passed):
        for j in range(i, len(passed)):
            assert j - i + 1 <= bucket.capacity + rate * (passed[j] - start) + 1e-6


# --- fixed window --------------------------------------------------------------------------


def test_fixed_window_resets_on_the_boundary() -> None:
    fixed = build("fixed:3/10s")
    assert admitted(fixed, [0.0, 1.0, 2.0, 3.0, 9.999]) == [0.0, 1.0, 2.0]
    assert fixed.admit("k", 3.0) == Decision(False, pytest.approx(7.0), "limit")
    assert admitted(fixed, [10.0, 10.0, 10.0, 10.0]) == [10.0, 10.0, 10.0]  # a new window at exactly 10
    assert fixed.admit("k", 19.99).retry_after == pytest.approx(0.01)
    assert admitted(fixed, [20.0]) == [20.0]


def test_fixed_window_allows_two_windows_back_to_back() -> None:
    fixed = build("fixed:3/1s")
    times = [0.9, 0.9, 0.9, 0.9, 1.0, 1.0, 1.0, 1.0]
    assert admitted(fixed, times) == [0.9, 0.9, 0.9, 1.0, 1.0, 1.0]  # 6 in 0.1 s: the shape's known edge
    tenth = build("fixed:1/0.1s")
    assert admitted(tenth, [0.29, 0.7 - 0.4]) == [0.29, 0.7 - 0.4]  # 0.29999999999999993 is 0.3: a new window


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 8), window=st.sampled_from([0.5, 1.0, 10.0]), gaps=st.lists(st.floats(0, 0.4), max_size=120))
def test_fixed_window_never_exceeds_n_per_window(n: int, window: float, gaps: list[float]) -> None:
    fixed = build(LimiterSpec("fixed", n, window))
    assert isinstance(fixed, FixedWindow)
    now, per_window = 0.0, dict[int, int]()
    for gap in gaps:
        now += gap
        if fixed.admit("k", now).ok:
            index = int((now + 1e-9) // window)
            per_window[index] = per_window.get(index, 0) + 1
    assert all(c <= n for c in per_window.values())


# --- sliding log ---------------------------------------------------------------------------


def test_sliding_log_counts_any_window() -> None:
    sliding = build("sliding:3/10s")
    assert admitted(sliding, [0.0, 1.0, 2.0, 9.99]) == [0.0, 1.0, 2.0]
    assert sliding.admit("k", 9.99) == Decision(False, pytest.approx(0.01), "limit")
    assert admitted(sliding, [10.0]) == [10.0]  # the request at 0 has left (10 - 10, 10]
    assert sliding.admit("k", 10.5).retry_after == pytest.approx(0.5)  # the one at 1 leaves at 11
    assert admitted(sliding, [10.5, 11.0, 12.0, 12.0]) == [11.0, 12.0]


def test_sliding_log_sixty_second_window() -> None:
    sliding = build("sliding:60/60s")
    times = [i * 0.5 for i in range(360)]  # two requests a second for three minutes
    passed = admitted(sliding, times)
    assert len(passed) == 180
    assert passed[59] == 29.5 and passed[60] == 60.0 and passed[120] == 120.0  # each slot frees 60 s on
    assert sliding.admit("k", 179.9).retry_after == pytest.approx(180.0 - 179.9)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 10), window=st.integers(1, 60), gaps=st.lists(st.floats(0, 3), max_size=150))
def test_sliding_log_never_exceeds_n_in_any_window(n: int, window: int, gaps: list[float]) -> None:
    sliding = build(LimiterSpec("sliding", n, float(window)))
    assert isinstance(sliding, SlidingLog)
    now, passed = 0.0, []
    for gap in gaps:
        now += gap
        if sliding.admit("k", now).ok:
            passed.append(now)
    for i, start in enumerate(passed):
        assert sum(1 for t in passed[i:] if t < start + window - 1e-6) <= n


# --- sliding window counter ---------------------------------------------------------------


def test_rolling_window_weights_the_last_window() -> None:
    rolling = build("rolling:10/10s")
    assert isinstance(rolling, RollingWindow)
    assert admitted(rolling, [5.0] * 11) == [5.0] * 10  # ten in window 0, none in the window before
    # Window 1 weighs window 0's ten by the share of it still in reach: 9.5 at 10.5 s.
    assert admitted(rolling, [10.5, 10.5]) == [10.5]
    assert rolling.admit("k", 10.5) == Decision(False, pytest.approx(0.5), "limit")  # 1 + 9.5 until 11
    assert admitted(rolling, [11.01, 11.01]) == [11.01]
    assert admitted(rolling, [19.05] * 10) == [19.05] * 8  # 0.95 weighed, so ten counted in window 1
    assert rolling.admit("k", 19.05) == Decision(False, pytest.approx(0.95), "limit")  # until window 2
    assert admitted(rolling, [20.5, 20.5]) == [20.5]  # which weighs those ten as window 1 did
    assert rolling.admit("k", 20.5).retry_after == pytest.approx(0.5)
    assert admitted(rolling, [40.0] * 11) == [40.0] * 10  # two windows on, nothing is weighed


def test_rolling_window_admits_a_steady_pace_under_its_rate_and_holds_one_over_it() -> None:
    under, over = build("rolling:50/5s"), build("rolling:50/5s")
    steady = [i / 9.8 for i in range(9 * 98)]  # 9.8/s for 90 s against 10/s
    assert admitted(under, steady) == steady
    double = [i / 20 for i in range(20 * 90)]
    passed = admitted(over, double)
    assert 17 * 50 <= len(passed) <= 18 * 50  # 18 windows; the first starts with nothing weighed


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 10), window=st.integers(1, 60), gaps=st.lists(st.floats(0, 3), max_size=150))
def test_rolling_window_retry_after_is_exact(n: int, window: int, gaps: list[float]) -> None:
    """A refusal's wait is when the same caller, asking nothing in between, passes: not sooner."""
    rolling = build(LimiterSpec("rolling", n, float(window)))
    now = 0.0
    for gap in gaps:
        now += gap
        decision = rolling.admit("k", now)
        if not decision.ok:
            early, late = copy.deepcopy(rolling), copy.deepcopy(rolling)
            if decision.retry_after > 1e-3:
                assert not early.admit("k", now + decision.retry_after - 1e-3).ok
            assert late.admit("k", now + decision.retry_after + 1e-7).ok


# --- penalty box ---------------------------------------------------------------------------


def test_penalty_box_refuses_everything_until_it_expires() -> None:
    box = build("penalty:3/1s,box=5s")
    assert admitted(box, [0.0, 0.1, 0.2]) == [0.0, 0.1, 0.2]
    assert box.admit("k", 0.3) == Decision(False, 5.0, "penalty")  # the fourth enters the box
    assert box.admit("k", 1.5) == Decision(False, pytest.approx(3.8), "boxed")  # the log has room: still boxed
    assert box.admit("k", 5.29).reason == "boxed"
    assert box.admit("other", 1.5).ok  # one caller's box is not another's
    assert admitted(box, [5.3, 5.3, 5.3]) == [5.3, 5.3, 5.3]  # out at 0.3 + 5, with a fresh log
    assert box.admit("k", 5.3) == Decision(False, 5.0, "penalty")
    assert box.admit("k", 10.3).ok


def test_penalty_box_refusals_do_not_lengthen_it() -> None:
    box = build("penalty:1/10s,box=2")
    assert box.admit("k", 0.0).ok and box.admit("k", 0.0).reason == "penalty"
    reasons = [box.admit("k", t / 10).reason for t in range(1, 20)]  # hammering inside the box
    assert reasons == ["boxed"] * 19
    assert box.admit("k", 2.0).ok


# --- concurrency cap -----------------------------------------------------------------------


def test_concurrency_cap_counts_in_flight_and_releases() -> None:
    cap = build("concurrency:2")
    assert isinstance(cap, ConcurrencyCap)
    assert [cap.admit("a", 0.0).ok for _ in range(3)] == [True, True, False]
    assert cap.admit("a", 0.0) == Decision(False, 0.0, "concurrency")
    assert cap.admit("b", 0.0).ok  # per caller
    cap.release("a", 1.0)
    assert cap.in_flight("a") == 1 and cap.admit("a", 1.0).ok and not cap.admit("a", 1.0).ok
    for key in ("a", "a", "b"):
        cap.release(key, 2.0)
    cap.release("a", 2.0)  # a stray release gives nothing back
    cap.release("never-seen", 2.0)
    assert len(cap) == 0 and cap.in_flight("a") == 0
    assert [cap.admit("a", 3.0).ok for _ in range(3)] == [True, True, False]


# --- load shedding --------------------------------------------------------------------------


def test_shed_refuses_its_share_at_random_whatever_the_key_or_time_and_the_same_each_run() -> None:
    """``shed:0.1``: about one request in ten is refused, with 1 s to wait, whoever sends it and however
    slowly; two fresh limiters (two runs of the simulator) refuse the very same requests."""
    first, second, hammered = build("shed:0.1"), build("shed:0.1"), build("shed:0.1")
    calls = [(f"10.0.{i % 7}", i * 0.37) for i in range(10_000)]  # seven callers, a request every 370 ms
    decisions = [first.admit(key, now) for key, now in calls]
    shed = Decision(False, 1.0, "shed")
    assert set(decisions) == {Decision(True, 0.0, "ok"), shed}
    assert 800 <= decisions.count(shed) <= 1200
    assert [second.admit(key, now) for key, now in calls] == decisions
    assert [hammered.admit("k", 0.0) for _ in calls] == decisions  # one caller, all at once: the same draws
    assert len(first) == 0  # nothing kept per caller
    said = {opt: refusal_header(parse_limiter(f"shed:0.1,retry_after={opt}"), shed) for opt in ("yes", "no")}
    assert said == {"yes": ("Retry-After", "1"), "no": None}


def test_queue_keeps_callers_waiting_in_line_up_to_its_burst_then_refuses() -> None:
    """``queue:10/1s,burst=0.3``: one request leaves every 100 ms; a caller that sends 6 at once has
    them wait 0, 100, 200 and 300 ms, and the two that would wait longer are refused, told when the
    line will be short enough. A caller that keeps to the rate never waits."""
    line = build("queue:10/1s,burst=0.3")
    assert isinstance(line, Queue)
    got = [line.admit("a", 0.0) for _ in range(6)]
    assert [d.ok for d in got] == [True, True, True, True, False, False]
    assert [d.wait for d in got[:4]] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert got[4].reason == "limit" and got[4].retry_after == pytest.approx(0.1)
    assert line.admit("b", 0.0) == Decision(True, 0.0, "ok")  # per caller
    assert line.admit("a", 0.25).wait == pytest.approx(0.15)  # the line moved on meanwhile
    steady = build("queue:10/1s,burst=0.3")
    assert all(steady.admit("c", i * 0.1).wait == 0.0 for i in range(50))


@given(
    rate=st.floats(1, 50),
    burst=st.floats(0.05, 2),
    gaps=st.lists(st.floats(0, 0.2), min_size=1, max_size=200),
)
def test_queue_serves_at_most_its_rate_and_never_keeps_anyone_past_its_burst(
    rate: float, burst: float, gaps: list[float]
) -> None:
    line = build(f"queue:{rate}/1s,burst={burst}")
    now, served = 0.0, []
    for gap in gaps:
        now += gap
        d = line.admit("k", now)
        if d.ok:
            assert 0.0 <= d.wait <= burst + 1e-6
            served.append(now + d.wait)
    assert all(b - a >= 1 / rate - 1e-6 for a, b in itertools.pairwise(served))


def test_release_is_harmless_for_rate_shapes() -> None:
    shapes = ("bucket:1/1s", "fixed:1/1s", "sliding:1/1s", "rolling:1/1s", "penalty:1/1s,box=1", "queue:1/1s,burst=0.5")
    for text in shapes:
        limiter = build(text)
        assert limiter.admit("k", 0.0).ok
        limiter.release("k", 0.1)  # does not give the request back
        assert not limiter.admit("k", 0.2).ok, text


# --- bounded memory ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["bucket:1/1s", "fixed:2/1s", "sliding:3/1s", "rolling:3/0.5s", "penalty:3/1s,box=1", "queue:1/1s"]
)
def test_idle_keys_are_forgotten(text: str) -> None:
    limiter = build(text)
    for i in range(50_000):  # a new caller every 100 µs, each idle again within ~1 s
        assert limiter.admit(f"10.{i}", i * 1e-4).ok
    assert len(limiter) <= 2 * 1024 + 2 * 10_000  # what 1 s (+ the sweep's slack) of callers holds
    assert limiter.evicted == 0
    limiter.sweep(1e6)
    assert len(limiter) == 0


def test_past_max_keys_the_oldest_lose_their_state() -> None:
    limiter = build("sliding:3/60s", max_keys=1000)
    for i in range(5000):  # all of them busy: nothing is idle
        limiter.admit(i, 0.0)
    assert len(limiter) <= 1000 and limiter.evicted >= 4000
    assert limiter.admit(4999, 0.0).ok and limiter.admit(4999, 0.0).ok
    assert not limiter.admit(4999, 0.0).ok  # the newest kept their state


def test_sliding_logs_share_a_memory_budget() -> None:
    assert build("sliding:100000/60s").max_keys == 64  # 100,000 floats per caller: few callers
    assert build("sliding:50/10s").max_keys == 40_000
