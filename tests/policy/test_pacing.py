"""Pacing per (IP, upstream): told rates and learned ones, against a simulated token bucket."""

from __future__ import annotations

import pytest

from galileo.policy.pacing import PaceBook
from tests.policy.tokenbucket import simulate


def test_told_rate_paces_at_99_percent_without_429s() -> None:
    for rate in (5.0, 20.0, 100.0):
        run = simulate(rate, rate, known=rate)
        assert run.share_429 == 0.0
        assert run.ok_ratio >= 0.98


@pytest.mark.parametrize("rate", [10.0, 20.0, 50.0, 100.0])
def test_learned_rate_runs_near_the_limit_with_few_429s(rate: float) -> None:
    for seed in (1, 2, 3):
        run = simulate(rate, rate, seed=seed)
        assert run.ok_ratio >= 0.95, (rate, seed, run)
        assert run.share_429 <= 0.01, (rate, seed, run)


@pytest.mark.parametrize("rate", [10.0, 20.0, 50.0])
def test_learning_survives_a_busy_upstream_and_a_full_farm(rate: float) -> None:
    """256 jobs per IP and an upstream slow under load: the start-up burst must not skew the estimate."""
    for seed in (1, 2, 3):
        run = simulate(rate, rate, seed=seed, latency=0.03, cap=256, queueing=0.002)
        assert run.ok_ratio >= 0.95, (rate, seed, run)
        assert run.share_429 <= 0.01, (rate, seed, run)


def test_a_new_pair_ramps_its_concurrency_up_instead_of_flooding() -> None:
    book = PaceBook()
    p = book.get("ip", "u", 0.0)
    for _ in range(8):
        assert p.next_at(0.0) is None
        p.dispatched(0.0)
    assert p.next_at(0.0) == float("inf")  # 8 in flight: wait for an answer
    p.blocked(0.3)  # still wanting more a moment later
    book.record("ip", "u", "ok", 0.6)
    assert p.open_cap == 16  # saturated for 0.5 s without a 429: double


def test_pacing_blocks_until_the_next_slot() -> None:
    book = PaceBook({"jupiter": 10.0})
    p = book.get("ip", "jupiter", 0.0)
    assert p.next_at(0.0) is None
    p.dispatched(0.0)
    at = p.next_at(0.0)
    assert at is not None and at == pytest.approx(1 / 9.9)
    assert p.next_at(at) is None


def test_a_family_limit_applies_to_its_members() -> None:
    book = PaceBook({"jito": 5.0})
    assert book.known_rate("jito:frankfurt") == 5.0
    assert book.known_rate("jupiter") is None


def test_a_429_while_told_trims_the_rate() -> None:
    book = PaceBook({"u": 10.0})
    p = book.get("ip", "u")
    before = p.rate
    book.record("ip", "u", "rate_limited", 1.0, sent_at=0.9)
    assert p.rate < before


def test_pairs_are_independent() -> None:
    book = PaceBook()
    a = book.get("ip1", "u")
    a.dispatched(0.0)
    assert book.get("ip2", "u").next_at(0.0) is None
    assert book.get("ip1", "v").next_at(0.0) is None
