"""Outcome classification and the rolling per-upstream stats."""

from __future__ import annotations

import time

import pytest

from workers.classify import classify_status, parse_retry_after, retry_after_of, said_when
from workers.stats import RollingStats


@pytest.mark.parametrize(
    ("status", "result"),
    [(200, None), (429, "rate_limited"), (408, "timeout"), (504, "timeout"), (500, "http_error"), (404, "http_error")],
)
def test_status_classes(status: int, result: str | None) -> None:
    out = classify_status(status, None, 0.01)
    assert (out.result if out else None) == result


def test_a_503_says_when_in_retry_after_only_and_other_errors_never_do() -> None:
    headers = {"Retry-After": "6", "RateLimit-Reset": "9"}
    assert said_when(503, {"RateLimit-Reset": "9"}) is None  # a rate limit's reset is a 429's word
    assert said_when(503, headers) == "6" and said_when(429, headers) == "6"
    assert said_when(500, headers) is None and said_when(200, headers) is None
    out = classify_status(503, "6", 0.01)
    assert out is not None and (out.result, out.retry_after) == ("http_error", 6.0)
    out = classify_status(502, "6", 0.01)
    assert out is not None and out.retry_after is None


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("junk") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("99999") == 300.0  # a bogus header cannot park an IP for a day
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "3", "RateLimit-Reset": "9"}, 3.0),  # Retry-After first
        ({"RateLimit-Reset": "9"}, 9.0),  # IETF draft (Kong, Envoy): seconds
        ({"X-RateLimit-Reset": "4"}, 4.0),
        ({"X-Rate-Limit-Reset": "1.5"}, 1.5),
        ({"RateLimit": '"default";r=0;t=12', "RateLimit-Policy": '"default";q=100;w=60'}, 12.0),  # draft-08
        ({"X-RateLimit-Reset": "junk", "RateLimit-Reset": "5"}, 5.0),  # unreadable: the next one
        ({"RateLimit": '"default";r=0'}, None),
        ({}, None),
    ],
)
def test_a_429_without_retry_after_takes_its_rate_limit_reset(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(retry_after_of(headers)) == seconds


def test_a_rate_limit_reset_as_a_unix_time_is_a_delay_from_now() -> None:
    at = time.time() + 30
    for value in (f"{at:.0f}", f"{at * 1000:.0f}"):  # seconds (GitHub), milliseconds
        got = parse_retry_after(retry_after_of({"X-RateLimit-Reset": value}))
        assert got is not None and 28 <= got <= 31, (value, got)
    assert parse_retry_after(retry_after_of({"X-RateLimit-Reset": f"{time.time() - 60:.0f}"})) == 0.0  # past


def test_rolling_window_counts_and_percentiles() -> None:
    now = [1000.0]
    stats = RollingStats(clock=lambda: now[0])
    for i in range(100):
        stats.record("jupiter", "ok", (i + 1) / 1000)  # 1 ms .. 100 ms
    stats.record("jupiter", "rate_limited", 0.001)
    snap = stats.snapshot()["jupiter"]
    assert snap.counts == {"ok": 100, "rate_limited": 1}
    assert 45 <= snap.p50_ms <= 55
    assert 94 <= snap.p99_ms <= 105
    now[0] += 61
    assert stats.snapshot() == {}
