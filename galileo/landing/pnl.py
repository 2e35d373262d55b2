"""Realised P&L of a landed round trip, from what the chain says it did to the wallet.

``getTransaction``'s meta lists every account's lamports before and after, and every token
account's balance with its owner. The wallet is the fee payer (account 0). What it holds:

* **lamports**: its own, plus those of every token account it owns (wrapped SOL, and the rent
  an account holds until it is closed, so opening or closing an account is not a gain or a
  loss). Fees and tips are in here;
* **tokens**: the raw balance change of every other mint in token accounts it owns.

A round trip's realised profit in its base mint is then the base mint's change plus the
lamports' change priced in the base mint (for SOL, the lamports' change alone). What is left
of an intermediate mint, if a sell leg sold less than its buy leg bought, is not valued.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from broker.results import TransactionMeta

__all__ = ["BalanceChange", "Prices", "balance_change", "in_lamports", "realised_in_base"]

WSOL = "So11111111111111111111111111111111111111112"


class Prices(Protocol):
    """Lamports <-> a base mint's raw units (the strategy's price book)."""

    def to_base(self, mint: str, lamports: int) -> int | None: ...

    def to_lamports(self, mint: str, amount: int) -> int | None: ...


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """What one transaction did to a wallet: lamports (with its token accounts') and other mints."""

    lamports: int
    tokens: dict[str, int] = field(default_factory=dict)
    fee: int = 0
    failed: bool = False


def balance_change(meta: TransactionMeta, wallet: str) -> BalanceChange:
    """The wallet's change in ``meta`` (the wallet pays the fee: it is account 0)."""
    pre, post = meta.pre_balances, meta.post_balances

    def lamports(i: int) -> int:
        return (post[i] if i < len(post) else 0) - (pre[i] if i < len(pre) else 0)

    total = lamports(0)
    owned = {b.account_index for b in (*meta.pre_token_balances, *meta.post_token_balances) if b.owner == wallet}
    total += sum(lamports(i) for i in owned if i != 0)
    tokens: Counter[str] = Counter()
    for b in meta.post_token_balances:
        if b.owner == wallet and b.mint != WSOL:
            tokens[b.mint] += b.amount
    for b in meta.pre_token_balances:
        if b.owner == wallet and b.mint != WSOL:
            tokens[b.mint] -= b.amount
    return BalanceChange(total, {m: n for m, n in tokens.items() if n}, meta.fee, bool(meta.err))


def realised_in_base(mint: str, change: BalanceChange, prices: Prices | None) -> int | None:
    """``change`` as profit in ``mint``'s raw units (None: SOL is not priced in ``mint`` yet)."""
    if mint == WSOL:
        return change.lamports
    magnitude = prices.to_base(mint, abs(change.lamports)) if prices is not None else None  # within one raw unit
    if magnitude is None:
        return None
    in_base = magnitude if change.lamports >= 0 else -magnitude
    return change.tokens.get(mint, 0) + in_base


def in_lamports(mint: str, amount: int, prices: Prices | None) -> int:
    """``amount`` of ``mint``'s raw units in lamports, sign kept (0 when SOL is not priced in it)."""
    if mint == WSOL:
        return amount
    magnitude = (prices.to_lamports(mint, abs(amount)) if prices is not None else None) or 0
    return magnitude if amount >= 0 else -magnitude
