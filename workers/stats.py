"""Rolling per-upstream statistics over the last 60 s, cheap enough to update on every job.

Each second gets a bucket: counts by result and a log-scale latency histogram (about 5 %
resolution from 0.1 ms to 60 s). Percentiles merge the live buckets, so reporting costs the
same whatever the job rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from broker.protocol import UpstreamStats

__all__ = ["RollingStats"]

WINDOW = 60
_BINS = 320
_BASE = 1.05
_MIN_MS = 0.1


def _bin(ms: float) -> int:
    if ms <= _MIN_MS:
        return 0
    return min(_BINS - 1, int(math.log(ms / _MIN_MS, _BASE)) + 1)


def _bin_ms(i: int) -> float:
    return _MIN_MS * _BASE ** (i - 0.5) if i else _MIN_MS


class _Second:
    __slots__ = ("counts", "hist", "second")

    def __init__(self, second: int) -> None:
        self.second = second
        self.counts: dict[str, int] = {}
        self.hist: dict[int, int] = {}


class RollingStats:
    """Counts and latency percentiles per upstream over a sliding 60 s window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._data: dict[str, list[_Second]] = {}

    def record(self, upstream: str, result: str, latency_s: float) -> None:
        now = int(self.clock())
        buckets = self._data.setdefault(upstream, [])
        if not buckets or buckets[-1].second != now:
            buckets.append(_Second(now))
            while buckets and buckets[0].second <= now - WINDOW:
                buckets.pop(0)
        b = buckets[-1]
        b.counts[result] = b.counts.get(result, 0) + 1
        k = _bin(latency_s * 1000)
        b.hist[k] = b.hist.get(k, 0) + 1

    def snapshot(self) -> dict[str, UpstreamStats]:
        now = int(self.clock())
        out: dict[str, UpstreamStats] = {}
        for upstream, buckets in list(self._data.items()):
            live = [b for b in buckets if b.second > now - WINDOW]
            if not live:
                del self._data[upstream]
                continue
            counts: dict[str, int] = {}
            hist: dict[int, int] = {}
            for b in live:
                for k, v in b.counts.items():
                    counts[k] = counts.get(k, 0) + v
                for k2, v2 in b.hist.items():
                    hist[k2] = hist.get(k2, 0) + v2
            total = sum(counts.values())
            span = max(1, min(WINDOW, now - live[0].second + 1))
            out[upstream] = UpstreamStats(
                counts=counts,
                rate=round(total / span, 3),
                p50_ms=round(_percentile(hist, total, 0.50), 3),
                p99_ms=round(_percentile(hist, total, 0.99), 3),
            )
        return out


def _percentile(hist: dict[int, int], total: int, q: float) -> float:
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= rank:
            return _bin_ms(k)
    return _bin_ms(max(hist))
