"""Minimum outs and the slippage that gives them, as the aggregators' programs compute them.

An ExactIn route's on-chain minimum out is ``out × (10000 − bps) // 10000`` (Jupiter's
``route`` computes it from ``quoted_out_amount`` and ``slippage_bps``; DFlow and Titan carry
the result). To make a route pay at least ``needed``, ask for the largest ``bps`` whose
minimum out is still ``>= needed``: :func:`slippage_for`.
"""

from __future__ import annotations

__all__ = ["BPS", "min_out", "slippage_for"]

BPS = 10_000


def min_out(out_amount: int, slippage_bps: int) -> int:
    """The minimum out of an ExactIn route quoted ``out_amount`` with ``slippage_bps`` (floored, as on chain)."""
    if not 0 <= slippage_bps <= BPS:
        raise ValueError(f"slippage_bps must be in 0..{BPS}, got {slippage_bps}")
    return out_amount * (BPS - slippage_bps) // BPS


def slippage_for(out_amount: int, needed: int) -> int | None:
    """The most slippage (bps) that still leaves ``min_out(out_amount, bps) >= needed``.

    None when even 0 bps cannot: the route is quoted below what it must pay.
    """
    if out_amount <= 0 or needed > out_amount:
        return None
    if needed <= 0:
        return BPS
    # out × (10000 − b) // 10000 >= needed  <=>  out × (10000 − b) >= 10000 × needed (needed is whole)
    return min(BPS, (out_amount - needed) * BPS // out_amount)
