"""Pacing per (IP, upstream): run a saturated farm near each upstream's per-IP limit, with few 429s.

Each pair is paced with GCRA (a virtual scheduling clock ``tat``; a job may go when
``now >= tat - tau``). The rate is either told (``rate_limit_per_ip`` in the config: paced
at 99 % of it from the first request) or learned from 429s in three phases:

1. **open**: no rate pacing; concurrency alone ramps up: at most 8 requests in flight per pair,
   doubled every 0.5 s the pair is saturated without a 429 (a new farm does not greet an
   upstream with 256 requests per IP at once). An upstream that never says 429 (a
   self-hosted Jupiter, an unlimited endpoint) is at full concurrency within seconds.
2. **measure**: the first 429 means the upstream's bucket is empty. Pace at 1.5x the success
   rate of the last second, counting successes still in flight then (enough to keep draining
   the bucket, not a flood; doubled if 2 s pass without another 429), and count successes
   until a later 429 (the bucket empty again) after at least 2 cycles and 30 successes. The
   first cycle is discarded: it still carries successes of requests sent before the bucket ran
   dry, so measuring starts at the first 429 of a request sent after it did.
   Between two empty-bucket moments the upstream accepted exactly its rate, so
   ``(oks + 0.5) / elapsed`` estimates it. The cooldown each 429 imposes costs nothing here:
   the upstream's bucket refills meanwhile and the next burst spends it. With no second 429
   for 10 s the limit is gone: back to open.
3. **hold**: pace at 98.5 % of the estimate, with a burst tolerance ``tau`` of half the
   smallest burst seen after a cooldown, so tokens the upstream banked during a cooldown are
   used rather than wasted. Probe +3 % after 60 s saturated without a 429; a 429 during a
   probe reverts it and doubles the probe interval; a 429 otherwise trims 3 %.

The estimate is only as good as the upstream's burst: with a burst much smaller than a
second's worth, every 429's cooldown outlasts the refill and learning underestimates; tell
such upstreams' limits in the config instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["PaceBook", "Pacer", "Phase"]

Phase = Literal["open", "measure", "hold", "probe"]

OPEN_START_INFLIGHT = 8
OPEN_STEP = 0.5
OVERDRIVE = 1.5
MIN_MEASURE_RATE = 2.0
MEASURE_STALL = 2.0
MEASURE_GIVE_UP = 10.0
HOLD_FRACTION = 0.985
KNOWN_FRACTION = 0.99
MIN_OKS = 20
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

    rate: float  # req/s; inf while open
    phase: Phase
    known: bool = False
    tat: float = 0.0
    tau: float = 0.0
    phase_at: float = 0.0
    last_blocked: float = float("-inf")
    good: float = 0.0
    probe_every: float = PROBE_EVERY
    m_start: float = 0.0
    m_oks: int = 0
    m_burst: int = 0  # successes sent before the first 429 (the bucket's last tokens)
    m_cycles: int = 0
    since_429: int = 0
    burst_min: int | None = None
    episode: float = float("-inf")  # when the last counted 429 arrived
    estimate: float | None = None
    recent: list[float] = field(default_factory=list)  # success times in the last second (open phase)
    inflight: int = 0  # jobs of this pair dispatched and not yet answered
    open_cap: int = OPEN_START_INFLIGHT
    m_clean: bool = False  # the measurement restarted after its first (flood-polluted) cycle

    def allowance(self) -> tuple[float, int | None]:
        """What the pair may carry now: (requests/s, at most this many in flight); inf / None: no limit.

        The seam between pacing and the round-trip engine, which keeps rate x latency in flight.
        """
        if self.phase == "open":
            return float("inf"), self.open_cap
        return self.rate, None

    def next_at(self, now: float) -> float | None:
        """When the pair may send again (inf: when a job returns), or None if it may now."""
        if self.phase == "open":
            return float("inf") if self.inflight >= self.open_cap else None
        allow = self.tat - self.tau
        return allow if now < allow else None

    def dispatched(self, now: float) -> None:
        self.inflight += 1
        if self.phase != "open":
            self.tat = max(self.tat, now) + 1.0 / self.rate

    def answered(self) -> None:
        self.inflight = max(0, self.inflight - 1)

    def blocked(self, now: float) -> None:
        self.last_blocked = now

    def saturated(self, now: float) -> bool:
        return now - self.last_blocked < SATURATION_WINDOW

    def ok(self, now: float, sent_at: float | None = None) -> None:
        phase = self.phase
        if phase == "open":
            recent = self.recent
            recent.append(now)
            if len(recent) > 64 and recent[0] < now - 1.0:
                del recent[: len(recent) // 2]
            if self.saturated(now) and now - self.phase_at >= OPEN_STEP:
                self.open_cap *= 2
                self.phase_at = now
            return
        if phase == "measure":
            if sent_at is not None and sent_at < self.m_start:
                # In flight when the bucket ran dry: the burst we achieved, not part of the estimate.
                self.m_burst += 1
                self.rate = max(self.rate, OVERDRIVE * self.m_burst)
                return
            self.m_oks += 1
            self.since_429 += 1
            quiet = now - self.episode
            if quiet > MEASURE_GIVE_UP:
                self._open()  # no second 429 for long: whatever limited us once is gone
            elif quiet > MEASURE_STALL and self.saturated(now):
                self.rate *= 2  # too slow to drain the bucket again: push harder
                self.episode = now - MEASURE_STALL / 2
            return
        self.since_429 += 1
        if phase == "hold":
            if not self.known and self.saturated(now) and now - self.phase_at >= self.probe_every:
                self.good = self.rate
                self.rate *= PROBE_STEP
                self.phase = "probe"
                self.phase_at = now
        elif phase == "probe" and now - self.phase_at >= self.probe_every:
            self.good = self.rate
            self.phase = "hold"
            self.phase_at = now

    def _open(self) -> None:
        self.phase, self.rate, self.tau, self.recent = "open", float("inf"), 0.0, []
        self.open_cap = OPEN_START_INFLIGHT

    def rate_limited(self, now: float, sent_at: float | None) -> None:
        if sent_at is not None and sent_at < self.episode:
            return  # in flight when the previous 429 arrived: an echo, not news
        self.episode = now
        if self.phase == "open":
            achieved = sum(1 for t in self.recent if t > now - 1.0)
            self.recent = []
            self.rate = max(MIN_MEASURE_RATE, OVERDRIVE * achieved)
            self.tat = now
            self.phase = "measure"
            self.m_start, self.m_oks, self.m_burst, self.m_cycles, self.since_429 = now, 0, achieved, 0, 0
            self.m_clean = False
            return
        if self.phase == "measure":
            if not self.m_clean:
                # The bucket is empty again and nothing from before it first ran dry is in flight.
                self.m_clean = True
                self.m_start, self.m_oks, self.since_429 = now, 0, 0
                return
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
                p = Pacer(rate=float("inf"), phase="open", phase_at=now)
            p.good = p.rate
            self._pacers[key] = p
        return p

    def record(self, ip: str, upstream: str, result: str, now: float, sent_at: float | None = None) -> None:
        p = self.get(ip, upstream, now)
        p.answered()
        if result == "ok":
            p.ok(now, sent_at)
        elif result == "rate_limited":
            p.rate_limited(now, sent_at)

    def lost(self, ip: str) -> None:
        """The IP's worker died: its jobs will not be answered (they are re-dispatched or ended)."""
        for (pip, _), p in self._pacers.items():
            if pip == ip:
                p.inflight = 0

    def forget(self, ip: str) -> None:
        for key in [k for k in self._pacers if k[0] == ip]:
            del self._pacers[key]

    def rates(self) -> dict[tuple[str, str], Pacer]:
        return dict(self._pacers)
