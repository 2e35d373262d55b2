"""Profit arithmetic for a round trip, in the base mint's raw units.

    needed = size + costs + max(min_profit, 1)    what the sell leg must pay, at least
    costs  = tip + base fee + priority fee        (lamports), converted to base units for non-SOL bases

Profit is judged on what the chain enforces, not on what a quote hopes: the sell leg sells
what the buy leg is sure to deliver (its minimum out), and its own minimum out is set to
``needed`` (the slippage is whatever that leaves). So a round trip that lands made at least
``min_profit`` of *its* base mint, after its costs, or it failed and nothing of it happened.
An opportunity is one whose sell quote pays ``needed`` or more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from galileo.config.sections import LanderConfig
from galileo.tx.slippage import min_out, slippage_for

__all__ = ["SOL_MINT", "TWO_LEG_CU_ESTIMATE", "Costs", "PriceBook", "estimated_costs", "evaluate", "needed_out"]

SOL_MINT = "So11111111111111111111111111111111111111112"
LAMPORTS_PER_SIGNATURE = 5000
TWO_LEG_CU_ESTIMATE = 400_000  # compute units of a round trip, until swap-instructions give the real limit


@dataclass(frozen=True, slots=True)
class Costs:
    """What landing one round trip costs, in lamports."""

    tip: int
    signatures: int = 1
    priority_fee: int = 0

    @property
    def lamports(self) -> int:
        return self.tip + self.signatures * LAMPORTS_PER_SIGNATURE + self.priority_fee


def estimated_costs(lander: LanderConfig, *, jito: bool, rpc: bool, cu_limit: int = TWO_LEG_CU_ESTIMATE) -> Costs:
    """What landing a round trip will cost: the tip if Jito lands it, the priority fee if RPC does."""
    priority_fee = -(-cu_limit * lander.compute_unit_price_micro_lamports // 1_000_000) if rpc else 0
    return Costs(tip=lander.tip_lamports if jito else 0, priority_fee=priority_fee)


@dataclass(frozen=True, slots=True)
class Verdict:
    gross: int  # sell_out - size, base units
    costs: int  # base units
    profit: int  # gross - costs: what the quotes promise
    profitable: bool  # the sell leg can be held to ``needed`` on chain
    needed: int  # the sell leg's minimum out: size + costs + max(min_profit, 1)
    slippage_bps: int | None  # the sell leg's slippage that gives a minimum out >= needed (None: none can)
    floor: int  # the profit the chain guarantees if it lands: min_out(sell_out, slippage) - size - costs


class PriceBook:
    """Lamports -> base-mint units, learned from the strategy's own SOL quotes."""

    def __init__(self) -> None:
        self._base_per_lamport: dict[str, Fraction] = {SOL_MINT: Fraction(1)}

    def observe(self, in_mint: str, in_amount: int, out_mint: str, out_amount: int) -> None:
        """Record a quote; quotes with SOL on one side price the other mint."""
        if in_amount <= 0 or out_amount <= 0:
            return
        if in_mint == SOL_MINT and out_mint != SOL_MINT:
            self._base_per_lamport[out_mint] = Fraction(out_amount, in_amount)
        elif out_mint == SOL_MINT and in_mint != SOL_MINT:
            self._base_per_lamport[in_mint] = Fraction(in_amount, out_amount)

    def knows(self, mint: str) -> bool:
        return mint in self._base_per_lamport

    def to_base(self, mint: str, lamports: int) -> int | None:
        """``lamports`` in ``mint``'s raw units (rounded up: costs are never understated)."""
        rate = self._base_per_lamport.get(mint)
        return None if rate is None else math.ceil(lamports * rate)

    def to_lamports(self, mint: str, amount: int) -> int | None:
        """``amount`` of ``mint``'s raw units in lamports (rounded down: profits are never overstated)."""
        rate = self._base_per_lamport.get(mint)
        return None if rate is None else math.floor(amount / rate)


def needed_out(size: int, costs_in_base: int, min_profit: int) -> int:
    """What the sell leg must pay at least: the size back, the costs, and ``min_profit`` (at least 1)."""
    return size + costs_in_base + max(min_profit, 1)


def evaluate(size: int, sell_out: int, costs_in_base: int, min_profit: int) -> Verdict:
    """Judge a round trip on thresholds: can its sell leg (quoted ``sell_out`` for what the buy leg
    surely delivers) be held on chain to pay size + costs + min_profit?"""
    gross = sell_out - size
    needed = needed_out(size, costs_in_base, min_profit)
    bps = slippage_for(sell_out, needed)
    floor = (min_out(sell_out, bps) if bps is not None else sell_out) - size - costs_in_base
    return Verdict(
        gross=gross,
        costs=costs_in_base,
        profit=gross - costs_in_base,
        profitable=bps is not None,
        needed=needed,
        slippage_bps=bps,
        floor=floor,
    )
