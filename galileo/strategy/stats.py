"""What a strategy did: batches, quotes, opportunities and profit per mint, sends and lands.

``summary_line`` gives the operator one line per interval, like the original's console
summary: opportunities per mint, mean buy / sell quote latency, mean profit per mint, batches,
sends and lands.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BatchRecord", "StrategyStats", "short_mint"]

_NAMES = {
    "So11111111111111111111111111111111111111112": "SOL",
    "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v": "USDC",
    "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCE8BenwNYB": "USDT",
    "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN": "JUP",
    "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263": "BONK",
    "J1toso1uCk3RLmjorhTtrVwY9HJ7X8V9yYac6Y7kGCPn": "JitoSOL",
}


def short_mint(mint: str) -> str:
    return _NAMES.get(mint, f"{mint[:4]}..{mint[-4:]}")


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """Where one completed batch ran: enough to check it against what an upstream saw."""

    batch_id: int
    base_mint: str
    intermediate_mint: str
    size: int
    buy_ip: str
    sell_ip: str
    buy_out: int
    sell_out: int


@dataclass
class StrategyStats:
    batches_started: int = 0
    batches_completed: int = 0  # both legs quoted
    batches_failed: int = 0
    quotes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (leg, result)
    opportunities: Counter[str] = field(default_factory=Counter)  # by base mint
    profit: Counter[str] = field(default_factory=Counter)  # expected profit by base mint, base units
    built: int = 0
    build_failures: Counter[str] = field(default_factory=Counter)
    dry_run_sends: int = 0
    duplicates: int = 0  # identical transactions not sent twice
    sends: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (lander, endpoint, attempt|ok|failed)
    settled_: Counter[tuple[str, str]] = field(default_factory=Counter)  # (lander, landed|failed|expired)
    buy_latency: list[float] = field(default_factory=list)
    sell_latency: list[float] = field(default_factory=list)
    sell_on_buy_ip: int = 0
    sell_moved: int = 0
    recent: deque[BatchRecord] = field(default_factory=lambda: deque(maxlen=2000))

    def quote_latency(self, leg: str, seconds: float) -> None:
        bucket = self.buy_latency if leg == "buy" else self.sell_latency
        bucket.append(seconds)
        if len(bucket) > 10_000:
            del bucket[:5_000]

    def lander_attempt(self, lander: str, endpoint: str) -> None:
        self.sends[(lander, endpoint, "attempt")] += 1

    def lander_success(self, lander: str, endpoint: str) -> None:
        self.sends[(lander, endpoint, "ok")] += 1

    def lander_failure(self, lander: str, endpoint: str) -> None:
        self.sends[(lander, endpoint, "failed")] += 1

    def settled(self, lander: str, endpoint: str, state: str) -> None:
        self.settled_[(lander, state)] += 1

    def totals(self) -> dict[str, Any]:
        sent = sum(n for (_, _, kind), n in self.sends.items() if kind == "attempt")
        accepted = sum(n for (_, _, kind), n in self.sends.items() if kind == "ok")
        landed = sum(n for (_, state), n in self.settled_.items() if state == "landed")
        return {
            "batches_started": self.batches_started,
            "batches_completed": self.batches_completed,
            "batches_failed": self.batches_failed,
            "quotes": {f"{leg}:{res}": n for (leg, res), n in sorted(self.quotes.items())},
            "opportunities": {short_mint(m): n for m, n in self.opportunities.items()},
            "profit": {short_mint(m): n for m, n in self.profit.items()},
            "built": self.built,
            "dry_run_sends": self.dry_run_sends,
            "duplicates": self.duplicates,
            "sends": sent,
            "accepted": accepted,
            "landed": landed,
            "failed": sum(n for (_, state), n in self.settled_.items() if state == "failed"),
            "expired": sum(n for (_, state), n in self.settled_.items() if state == "expired"),
            "sell_on_buy_ip": self.sell_on_buy_ip,
            "sell_moved": self.sell_moved,
        }

    def summary_line(self, previous: dict[str, Any] | None = None) -> str:
        """One line for the interval since ``previous`` (a :meth:`totals` snapshot)."""
        now = self.totals()
        prev = previous or {}

        def delta(key: str) -> int:
            return int(now[key]) - int(prev.get(key, 0))

        opp = (
            ",".join(
                f"{n - prev.get('opportunities', {}).get(m, 0)}/{m}" for m, n in sorted(now["opportunities"].items())
            )
            or "0"
        )
        profit = (
            ",".join(
                f"{(p - prev.get('profit', {}).get(m, 0)) // max(1, n - prev.get('opportunities', {}).get(m, 0))}/{m}"
                for m, p in sorted(now["profit"].items())
                for n in [now["opportunities"].get(m, 0)]
            )
            or "-"
        )
        buy = 1000 * sum(self.buy_latency[-500:]) / max(1, len(self.buy_latency[-500:]))
        sell = 1000 * sum(self.sell_latency[-500:]) / max(1, len(self.sell_latency[-500:]))
        return (
            f"opportunities: {opp} | quote latency buy/sell: {buy:.0f}ms/{sell:.0f}ms | mean profit: {profit} | "
            f"batches: {delta('batches_completed')}/{delta('batches_started')} | "
            f"sends: {delta('accepted')}/{delta('sends')} (dry run {delta('dry_run_sends')}) | "
            f"landed: {delta('landed')}"
        )
