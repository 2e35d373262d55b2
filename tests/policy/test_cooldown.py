"""Cooldowns per (IP, upstream), with a seeded RNG and a fake clock: no sleeps."""

from __future__ import annotations

import random

from galileo.policy.cooldown import CooldownBook, CooldownRule


def book(seed: int = 7) -> CooldownBook:
    return CooldownBook(rng=random.Random(seed))


def test_429_cools_only_that_ip_and_upstream() -> None:
    b = book()
    started = b.record("10.0.0.1", "jupiter", "rate_limited", 429, None, now=100.0)
    assert started is not None and started[0] == "rate_limited"
    assert b.cooling_until("10.0.0.1", "jupiter", 100.0) is not None
    assert b.cooling_until("10.0.0.1", "jito:ny", 100.0) is None
    assert b.cooling_until("10.0.0.2", "jupiter", 100.0) is None


def test_first_429_is_at_least_500ms_and_at_most_1s() -> None:
    for seed in range(50):
        b = book(seed)
        started = b.record("ip", "u", "rate_limited", 429, None, now=0.0)
        assert started is not None
        assert 0.5 <= started[1] <= 1.0


def test_first_timeout_is_at_least_250ms() -> None:
    for seed in range(50):
        started = book(seed).record("ip", "u", "timeout", 0, None, now=0.0)
        assert started is not None and 0.25 <= started[1] <= 0.5


def test_consecutive_429s_grow_exponentially_up_to_the_cap() -> None:
    """Spaced far apart (a 429 a minute), the run's share never binds: the doubling and the cap do."""
    ceilings = []
    for seed in range(200):
        b = book(seed)
        durations = []
        for n in range(10):
            started = b.record("ip", "u", "rate_limited", 429, None, now=1000.0 + 60.0 * n)
            assert started is not None
            durations.append(started[1])
        ceilings.append(durations)
    # The ceiling doubles each time: the largest draw of step n is close to 0.5 * 2**(n+1).
    for n in range(5):
        biggest = max(d[n] for d in ceilings)
        assert 0.5 * 2 ** (n + 1) * 0.9 <= biggest <= 0.5 * 2 ** (n + 1)
    assert max(d[9] for d in ceilings) <= 30.0
    assert max(d[9] for d in ceilings) >= 27.0


def test_a_run_of_429s_without_a_word_is_probed_within_a_fifth_of_its_length() -> None:
    """Each probe of a run that says nothing of its end (a penalty box without Retry-After) comes
    within a fifth of the run so far (or the first one's second): a box ending 10 s in is found by 12 s, not
    up to 30 s late. The doubling alone (4, 8, 16 s ceilings by the fourth 429) would pass it by."""
    for seed in range(200):
        b = book(seed)
        now, box_ends, found = 0.0, 10.0, None
        while found is None:
            started = b.record("ip", "u", "rate_limited", 429, None, now=now)
            assert started is not None
            assert started[1] <= max(1.0, 0.2 * now) + 1e-9
            now += started[1]
            if now >= box_ends:
                found = now
        assert found <= box_ends * 1.2 + 1e-9
    # With doubling alone, some draws pass a 10 s box's end by seconds.
    late = 0
    for seed in range(200):
        b = CooldownBook(rules={"rate_limited": CooldownRule(start=0.5, cap=30.0)}, rng=random.Random(seed))
        now = 0.0
        while now < 10.0:
            started = b.record("ip", "u", "rate_limited", 429, None, now=now)
            assert started is not None
            now += started[1]
        late += now > 12.0
    assert late > 20


def test_a_streak_decayed_to_nothing_starts_its_run_afresh() -> None:
    """The run's start is the first 429 of the streak: successes that clear it clear the start too."""
    for seed in range(50):
        b = book(seed)
        b.record("ip", "u", "rate_limited", 429, None, now=0.0)
        b.record("ip", "u", "ok", 200, None, now=100.0)
        assert "rate_limited" not in b.get("ip", "u").since
        for t in (100.5, 101.0, 101.5, 102.0):
            started = b.record("ip", "u", "rate_limited", 429, None, now=t)
            assert started is not None and started[1] <= max(1.0, 0.2 * (t - 100.5)) + 1e-9


