"""Learned pacing against the simulator's own limiters, in virtual time (tests/policy/limitsim.py).

The farm's real policy (pacing, cooldowns, the allocator) over 4 fake workers, saturated,
against ``galileo.sim.limiter`` objects judging each request when it arrives (about 1 ms
after dispatch, with exponential jitter) and the simulator's latency model. Each test runs a
few virtual minutes in well under a second and asserts what a user would see in the counted
window: successes per second over the budget, the share of 429s, penalty-box entries.
"""

from __future__ import annotations

import logging
import random

import pytest

from galileo.policy.allocator import FarmPolicy
from tests.policy import limitsim
from tests.policy.limitsim import SimUpstream, simulate

IPS = [f"10.0.0.{i}" for i in range(1, 5)]


def learned(spec: str, latency: str = "0", *, seconds: float = 90.0, warmup: float = 45.0, ips: list[str] = IPS):
    return simulate(SimUpstream(spec, latency=latency, seed=3), ips, seconds=seconds, warmup=warmup)


@pytest.mark.parametrize("retry_after", ["yes", "no"])
@pytest.mark.parametrize(
    ("spec", "rate", "latency"),
    [
        ("bucket:20/1s,burst=0.1", 20.0, "0"),  # two tokens: what learning used to get 0.13 of
        ("bucket:20/1s,burst=0.1", 20.0, "150"),
        ("bucket:5/1s,burst=0.05", 5.0, "50"),  # one token, as Jito's
        ("bucket:20/1s", 20.0, "300"),  # a second of burst
    ],
)
def test_token_buckets_down_to_one_token(spec: str, rate: float, latency: str, retry_after: str) -> None:
    run = learned(f"{spec},retry_after={retry_after}", latency)
    assert run.ratio(len(IPS) * rate) >= 0.9, run.ratio(len(IPS) * rate)
    assert run.share_429 <= 0.01, run.share_429


@pytest.mark.parametrize("retry_after", ["yes", "no"])
@pytest.mark.parametrize(
    ("spec", "rate", "seconds", "warmup"),
    [
        ("fixed:20/1s", 20.0, 60.0, 30.0),
        ("fixed:100/10s", 10.0, 120.0, 60.0),
        ("sliding:20/1s", 20.0, 60.0, 30.0),
        ("sliding:100/10s", 10.0, 120.0, 60.0),
        ("sliding:600/60s", 10.0, 720.0, 420.0),
        ("rolling:20/1s", 20.0, 60.0, 30.0),
        ("rolling:100/10s", 10.0, 120.0, 60.0),
        ("rolling:600/60s", 10.0, 720.0, 420.0),
        ("fixed:600/60s", 10.0, 960.0, 660.0),  # without Retry-After the backoff finds each reset late
    ],
)
def test_fixed_sliding_and_rolling_windows_from_1_to_60_s(
    spec: str, rate: float, seconds: float, warmup: float, retry_after: str
) -> None:
    ips = IPS[:2] if seconds > 300 else IPS  # minutes of 60 s windows: two IPs show it as well as four
    run = learned(f"{spec},retry_after={retry_after}", "50", seconds=seconds, warmup=warmup, ips=ips)
    # Without Retry-After a 60 s fixed window or window counter was learnt to 0.897 and 0.898 here
    # while a refusal at a first estimate (overstated by a partial first window) doubled the proofs'
    # trust as a refusal at a proven pace does; now 0.952 and 0.989 (docs/networking/multi_ip.md).
    assert run.ratio(len(ips) * rate) >= 0.9, run.ratio(len(ips) * rate)
    assert run.share_429 <= 0.01, run.share_429


@pytest.mark.parametrize(("retry_after", "warmup"), [("yes", 90.0), ("no", 240.0)])
def test_a_penalty_box_is_tripped_a_few_times_while_learning_and_not_after(retry_after: str, warmup: float) -> None:
    run = learned(f"penalty:20/1s,box=5s,retry_after={retry_after}", "50", seconds=warmup + 60, warmup=warmup)
    assert run.ratio(len(IPS) * 20.0) >= 0.9
    assert run.share_429 <= 0.01
    # Learning: a few per IP (without Retry-After 6 a piece with the bracket closing at 3 %, one more in
    # all at 1.5 %, the step that closes it tried above the limit) ...
    assert run.penalties <= 6.5 * len(IPS)
    assert run.penalties_counted <= 1  # ... then (almost) none


