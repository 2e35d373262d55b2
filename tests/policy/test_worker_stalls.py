"""Workers the OS holds up: what queued in one goes spaced (``Dispatch.gap``), not in a bunch.

Virtual time (:mod:`tests.policy.limitsim`), 8 IPs at 150 ms on a token bucket of two tokens (20/s,
0.1 s of burst): each worker stops reading for 150 ms once every 8 s, at moments of its own, and
reads what was dispatched to it meanwhile all at once (64 workers share 2 cores in the bench). The
farm's policy gives each job of a paced pair the interval its worker keeps (told: the told rate's;
learnt: the fastest pace proved), and the worker spaces its sends by it; the same run with no
interval (the workers send as they read) is the comparison.
"""

from __future__ import annotations

import contextlib
from unittest import mock

from galileo.policy.allocator import FarmPolicy
from tests.policy.limitsim import Run, SimUpstream, simulate

IPS = [f"10.0.0.{i}" for i in range(1, 9)]
BUDGET = 20.0 * len(IPS)


def stalled_run(told: float | None, spaced: bool) -> Run:
    upstream = SimUpstream("bucket:20/1s,burst=0.1", latency="150ms", seed=1)
    unspaced = mock.patch.object(FarmPolicy, "_spacing", staticmethod(lambda pacer: 0.0))
    with contextlib.nullcontext() if spaced else unspaced:
        return simulate(upstream, IPS, seconds=180, warmup=90, known=told, seed=1, worker_stalls=(8.0, 0.15))


def test_what_queued_in_a_stalled_worker_goes_at_the_told_rate_so_the_bucket_refuses_none() -> None:
    """Told 20/s: spaced, the farm holds 0.975 of N·R with no 429; sent as read, the bunches are
    refused (0.84, 1.4 % 429s)."""
    spaced = stalled_run(20.0, spaced=True)
    assert spaced.ratio(BUDGET) >= 0.97 and spaced.share_429 == 0.0
    unspaced = stalled_run(20.0, spaced=False)
    assert unspaced.ratio(BUDGET) < 0.9 and unspaced.share_429 > 0.005


def test_what_queued_in_a_stalled_worker_goes_at_a_learnt_pace_so_it_is_not_taken_for_the_limit() -> None:
    """Learnt: spaced at the fastest pace it proved, the farm holds 0.95 of N·R with no 429; sent as
    read, each refused bunch is taken for the limit (0.63, 0.7 % 429s)."""
    spaced = stalled_run(None, spaced=True)
    assert spaced.ratio(BUDGET) >= 0.93 and spaced.share_429 == 0.0
    unspaced = stalled_run(None, spaced=False)
    assert unspaced.ratio(BUDGET) < 0.75 and unspaced.share_429 > 0.005