def test_retry_after_is_honoured() -> None:
    started = book().record("ip", "u", "rate_limited", 429, 7.0, now=0.0)
    assert started == ("rate_limited", 7.0)


def test_a_503_that_says_when_cools_that_long_from_the_first_one() -> None:
    """RFC 9110: a 503's Retry-After is how long the service expects to be unavailable. The pair cools
    exactly that long at once; a 503 that says nothing still cools only when it repeats."""
    b = book()
    assert b.record("ip", "u", "http_error", 503, 12.0, now=0.0) == ("server_error", 12.0)
    assert b.cooling_until("ip", "u", 1.0) == 12.0
    assert b.cooling_until("ip", "v", 1.0) is None
    assert b.record("ip", "w", "http_error", 503, None, now=0.0) is None


def test_successes_decay_the_streak() -> None:
    b = book(1)
    for t in range(4):
        b.record("ip", "u", "rate_limited", 429, None, now=float(t * 100))
    assert b.get("ip", "u").streaks["rate_limited"] == 4
    for _ in range(3):
        b.record("ip", "u", "ok", 200, None, now=500.0)
    assert b.get("ip", "u").streaks["rate_limited"] == 1


def test_echoes_of_the_same_burst_do_not_escalate() -> None:
    b = book(3)
    b.record("ip", "u", "rate_limited", 429, None, now=10.0, sent_at=9.9)
    # Four more 429s for jobs sent before the cooldown began: the same event, not news.
    for _ in range(4):
        assert b.record("ip", "u", "rate_limited", 429, None, now=10.01, sent_at=9.95) is None
    assert b.get("ip", "u").streaks["rate_limited"] == 1


def test_network_errors_5xx_and_answers_that_are_not_http_cool_only_when_repeated() -> None:
    b = book()
    assert b.record("ip", "u", "network_error", 0, None, now=0.0) is None
    assert b.record("ip", "u", "network_error", 0, None, now=0.1) is None
    started = b.record("ip", "u", "network_error", 0, None, now=0.2)
    assert started is not None and started[1] >= 1.0
    assert b.record("ip", "v", "http_error", 503, None, now=0.0) is None
    assert b.record("ip", "v", "http_error", 502, None, now=0.0) is None
    assert b.record("ip", "v", "http_error", 500, None, now=0.0) is not None
    # An answer that is not HTTP (garbage status line, broken framing) is a broken peer, as a 5xx.
    assert b.record("ip", "w", "protocol_error", 0, None, now=0.0) is None
    assert b.record("ip", "w", "protocol_error", 0, None, now=0.1) is None
    started = b.record("ip", "w", "protocol_error", 0, None, now=0.2)
    assert started is not None and started[0] == "server_error"


def test_client_errors_and_decode_errors_never_cool() -> None:
    b = book()
    for _ in range(10):
        assert b.record("ip", "u", "http_error", 400, None, now=0.0) is None
        assert b.record("ip", "u", "decode_error", 200, None, now=0.0) is None
    assert b.cooling_until("ip", "u", 0.0) is None


def test_bind_error_suspends_the_ip_for_every_upstream_until_unsuspended() -> None:
    b = book()
    assert b.record("ip", "jupiter", "bind_error", 0, None, now=0.0) == ("bind_error", float("inf"))
    assert b.cooling_until("ip", "jito:ny", 1e9) == float("inf")
    assert b.unsuspend("ip")
    assert b.cooling_until("ip", "jito:ny", 0.0) is None


def test_a_running_cooldown_is_never_shortened() -> None:
    b = book()
    b.record("ip", "u", "rate_limited", 429, 10.0, now=0.0)
    b.record("ip", "u", "timeout", 0, None, now=1.0)  # a shorter one on top
    assert b.cooling_until("ip", "u", 5.0) == 10.0