def test_a_long_penalty_box_is_learnt_within_minutes() -> None:
    """Ten admitted in any second, a 30 s box past that: the opening burst trips the box, and what was
    admitted over it (0.33/s) is where the search starts. With a 30 s proof at every step and each
    bisection step boxed in turn, this read 0.49 of N·R from 420 to 600 s; proven in four times the
    count's time and stepping up from lo, 0.98 (three seeds)."""
    run = learned("penalty:10/1s,box=30s", "50", seconds=600.0, warmup=420.0)
    assert run.ratio(len(IPS) * 10.0) >= 0.9, run.ratio(len(IPS) * 10.0)
    assert run.share_429 <= 0.01, run.share_429
    assert run.penalties_counted <= 1, run.penalties_counted


@pytest.mark.parametrize(
    ("spec", "seconds", "warmup", "ratio", "boxes"),
    [
        ("penalty:10/1s,box=10s,retry_after=no", 300.0, 150.0, 0.85, 5),
        ("penalty:10/1s,box=30s,retry_after=no", 600.0, 420.0, 0.9, 1),
    ],
)
def test_a_penalty_box_that_never_says_when_is_learnt_as_fast_as_one_that_does(
    spec: str, seconds: float, warmup: float, ratio: float, boxes: int
) -> None:
    """Without ``Retry-After`` the backoff finds each box over, and its doubling ceiling found a 10 s box
    16 s in, a 30 s one 36 s in: read as boxes that long, the first estimate came out 40 % low and every
    proof of the climb took the run's length. Each 429 of a run is now at most a fifth of the run so far
    (see galileo.policy.cooldown): 0.59 of N·R with 12 boxes counted, and 0.80 with 3, read 0.92 with 3
    and 0.99 with none (seed 3; the same boxes said when read 0.96 and 0.98)."""
    run = learned(spec, "50", seconds=seconds, warmup=warmup)
    assert run.ratio(len(IPS) * 10.0) >= ratio, run.ratio(len(IPS) * 10.0)
    assert run.share_429 <= 0.015, run.share_429
    assert run.penalties_counted <= boxes, run.penalties_counted


def test_a_concurrency_cap_is_found_and_kept() -> None:
    run = learned("concurrency:4", "150", seconds=60.0, warmup=30.0)
    assert run.ratio(len(IPS) * 4 / 0.15) >= 0.9
    assert run.share_429 <= 0.01


@pytest.mark.parametrize(
    ("spec", "rate", "latency"), [("bucket:5/1s,burst=0.2", 5.0, "300"), ("bucket:10/1s,burst=0.1", 10.0, "150")]
)
def test_a_one_token_bucket_slower_than_the_latency_is_not_taken_for_a_concurrency_cap(
    spec: str, rate: float, latency: str
) -> None:
    """One token, no ``Retry-After``, its interval shorter than the latency. Measuring, the learner paces
    1.5x what succeeds: every other request is refused, and each refusal finds the success before it still
    out while the thinned successes find none, as under a cap of one. Every pair found that cap and was
    held to one request per latency for good (0.66 of the rate, in both); only a held pace's refusals are
    put to the cap finder now (0.96 and 0.94)."""
    policy = FarmPolicy(rng=random.Random(1))
    run = simulate(
        SimUpstream(f"{spec},retry_after=no", latency=latency, seed=3), IPS, seconds=90.0, warmup=45.0, policy=policy
    )
    assert [policy.pacing.get(ip, "u", 0.0).cap for ip in IPS] == [None] * len(IPS)
    assert run.ratio(len(IPS) * rate) >= 0.9, run.ratio(len(IPS) * rate)
    assert run.share_429 <= 0.01, run.share_429


