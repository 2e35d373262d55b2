"""Outcome classification and the rolling per-upstream stats."""

from __future__ import annotations

import pytest

from workers.classify import classify_status, parse_retry_after
from workers.stats import RollingStats


@pytest.mark.parametrize(
    ("status", "result"),
    [(200, None), (429, "rate_limited"), (408, "timeout"), (504, "timeout"), (500, "http_error"), (404, "http_error")],
)
def test_status_classes(status: int, result: str | None) -> None:
    out = classify_status(status, None, 0.01)
    assert (out.result if out else None) == result


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("junk") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("99999") == 300.0  # a bogus header cannot park an IP for a day
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


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
