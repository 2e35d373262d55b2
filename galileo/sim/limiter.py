"""Token buckets per (source IP, service bucket), and forced answers for IPs made to look banned.

Pure policy: every call takes ``now`` (seconds, monotonic), so it is tested with a fake clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["IpOverride", "RateLimiter", "TokenBucket"]


class TokenBucket:
    """Capacity ``burst`` tokens, refilled at ``rate`` per second, starting full.

    At most ``burst + rate * t`` takes succeed in any window of ``t`` seconds.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_seconds(self, now: float) -> float:
        """Seconds until the next token is available (0 when one is available now)."""
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self.rate)


@dataclass(frozen=True)
class IpOverride:
    """A forced answer for one source IP: ``status`` with ``Retry-After: retry_after``.

    ``services`` limits it to some service names (``jupiter``, ``jito``, ``rpc`` ...); None = all.
    """

    status: int = 429
    retry_after: int = 1
    services: frozenset[str] | None = None

    def applies(self, service: str) -> bool:
        """Whether this override answers requests to ``service``."""
        return self.services is None or service in self.services


class RateLimiter:
    """One token bucket per (source IP, bucket name), created on first use."""

    def __init__(self, rate: float | None, burst_seconds: float) -> None:
        self.rate = rate
        self.burst_seconds = burst_seconds
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    @property
    def burst(self) -> float:
        """Bucket capacity: ``max(1, rate * burst_seconds)``."""
        return max(1.0, (self.rate or 0.0) * self.burst_seconds)

    def reconfigure(self, rate: float | None, burst_seconds: float) -> None:
        """Apply new settings; every bucket starts again full."""
        self.rate = rate
        self.burst_seconds = burst_seconds
        self._buckets.clear()

    def check(self, ip: str, bucket: str, now: float) -> int:
        """0 when the request may pass, else the Retry-After value in whole seconds (>= 1)."""
        if self.rate is None:
            return 0
        key = (ip, bucket)
        tb = self._buckets.get(key)
        if tb is None:
            tb = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        if tb.take(now):
            return 0
        return max(1, math.ceil(tb.wait_seconds(now)))