@pytest.mark.parametrize("prior", [True, False])
@pytest.mark.parametrize("n", [4, 16])
def test_a_keyed_budget_is_paced_as_one_whatever_the_number_of_ips(
    n: int, prior: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Every IP spends one API key's budget: the farm keeps to it (within 2 %) instead of spreading for more.
    Found from the refusals (no key sent), the operator's log says so, once."""
    caplog.set_level(logging.INFO, logger="galileo.policy")
    ips = [f"10.0.1.{i}" for i in range(1, n + 1)]
    policy = FarmPolicy(keyed={"u"} if prior else (), rng=random.Random(1))
    spec = "sliding:300/10s,scope=key" if prior else "bucket:20/1s,burst=0.1,scope=key"
    budget = 30.0 if prior else 20.0
    warmup = 120.0 if prior else 240.0  # told apart by the key, or by the IPs' refusals
    counted = 90.0 if prior else 240.0  # (a failed test past the bracket costs the budget a second)
    run = simulate(SimUpstream(spec, latency="50", seed=3), ips, seconds=warmup + counted, warmup=warmup, policy=policy)
    # Found from the IPs' refusals, the key's bucket is paced at 0.966-0.992 of it over three seeds from
    # 240 s to 480 s at 4 IPs and 0.987-0.993 at 16 (round 37's code: 0.975-0.989 and 0.982-0.986); this
    # seed reads 0.975 and 0.993. Over 90 s after 240 s, where one failed test past the bracket costs a
    # point: 0.976-0.998 (4 IPs, six seeds) and 0.979-0.988 (16) in round 34.
    least = 0.98 if prior else 0.975
    assert least <= run.ratio(budget) <= 1.02, run.ratio(budget)
    assert run.share_429 <= 0.01, run.share_429
    assert (policy.pacing.group("u") is not None) or n == 1
    found = [r.getMessage() for r in caplog.records if "looks like one budget every IP shares" in r.getMessage()]
    assert len(found) == (0 if prior else 1), found
    assert prior or found[0].startswith("pacing: u looks like one budget every IP shares (surprises on "), found


def test_a_told_rate_is_used_as_given_without_429s_or_boxes() -> None:
    for spec in ("bucket:20/1s,burst=0.1", "penalty:20/1s,box=5s", "sliding:200/10s"):
        run = simulate(SimUpstream(spec, latency="50", seed=3), IPS, seconds=30.0, warmup=5.0, known=20.0)
        assert run.ratio(len(IPS) * 20.0) >= 0.97, (spec, run.ratio(len(IPS) * 20.0))
        assert run.share_429 == 0 and run.penalties == 0, spec


@pytest.mark.parametrize("n", [4, 16])
@pytest.mark.parametrize(
    ("spec", "budget"), [("sliding:300/10s,scope=key", 30.0), ("bucket:20/1s,burst=0.1,scope=key", 20.0)]
)
def test_a_told_key_budget_is_paced_as_one_from_the_first_request(spec: str, budget: float, n: int) -> None:
    """``rate_limit_per_key``: every IP shares the told budget, at 98 % of it from the start, without 429s.

    Learnt instead (the key alone) this gets about 0.7 of it in the same time, with 429s; each IP told
    B / N (``rate_limit_per_ip``) up to 7 % of 429s at 16 IPs, the IPs' jitter adding up in one budget.
    """
    ips = [f"10.0.2.{i}" for i in range(1, n + 1)]
    policy = FarmPolicy(known_shared={"u": budget}, rng=random.Random(1))
    run = simulate(SimUpstream(spec, latency="50", seed=3), ips, seconds=30.0, warmup=5.0, policy=policy)
    assert 0.97 <= run.ratio(budget) <= 1.0, run.ratio(budget)
    assert run.share_429 == 0 and run.penalties == 0, (run.share_429, run.penalties)


@pytest.mark.parametrize("n", [4, 16])
def test_a_told_key_budget_and_a_told_rate_per_ip_both_hold(n: int) -> None:
    """20/s per IP and 100/s per key: at 4 IPs the IPs' 80/s binds, at 16 the key's 100/s; no 429 either way."""
    ips = [f"10.0.3.{i}" for i in range(1, n + 1)]
    policy = FarmPolicy(known_rates={"u": 20.0}, known_shared={"u": 100.0}, rng=random.Random(1))
    upstream = SimUpstream("bucket:20/1s,burst=0.1 & sliding:1000/10s,scope=key", latency="50", seed=3)
    run = simulate(upstream, ips, seconds=30.0, warmup=5.0, policy=policy)
    budget = min(20.0 * n, 100.0)
    assert 0.97 <= run.ratio(budget) <= 1.0, run.ratio(budget)
    assert run.share_429 == 0, run.share_429


def test_a_refusal_by_an_ips_own_told_limit_does_not_hold_back_the_other_ips() -> None:
    """Told 20/s per IP and 100/s per key, at 4 IPs (the IPs' 80/s binds), with 10 ms of arrival
    jitter: now and then an IP's own bucket refuses. Fed to the key's budget, each such 429 trimmed
    it and held every IP back for that one IP's Retry-After: 0.75-0.78 of the IPs' 80/s over three
    seeds, 0.91-0.92 now (each 429 still costs its own IP the Retry-After's second)."""
    ips = [f"10.0.3.{i}" for i in range(1, 5)]
    policy = FarmPolicy(known_rates={"u": 20.0}, known_shared={"u": 100.0}, rng=random.Random(1))
    upstream = SimUpstream("bucket:20/1s,burst=0.1 & sliding:1000/10s,scope=key", latency="50", seed=3)
    run = simulate(upstream, ips, seconds=120.0, warmup=10.0, policy=policy, send_jitter=0.01, seed=2)
    assert sum(run.limited.values()) > 0  # the IPs' own limits did refuse
    shared = policy.pacing.group("u")
    assert shared is not None and shared.rate == pytest.approx(0.98 * 100.0)  # the key was never refused
    assert run.ratio(20.0 * len(ips)) >= 0.88, run.ratio(20.0 * len(ips))


@pytest.mark.parametrize(("spec", "warmup"), [("bucket:20/1s,burst=0.1", 60.0), ("fixed:100/5s", 90.0)])
def test_arrival_jitter_of_5_ms_costs_learning_little(spec: str, warmup: float) -> None:
    """Requests reach the upstream 5 ms late on average (exponential), as over a real network: a
    pace is proven only over a window's whole period, and kept a little below the limit."""
    ips = [f"10.0.2.{i}" for i in range(1, 17)]
    run = simulate(SimUpstream(spec, latency="150", seed=3), ips, seconds=warmup + 30, warmup=warmup, send_jitter=0.005)
    assert run.ratio(len(ips) * 20.0) >= 0.95, run.ratio(len(ips) * 20.0)
    assert run.share_429 <= 0.01, run.share_429


def test_10_ms_of_arrival_jitter_does_not_make_per_ip_buckets_look_shared() -> None:
    """Jitter refuses IPs at proven paces one at a time, as a shared budget would: half the IPs
    (not a quarter) must be surprised before their budgets are paced as one. Statistical at this
    jitter: in our runs 1 seed in 5 still grouped (4 in 5 with a quarter)."""
    ips = [f"10.0.3.{i}" for i in range(1, 17)]
    policy = FarmPolicy(rng=random.Random(1))
    run = simulate(
        SimUpstream("bucket:20/1s,burst=0.1", latency="150", seed=1),
        ips,
        seconds=90,
        warmup=60,
        seed=1,
        policy=policy,
        send_jitter=0.01,
    )
    assert policy.pacing.group("u") is None
    assert run.ratio(len(ips) * 20.0) >= 0.85, run.ratio(len(ips) * 20.0)


def test_jitter_over_minutes_does_not_make_four_ips_look_shared_or_sink_their_paces() -> None:
    """At 4 IPs three surprised within a minute read as a shared budget, and 10 ms of arrival jitter
    surprises each IP's converged pace once in 17 to 470 s. Before round 46 each surprise made the
    refused pace the bracket's top, so the paces sank (0.879-0.901 over these seeds' fifth to tenth
    minutes, seed 2 paced as one budget). A surprise after 20 s converged and clean is the jitter's
    tail: the search climbs back to what was proven (with that alone, seeds 2 and 4 were still paced
    as one budget, seed 2 at 0.852 of N·R; 3 of 16 seeds), and it is not counted as another's spending
    (a shared budget refuses the pace while the IPs still climb): 0.899-0.914. Since round 47 such a
    surprise leaves the bracket where it was and only grows the margin, which shrinks again while clean
    (the tail searched back, each climb's steps refused by the tail again, sat at 0.90): 0.924-0.933."""
    ips = [f"10.0.4.{i}" for i in range(1, 5)]
    for seed in range(1, 5):
        policy = FarmPolicy(rng=random.Random(seed))
        run = simulate(
            SimUpstream("bucket:20/1s,burst=0.1", latency="50", seed=seed + 1),
            ips,
            seconds=600,
            warmup=300,
            seed=seed,
            policy=policy,
            send_jitter=0.01,
        )
        assert policy.pacing.group("u") is None, seed
        assert run.ratio(len(ips) * 20.0) >= 0.915, (seed, run.ratio(len(ips) * 20.0))


@pytest.mark.parametrize(
    ("spec", "rate", "phase", "warmup"),
    [("fixed:100/5s", 20.0, 1.2, 120.0), ("fixed:100/5s", 20.0, 2.5, 120.0), ("fixed:600/60s", 10.0, 51.0, 400.0)],
)
def test_a_fixed_window_first_met_late_in_it_is_measured_again_over_a_whole_one(
    spec: str, rate: float, phase: float, warmup: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first contact comes ``phase`` s into a window: what the first one admitted until it ended
    overstates the rate (by W / (W - phase)) and the period comes out short. The second return of the
    budget measures both over one whole window; without it the pace sat above the rate, each IP's
    window-end refusals read as a shared budget (0.940 of N·R, grouped, at 1.2 s) or took a minute of
    surprises to come down (0.960 at 2.5 s; 0.934 for the 60 s window)."""
    monkeypatch.setattr(limitsim, "START", 6000.0 + phase)  # windows start at multiples of their length
    ips = [f"10.0.2.{i}" for i in range(1, 17)] if warmup < 300 else IPS
    policy = FarmPolicy(rng=random.Random(1))
    run = simulate(
        SimUpstream(spec, latency="150", seed=1),
        ips,
        seconds=warmup + 60,
        warmup=warmup,
        seed=1,
        send_jitter=0.005,
        policy=policy,
    )
    assert run.ratio(len(ips) * rate) >= 0.97, run.ratio(len(ips) * rate)
    assert run.share_429 <= 0.01, run.share_429
    assert policy.pacing.group("u") is None  # per-IP windows, paced per IP
    window = float(spec.split("/")[1].rstrip("s"))
    assert all(p.learner.period >= 0.85 * window for p in policy.pacing.rates().values())


@pytest.mark.parametrize(
    ("spec", "rate", "latency", "ratio", "share"),
    [
        ("bucket:20/1s,burst=0.5", 20.0, "50", 0.975, 0.0025),  # ten requests deep: 0.955 and 0.43 % before
        ("bucket:20/1s,burst=0.5", 20.0, "150", 0.975, 0.0025),  # 0.952 and 0.44 %
        ("bucket:10/1s,burst=1", 10.0, "300", 0.98, 0.008),  # a second deep, 300 ms: 0.989 and 1.27 %
    ],
)
def test_a_buckets_depth_does_not_carry_a_pace_over_its_rate(
    spec: str, rate: float, latency: str, ratio: float, share: float
) -> None:
    """Each refusal cools a rounded-up second, and a bucket refills up to its depth meanwhile: a step over
    its rate runs clean on that bank for seconds. Proven in a second, the pace climbed to 1.4 times the rate
    and came back down 2 % a surprise at a time, a refusal every few seconds. A step above lo now runs
    clean for twice the time its excess takes to spend the first run's count (up to 10 s)."""
    run = learned(spec, latency, seconds=180.0, warmup=30.0)
    assert run.ratio(len(IPS) * rate) >= ratio, run.ratio(len(IPS) * rate)
    assert run.share_429 <= share, run.share_429


@pytest.mark.parametrize(
    ("spec", "latency", "was"),
    [("sliding:20/1s & fixed:600/60s", "300", 0.961), ("fixed:20/1s & fixed:600/60s", "50", 0.957)],
)
def test_a_minutes_window_met_under_a_seconds_limit_is_searched_up_to_what_it_gave(
    spec: str, latency: str, was: float
) -> None:
    """The minute's window fills at the second's pace (20/s for 600 in 60 s): the fill measured over the
    time since the last one says 10/s, and lo goes to 98 % of it. Bisecting from there to the refused 20/s,
    each step past the minute's rate cost the rest of a window; the measured rate is where the search goes
    now (a guess, searched past after two steps)."""
    run = simulate(SimUpstream(spec, latency=latency, seed=3), IPS[:2], seconds=600.0, warmup=300.0)
    assert run.ratio(2 * 10.0) >= max(0.975, was + 0.015), run.ratio(2 * 10.0)
    assert run.share_429 <= 0.01, run.share_429
