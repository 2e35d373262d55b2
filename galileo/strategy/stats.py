"""What a round-trip engine did: batches, quotes, opportunities and profit per mint, sends and lands.

``summary_line`` gives the operator one line per interval (a minute by default), like the
original's console summary: batches, opportunities per mint, sends, lands, the expected P&L
of what landed, and mean buy / sell quote latency. Per-event lines are at debug.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from galileo.landing import LandingStats

__all__ = ["BatchRecord", "Side", "StrategyStats", "amount", "short_mint"]

Side = Literal["buy", "sell"]

_NAMES = {
    "So11111111111111111111111111111111111111112": ("SOL", 9),
    "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v": ("USDC", 6),
    "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCE8BenwNYB": ("USDT", 6),
    "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN": ("JUP", 6),
    "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263": ("BONK", 5),
    "J1toso1uCk3RLmjorhTtrVwY9HJ7X8V9yYac6Y7kGCPn": ("JitoSOL", 9),
}


def short_mint(mint: str) -> str:
    known = _NAMES.get(mint)
    return known[0] if known else f"{mint[:4]}..{mint[-4:]}"


def amount(mint: str, raw: int) -> str:
    """``raw`` units of ``mint`` as a person reads them: ``0.000209 SOL``; raw units when the decimals are unknown."""
    known = _NAMES.get(mint)
    if known is None:
        return f"{raw} raw {short_mint(mint)}"
    name, decimals = known
    return f"{raw / 10**decimals:+.{decimals}f}".rstrip("0").rstrip(".") + f" {name}"


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
    batches_completed: int = 0  # a buy and a sell leg quoted
    batches_failed: int = 0
    quotes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (side:provider, result)
    pairs: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (buy, sell, quoted|profitable|sent)
    opportunities: Counter[str] = field(default_factory=Counter)  # by base mint
    profit: Counter[str] = field(default_factory=Counter)  # expected profit by base mint, base units
    built: int = 0
    build_failures: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # opportunities not landed, by reason
    stale: Counter[tuple[str, str]] = field(default_factory=Counter)  # (provider, reason) of stale quotes
    buy_latency: list[float] = field(default_factory=list)
    sell_latency: list[float] = field(default_factory=list)
    sell_on_buy_ip: int = 0
    sell_moved: int = 0
    recent: deque[BatchRecord] = field(default_factory=lambda: deque(maxlen=2000))
    landing: LandingStats = field(default_factory=LandingStats)

    def quote_latency(self, side: Side, seconds: float) -> None:
        bucket = self.buy_latency if side == "buy" else self.sell_latency
        bucket.append(seconds)
        if len(bucket) > 10_000:
            del bucket[:5_000]

    def totals(self) -> dict[str, Any]:
        return {
            "batches_started": self.batches_started,
            "batches_completed": self.batches_completed,
            "batches_failed": self.batches_failed,
            "quotes": {f"{leg}:{res}": n for (leg, res), n in sorted(self.quotes.items())},
            "opportunities": {short_mint(m): n for m, n in self.opportunities.items()},
            "profit": {short_mint(m): n for m, n in self.profit.items()},
            "built": self.built,
            "build_failures": dict(self.build_failures.most_common()),  # why an opportunity was not sent
            "skipped": dict(self.skipped),
            **self.landing.totals(),
            "landed_profit": dict(self.landing.landed_profit),  # by mint address, base units
            "realised_profit": dict(self.landing.realised_profit),  # what the chain says, base units
            "realised_expected": dict(self.landing.realised_expected),  # expected profit of those same ones
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

        def pnl(key: str) -> str:
            was = prev.get(key, {})
            return ", ".join(amount(m, p - was.get(m, 0)) for m, p in sorted(now[key].items())) or "0"

        buy = 1000 * sum(self.buy_latency[-500:]) / max(1, len(self.buy_latency[-500:]))
        sell = 1000 * sum(self.sell_latency[-500:]) / max(1, len(self.sell_latency[-500:]))
        return (
            f"batches: {delta('batches_completed')}/{delta('batches_started')} | opportunities: {opp} | "
            f"sends: {delta('accepted')}/{delta('sends')} (shed {delta('shed')}, dry run {delta('dry_run_sends')}) | "
            f"landed: {delta('landed')} (expired {delta('expired')}, dropped {delta('dropped')}) | "
            f"P&L expected of landed: {pnl('landed_profit')}, realised on chain: {pnl('realised_profit')} "
            f"(expected {pnl('realised_expected')}) | quote latency buy/sell: {buy:.0f}ms/{sell:.0f}ms"
        )
