"""Pacing per (IP, upstream): run a saturated farm near each upstream's per-IP limit, with few 429s.

Each pair is paced with GCRA (a virtual scheduling clock ``tat``; a job may go when
``now >= tat - tau``). The rate is either told (``rate_limit_per_ip`` in the config: paced
at 99 % of it from the first request) or learned from 429s in three phases:

1. **start**: from 8 req/s, double every 0.5 s while the pair is saturated (jobs waiting on it).
2. **measure**: after the first 429 the upstream's bucket is empty; keep the same rate and
   count successes until a later 429 (the bucket empty again) after at least 2 cycles and 30
   successes. Between two empty-bucket moments the upstream accepted exactly its rate, so
   ``(oks + 0.5) / elapsed`` estimates it. The cooldown each 429 imposes costs nothing here:
   the upstream's bucket refills meanwhile and the next burst spends it.
3. **hold**: pace at 98.5 % of the estimate, with a burst tolerance ``tau`` of half the
   smallest burst seen after a cooldown, so tokens the upstream banked during a cooldown are
   used rather than wasted. Probe +3 % after 60 s saturated without a 429; a 429 during a
   probe reverts it and doubles the probe interval; a 429 otherwise trims 3 %.

The estimate is only as good as the upstream's burst: with a burst much smaller than a
second's worth, every 429's cooldown outlasts the refill and learning underestimates; tell
such upstreams' limits in the config instead.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PaceBook", "Pacer"]

START_RATE = 8.0
START_STEP = 0.5
HOLD_FRACTION = 0.985
KNOWN_FRACTION = 0.99
MIN_OKS = 30
MIN_CYCLES = 2
PROBE_EVERY = 60.0
PROBE_STEP = 1.03
PROBE_MAX = 900.0
TRIM = 0.97
MIN_RATE = 0.1
SATURATION_WINDOW = 0.5


@dataclass
class Pacer:
    """One (IP, upstream) pair's pacing state."""

    rate: float
    phase: str  # start | measure | hold | probe
    known: bool = False
    tat: float = 0.0
    tau: float = 0.0
    phase_at: float = 0.0
    last_blocked: float = float("-inf")
    good: float = 0.0
    probe_every: float = PROBE_EVERY
    m_start: float = 0.0
    m_oks: int = 0
    m_cycles: int = 0
    since_429: int = 0
    burst_min: int | None = None
    episode: float = float("-inf")  # when the last counted 429 arrived
    estimate: float | None = None

    def next_at(self, now: float) -> float | None:
        """When the pair may send again, or None if it may now."""
        allow = self.tat - self.tau
        return allow if now < allow else None

    def dispatched(self, now: float) -> None:
        self.tat = max(self.tat, now) + 1.0 / self.rate

    def blocked(self, now: float) -> None:
        self.last_blocked = now

    def saturated(self, now: float) -> bool:
        return now - self.last_blocked < SATURATION_WINDOW

    def ok(self, now: float) -> None:
        self.since_429 += 1
        if self.phase == "measure":
            self.m_oks += 1
        elif self.phase == "start":
            if now - self.phase_at >= START_STEP and self.saturated(now):
                self.rate *= 2
                self.phase_at = now
        elif self.phase == "hold":
            if not self.known and self.saturated(now) and now - self.phase_at >= self.probe_every:
                self.good = self.rate
                self.rate *= PROBE_STEP
                self.phase = "probe"
                self.phase_at = now
        elif self.phase == "probe" and now - self.phase_at >= self.probe_every:
            self.good = self.rate
            self.phase = "hold"
            self.phase_at = now

    def rate_limited(self, now: float, sent_at: float | None) -> None:
        if sent_at is not None and sent_at < self.episode:
            return  # in flight when the previous 429 arrived: an echo, not news
        self.episode = now
        if self.phase == "start":
            self.phase = "measure"
            self.m_start, self.m_oks, self.m_cycles, self.since_429 = now, 0, 0, 0
            return
        if self.phase == "measure":
            self.m_cycles += 1
            burst = self.since_429
            self.burst_min = burst if self.burst_min is None else min(self.burst_min, burst)
            self.since_429 = 0
            if self.m_cycles >= MIN_CYCLES and self.m_oks >= MIN_OKS and now > self.m_start:
                self.estimate = (self.m_oks + 0.5) / (now - self.m_start)
                self.rate = max(MIN_RATE, HOLD_FRACTION * self.estimate)
                self.good = self.rate
                self.tau = 0.5 * (self.burst_min or 0) / self.rate
                self.phase = "hold"
                self.phase_at = now
            return
        self.since_429 = 0
        if self.phase == "probe":
            self.rate = self.good
            self.probe_every = min(PROBE_MAX, self.probe_every * 2)
        else:
            self.rate = max(MIN_RATE, self.rate * TRIM)
            self.good = self.rate
        self.phase = "hold"
        self.phase_at = now


class PaceBook:
    """Every (IP, upstream) pair's pacer. ``known`` maps an upstream (or its family) to a rate."""

    def __init__(self, known: dict[str, float] | None = None) -> None:
        self.known = dict(known or {})
        self._pacers: dict[tuple[str, str], Pacer] = {}

    def known_rate(self, upstream: str) -> float | None:
        """A configured limit for ``jito:frankfurt`` falls back to one for ``jito``."""
        if upstream in self.known:
            return self.known[upstream]
        family = upstream.split(":", 1)[0]
        return self.known.get(family)

    def get(self, ip: str, upstream: str, now: float = 0.0) -> Pacer:
        key = (ip, upstream)
        p = self._pacers.get(key)
        if p is None:
            known = self.known_rate(upstream)
            if known:
                p = Pacer(rate=KNOWN_FRACTION * known, phase="hold", known=True, phase_at=now)
            else:
                p = Pacer(rate=START_RATE, phase="start", phase_at=now)
            p.good = p.rate
            self._pacers[key] = p
        return p

    def record(self, ip: str, upstream: str, result: str, now: float, sent_at: float | None = None) -> None:
        p = self.get(ip, upstream, now)
        if result == "ok":
            p.ok(now)
        elif result == "rate_limited":
            p.rate_limited(now, sent_at)

    def forget(self, ip: str) -> None:
        for key in [k for k in self._pacers if k[0] == ip]:
            del self._pacers[key]

    def rates(self) -> dict[tuple[str, str], Pacer]:
        return dict(self._pacers)
