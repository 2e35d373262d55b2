"""An upstream that sheds load: 429s whatever the pace (the simulator's ``shed`` shape), in virtual time.

Such refusals are not the limit's: a pace cut for them is refused as often as before. Taken for the
limit's, each cut the pace again, and a learnt pace under 1 % of them sank to half the rate in
minutes (0.13 of it after 10 minutes at 3 %). Found for what they are (see
``RateLearner._noisy``), the pace keeps to the limit as a told one does.
"""

from __future__ import annotations

import random

import pytest

from galileo.policy.allocator import FarmPolicy
from tests.policy.limitsim import UPSTREAM, Run, SimUpstream, simulate

IPS = [f"10.0.0.{i}" for i in range(1, 5)]


def run(spec: str, *, known: float | None = None, seconds: float = 300.0, seed: int = 3) -> tuple[Run, FarmPolicy]:
    policy = FarmPolicy(known_rates={UPSTREAM: known} if known else None, rng=random.Random(seed))
    upstream = SimUpstream(spec, latency="50", seed=seed)
    return simulate(upstream, IPS, seconds=seconds, warmup=120.0, seed=seed, policy=policy), policy


def noise(policy: FarmPolicy) -> list[float]:
    """What each pair's learner took for the upstream's noise."""
    return [p.learner.noise for p in policy.pacing.rates().values()]


@pytest.mark.parametrize("retry_after", ["yes", "no"])
@pytest.mark.parametrize(("share", "kept"), [(0.01, 0.9), (0.03, 0.6)])
def test_an_upstream_shedding_load_is_paced_as_a_told_rate_not_sunk(
    share: float, kept: float, retry_after: str
) -> None:
    spec = f"bucket:20/1s,burst=1,retry_after={retry_after} & shed:{share},retry_after={retry_after}"
    learned, policy = run(spec)
    told, _ = run(spec, known=20.0)
    # A Retry-After: 1 on each shed refusal cools its IP a second, learnt or told alike (told: 0.81 of N·R
    # at 1 %, 0.60 at 3 %; without it 0.96 and 0.93). Learnt, 0.52 and 0.18 of N·R before noise was found;
    # at 3 % without Retry-After an IP's first refusal run can read as a window's, and it finds noise late.
    assert learned.ratio(80.0) >= kept * told.ratio(80.0), (learned.ratio(80.0), told.ratio(80.0))
    assert any(n > 0 for n in noise(policy)), noise(policy)
    assert not policy.pacing.shared()  # the surprises on every IP were no budget they share


def test_a_deep_buckets_bank_refused_like_clockwork_is_not_taken_for_noise() -> None:
    # Each refusal's cooling refills 20 of its 40 tokens, which carry a pace over the rate for a while:
    # the pace is refused at regular intervals, under 0.8 of the highest it proved.
    learned, policy = run("bucket:20/1s,burst=2", seconds=180.0)
    assert not any(noise(policy)), noise(policy)
    assert learned.share_429 <= 0.01, learned.share_429


def test_a_budget_the_ips_share_is_paced_as_one_not_taken_for_noise() -> None:
    # Seen from one IP, the others spending the key's budget refuse it whatever its own pace, as noise
    # would: a shared budget is tried first, and paced as one its refusals stop.
    learned, policy = run("bucket:20/1s,burst=1,scope=key", seconds=180.0, seed=2)
    assert not any(noise(policy)), noise(policy)
    assert policy.pacing.shared(), "the key's budget is paced as one"
    assert learned.share_429 <= 0.01, learned.share_429
    assert learned.ratio(20.0) >= 0.95, learned.ratio(20.0)
