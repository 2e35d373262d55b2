"""What landing did: sends per lander and endpoint, how each send ended, and the P&L of what landed.

Two P&L figures per base mint, so an operator sees both: ``landed_profit``, the expected profit
of every round trip that landed (what the quotes promised), and ``realised_profit``, what the
chain says those transactions did to the wallet (``getTransaction``), with ``realised_expected``
the expected profit of the same transactions, to compare like with like.
"""

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
    rebroadcasts: int = 0  # staked / rpc re-sends of the same signed bytes
    resends: int = 0  # bundles Jito failed or dropped, sent again (the same bytes) when their trade was found again
    sends: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (lander, endpoint, attempt|ok|failed|shed)
    settled: Counter[tuple[str, Settled]] = field(default_factory=Counter)  # (lander, state)
    landed_profit: Counter[str] = field(default_factory=Counter)  # expected profit of what landed, by base mint
    realised_profit: Counter[str] = field(default_factory=Counter)  # what the chain says they made, base units
    realised_expected: Counter[str] = field(default_factory=Counter)  # expected profit of those same ones
    realised: int = 0  # on-chain transactions whose balance changes were read
    unrealised: int = 0  # on chain, but getTransaction never told (or SOL was not priced)

    def totals(self) -> dict[str, int]:
        def count(state: Settled) -> int:
            return sum(n for (_, s), n in self.settled.items() if s == state)

        return {
            "dry_run_sends": self.dry_run_sends,
            "duplicates": self.duplicates,
            "rebroadcasts": self.rebroadcasts,
            "resends": self.resends,
            "sends": sum(n for (_, _, kind), n in self.sends.items() if kind == "attempt"),
            "accepted": sum(n for (_, _, kind), n in self.sends.items() if kind == "ok"),
            "shed": sum(n for (_, _, kind), n in self.sends.items() if kind == "shed"),
            "landed": count("landed"),
            "failed": count("failed"),
            "expired": count("expired"),
            "dropped": count("dropped"),
            "realised": self.realised,
            "unrealised": self.unrealised,
        }
