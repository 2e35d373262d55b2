"""The chain's part of /sim/stats: what ran, what failed and why, and each wallet's realised P&L.

``recent_failures`` lists the last transactions that ran and failed (newest last): the bundle
id or signature, the slot, the error as the RPC says it and as labelled, and the last log lines.

Realised P&L is read from balances: a wallet's value now (lamports, plus each simulated mint's
associated token account valued at the current slot's mid price, rent included) minus what the
simulator credited it (airdrops and ``fund_lamports``). Fees, tips, rent still locked in open
accounts and every swap's result are all in it.
"""

from __future__ import annotations

from typing import Any

from galileo.sim.state import SimState
from galileo.sim.vm import LAMPORTS_PER_SOL

__all__ = ["WALLETS_LISTED", "chain_stats"]

WALLETS_LISTED = 100  # the wallets with the largest |P&L|; the totals cover all of them


def chain_stats(state: SimState) -> dict[str, Any]:
    """The ``chain`` object of /sim/stats (call after ``state.settle()``)."""
    ledger = state.ledger
    out: dict[str, Any] = {
        "execution": state.config.execution,
        "executed_transactions": ledger.executed,
        "landed": dict(ledger.landed),
        "failed": dict(ledger.failed),
        "failures_by_error": dict(ledger.errors.most_common()),
        "recent_failures": list(ledger.recent_failures),
    }
    if not state.config.execution:
        return out
    vm = state.vm
    rows = []
    for wallet, record in vm.wallets.items():
        value, balances = vm.wallet_value(wallet)
        pnl = value - record.deposited
        rows.append((wallet, record.deposited, value, pnl, balances))
    rows.sort(key=lambda r: abs(r[3]), reverse=True)
    out["pnl"] = {
        "wallets": len(rows),
        "total_lamports": sum(r[3] for r in rows),
        "total_sol": sum(r[3] for r in rows) / LAMPORTS_PER_SOL,
        "by_wallet": {
            str(wallet): {
                "deposited_lamports": deposited,
                "value_lamports": value,
                "pnl_lamports": pnl,
                "pnl_sol": pnl / LAMPORTS_PER_SOL,
                "balances": balances,
            }
            for wallet, deposited, value, pnl, balances in rows[:WALLETS_LISTED]
        },
    }
    return out
