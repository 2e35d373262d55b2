"""Jito's auction, seeded: the tip floor the simulator publishes and the chance a bundle lands.

The tip floor is Jito's ``landed_tips_*_percentile`` shape (SOL), drifting with the slot. A bundle
lands with probability ``1 - (1 - rank) * contention``, where ``rank`` is where its tip falls
among the published percentiles (log-interpolated: the 25th percentile is 0.25, the 50th 0.5,
the 99th and above 0.99; a tenth of the 25th percentile or less is 0) and ``contention`` (0..1,
``SimConfig.auction_contention``) is how often someone outbids it: 0 lands every accepted bundle,
1 makes the rank the chance. The draw is a pure function of (seed, bundle id), so the same bundle
under the same seed always wins or always loses.
"""

from __future__ import annotations

import itertools
import math

from galileo.sim.prices import deterministic_unit

__all__ = ["PERCENTILES", "land_probability", "tip_floor", "wins_auction"]

# Jito's published percentiles in SOL around which the floor drifts (reference §6.3 shape).
PERCENTILES: dict[str, float] = {"25th": 1.0e-6, "50th": 1.0e-5, "75th": 3.6e-5, "95th": 1.4e-3, "99th": 1.0e-2}
_RANKS = {"25th": 0.25, "50th": 0.5, "75th": 0.75, "95th": 0.95, "99th": 0.99}


def tip_floor(seed: int, slot: int) -> dict[str, float]:
    """The tip floor at ``slot``, SOL per percentile; it moves every 25 slots (10 s)."""
    wiggle = 0.8 + 0.4 * deterministic_unit(seed, "tip_floor", slot // 25)
    return {pct: sol * wiggle for pct, sol in PERCENTILES.items()}


def land_probability(tip_lamports: int, floor: dict[str, float], contention: float) -> float:
    """The chance a bundle tipping ``tip_lamports`` lands against ``floor`` (see the module doc)."""
    points = [(math.log(floor[p] * 1e9), _RANKS[p]) for p in _RANKS]
    points.insert(0, (points[0][0] - math.log(10.0), 0.0))
    x = math.log(max(tip_lamports, 1))
    if x <= points[0][0]:
        rank = 0.0
    elif x >= points[-1][0]:
        rank = points[-1][1]
    else:
        rank = next(
            r0 + (r1 - r0) * (x - x0) / (x1 - x0) for (x0, r0), (x1, r1) in itertools.pairwise(points) if x <= x1
        )
    return 1.0 - (1.0 - rank) * contention


def wins_auction(seed: int, bundle_id: str, probability: float) -> bool:
    """The seeded draw for ``bundle_id``."""
    return deterministic_unit(seed, "auction", bundle_id) < probability
