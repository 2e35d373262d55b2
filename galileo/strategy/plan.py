"""Batch planning: trade sizes from ranges, and one QuoteBatchPlan per base x intermediate x size.

Pure: the same config (and seed, for ``random`` lanes) gives the same plans.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from galileo.config.sections import BlindStrategyConfig, IntermediumConfig, LaneConfig

__all__ = ["PairPlan", "QuoteBatchPlan", "lane_sizes", "plan_pairs", "sizes_for"]


def lane_sizes(lane: LaneConfig, rng: random.Random) -> list[int]:
    """The sizes of one lane, ascending and deduplicated.

    ``linear``: evenly spaced from min to max. ``exponential``: evenly spaced in log space,
    so small sizes are sampled densely. ``random``: ``count`` distinct uniform draws (from the
    seeded RNG), falling back to linear when the range has too few integers.
    """
    lo, hi, n = lane.min, lane.max, lane.count
    if n <= 1 or lo == hi:
        return [hi]
    if lane.strategy == "linear":
        values = [round(lo + i * (hi - lo) / (n - 1)) for i in range(n)]
    elif lane.strategy == "exponential":
        values = [min(hi, max(lo, round(lo * (hi / lo) ** (i / (n - 1))))) for i in range(n)]
    else:
        if hi - lo + 1 < n:
            return lane_sizes(LaneConfig(min=lo, max=hi, count=n, strategy="linear"), rng)
        values = rng.sample(range(lo, hi + 1), n)
    return sorted(set(values))


def sizes_for(lanes: Sequence[LaneConfig], rng: random.Random) -> list[int]:
    """All sizes of a base mint's lanes, ascending, each once."""
    return sorted({size for lane in lanes for size in lane_sizes(lane, rng)})


@dataclass(frozen=True, slots=True)
class PairPlan:
    """A round trip to quote: base -> intermediate (buy leg), intermediate -> base (sell leg)."""

    base_mint: str
    intermediate_mint: str
    trade_size: int
    min_profit: int


@dataclass(frozen=True, slots=True)
class QuoteBatchPlan:
    """One batch: a buy quote and a sell quote of one size, tied together by ``batch_id``."""

    batch_id: int
    pair: PairPlan

    @property
    def base_mint(self) -> str:
        return self.pair.base_mint

    @property
    def intermediate_mint(self) -> str:
        return self.pair.intermediate_mint

    @property
    def trade_size(self) -> int:
        return self.pair.trade_size


def plan_pairs(strategy: BlindStrategyConfig, intermedium: IntermediumConfig, seed: int = 0) -> list[PairPlan]:
    """Every base x (enabled intermediate other than the base) x size, in a stable order."""
    rng = random.Random(seed)
    disabled = set(intermedium.disable_mints)
    inters = [m for m in dict.fromkeys(intermedium.mints) if m not in disabled]
    out: list[PairPlan] = []
    seen: set[tuple[str, str, int]] = set()
    for base in strategy.base_mints:
        sizes = sizes_for(base.lanes_or_range(), rng)
        for inter in inters:
            if inter == base.mint:
                continue
            for size in sizes:
                key = (base.mint, inter, size)
                if key not in seen:
                    seen.add(key)
                    out.append(PairPlan(base.mint, inter, size, base.min_quote_profit))
    return out


def batches(pairs: Sequence[PairPlan], first_id: int = 1) -> Iterator[QuoteBatchPlan]:
    """Endless batches: the pairs over and over, each round starting one pair further on."""
    ids = itertools.count(first_id)
    n = len(pairs)
    if n == 0:
        return
    for tick in itertools.count():
        for i in range(n):
            yield QuoteBatchPlan(next(ids), pairs[(tick + i) % n])
