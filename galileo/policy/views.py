"""What pacing holds, as plain data: for ``galileo farm stats`` and the Prometheus gauges.

An operator asks "what did the farm learn about Jupiter's limit on this address?": each (IP,
upstream) pair's pace (told, or learnt from 429s), the concurrency cap its refusals showed (and
what it carries where the upstream queues at it), and each budget every IP shares (an API key's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from galileo.policy.pacing import PaceBook

__all__ = ["PairPace", "SharedPace", "pair_paces", "shared_paces"]


@dataclass(frozen=True, slots=True)
class PairPace:
    """One (IP, upstream) pair. ``phase``: ``open`` (no limit met: the opening ramp), ``learn``
    (measuring the limit it met), ``hold`` (paced). ``rate``: requests/s it is paced at, None where
    it is not (open, or a budget every IP shares paces it: ``shared``). ``cap``: requests in flight
    it may have where its refusals showed a concurrency cap (``found``; fewer where the upstream
    queues at it), else None. ``noise``: the share of requests it found the upstream refusing whatever
    the pace (shedding load; 0: none found), whose 429s it does not follow down."""

    ip: str
    upstream: str
    phase: str
    rate: float | None
    told: bool
    cap: int | None
    found: int | None
    shared: bool
    noise: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "upstream": self.upstream,
            "phase": self.phase,
            "rate_per_s": None if self.rate is None else round(self.rate, 3),
            "told": self.told,
            "cap": self.cap,
            "cap_found": self.found,
            "shared": self.shared,
            "noise_share": round(self.noise, 4),
        }


@dataclass(frozen=True, slots=True)
class SharedPace:
    """A budget every IP of ``upstream`` shares: ``told`` (``rate_limit_per_key``) or learnt (an
    API key's, or detected), paced at ``rate`` requests/s over all of them (None: not met yet)."""

    upstream: str
    phase: str
    rate: float | None
    told: bool


def _rate(phase: str, rate: float) -> float | None:
    return rate if phase != "open" and math.isfinite(rate) else None


def pair_paces(book: PaceBook) -> list[PairPace]:
    """Every pair the book paces, by IP then upstream."""
    out = []
    for (ip, upstream), p in sorted(book.rates().items()):
        learner = p.learner
        rate = None if p.grouped else _rate(learner.phase, learner.rate)
        told = learner.told is not None
        out.append(PairPace(ip, upstream, learner.phase, rate, told, p.cap, p.caps.cap, p.grouped, learner.noise))
    return out


def shared_paces(book: PaceBook) -> list[SharedPace]:
    """Every shared budget, by upstream."""
    return [
        SharedPace(upstream, g.phase, _rate(g.phase, g.rate), g.told is not None)
        for upstream, g in sorted(book.shared().items())
    ]
