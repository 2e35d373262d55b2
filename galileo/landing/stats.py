"""What landing did: sends per lander and endpoint, how each send ended, and the P&L of what landed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["LanderKind", "LandingStats", "Settled"]

LanderKind = Literal["jito", "staked", "rpc"]
Settled = Literal["landed", "failed", "expired", "dropped"]
"""How a followed send ends: on chain, on chain with an error, its blockhash expired, or Jito dropped it."""


@dataclass
class LandingStats:
    dry_run_sends: int = 0
    duplicates: int = 0  # identical transactions not sent twice
    sends: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (lander, endpoint, attempt|ok|failed|shed)
    settled: Counter[tuple[str, Settled]] = field(default_factory=Counter)  # (lander, state)
    landed_profit: Counter[str] = field(default_factory=Counter)  # expected profit of what landed, by base mint

    def totals(self) -> dict[str, int]:
        def count(state: Settled) -> int:
            return sum(n for (_, s), n in self.settled.items() if s == state)

        return {
            "dry_run_sends": self.dry_run_sends,
            "duplicates": self.duplicates,
            "sends": sum(n for (_, _, kind), n in self.sends.items() if kind == "attempt"),
            "accepted": sum(n for (_, _, kind), n in self.sends.items() if kind == "ok"),
            "shed": sum(n for (_, _, kind), n in self.sends.items() if kind == "shed"),
            "landed": count("landed"),
            "failed": count("failed"),
            "expired": count("expired"),
            "dropped": count("dropped"),
        }
