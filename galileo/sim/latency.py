"""Added latency per service: a base, seeded lognormal jitter and rare spikes.

    150                           150 ms on every answer
    150,jitter=50                 150 ms + a lognormal draw with mean 50 ms and std 50 ms
    150,jitter=50,spike=0.01:2000 and 1 answer in 100 (drawn) takes 2000 ms more

A delay is ``base + X + S``: ``X = exp(mu + sigma * Z)`` with ``sigma**2 = ln 2`` and
``mu = ln(jitter) - sigma**2 / 2`` (so X has mean and standard deviation ``jitter``: a floor,
then the long right tail real round trips have), ``S = spike_ms`` with probability ``spike_p``.
Each sample takes exactly two draws from its own seeded stream, so the k-th request to a
service gets the same delay in every run with the same seed, whatever other services see.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from statistics import NormalDist

__all__ = ["LatencyModel", "LatencySpec", "parse_latency", "stream_seed"]

SIGMA = math.sqrt(math.log(2.0))  # coefficient of variation 1: std == mean == jitter
MAX_MS = 600_000.0
_UNIT = NormalDist()


@dataclass(frozen=True)
class LatencySpec:
    """Milliseconds: ``base_ms`` always, lognormal jitter of mean ``jitter_ms``, and with
    probability ``spike_p`` another ``spike_ms``."""

    base_ms: float
    jitter_ms: float = 0.0
    spike_p: float = 0.0
    spike_ms: float = 0.0

    @property
    def mean_ms(self) -> float:
        """The mean delay: ``base + jitter + spike_p * spike_ms``."""
        return self.base_ms + self.jitter_ms + self.spike_p * self.spike_ms

    def __str__(self) -> str:
        text = f"{self.base_ms:g}"
        if self.jitter_ms:
            text += f",jitter={self.jitter_ms:g}"
        if self.spike_p:
            text += f",spike={self.spike_p:g}:{self.spike_ms:g}"
        return text


def _ms(text: str, what: str) -> float:
    text = text.strip().removesuffix("ms")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a number of milliseconds") from None
    if not (math.isfinite(value) and 0 <= value <= MAX_MS):
        raise ValueError(f"{what}: {value:g} ms is not in 0..{MAX_MS:g}")
    return value


def parse_latency(text: str) -> LatencySpec:
    """The LatencySpec of ``BASE[,jitter=MS][,spike=P:MS]``; ValueError says what is wrong."""
    base, *options = [part.strip() for part in text.strip().split(",")]
    spec = {"base_ms": _ms(base, "latency base")}
    for option in options:
        name, eq, value = option.partition("=")
        name = name.strip()
        if name == "jitter" and eq:
            spec["jitter_ms"] = _ms(value, "jitter")
        elif name == "spike" and eq:
            p, colon, ms = value.partition(":")
            try:
                prob = float(p)
            except ValueError:
                prob = math.nan
            if not colon or not 0.0 <= prob <= 1.0:
                raise ValueError(f"{text!r}: spike=P:MS with P a probability in 0..1, e.g. spike=0.01:2000")
            spec["spike_p"], spec["spike_ms"] = prob, _ms(ms, "spike")
        else:
            raise ValueError(f"{text!r}: bad option {option!r} (known: jitter=MS, spike=P:MS)")
    return LatencySpec(**spec)


def stream_seed(seed: int, stream: str) -> int:
    """A 64-bit seed for one named stream (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256(f"galileo-sim/latency/{seed}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class LatencyModel:
    """Draws the delays of one service's answers, in order, from a seeded stream."""

    __slots__ = ("_mu", "_rng", "spec")

    def __init__(self, spec: LatencySpec, seed: int, stream: str) -> None:
        self.spec = spec
        self._rng = random.Random(stream_seed(seed, stream))
        self._mu = math.log(spec.jitter_ms) - SIGMA * SIGMA / 2 if spec.jitter_ms > 0 else 0.0

    def sample(self) -> float:
        """The next delay, in seconds."""
        spec = self.spec
        u_jitter, u_spike = self._rng.random(), self._rng.random()  # always two: order-stable
        ms = spec.base_ms
        if spec.jitter_ms > 0:
            ms += math.exp(self._mu + SIGMA * _UNIT.inv_cdf(max(u_jitter, 1e-12)))
        if u_spike < spec.spike_p:
            ms += spec.spike_ms
        return ms / 1000.0
