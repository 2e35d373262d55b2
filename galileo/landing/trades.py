"""Trade identity: one trade, one signed transaction per lander variant, never signed twice in its life.

A trade is identified by what it does, not by its signature: every leg's mints and amounts
(:class:`TradeKey`). The pipeline quotes the same round trip again and again, and two batches
(or two engines, or two providers whose routes pay the same) that find the same legs at the
same amounts found the same trade; signing it again (another blockhash, another tip account)
would put a second transaction on the way that can land too. The slot is left out on purpose:
the same legs and amounts a slot later do the same thing on chain.

:class:`TradeBook` holds each trade from the moment it is claimed (before its
swap-instructions are asked for):

* released at once if nothing was signed (the build failed, the quotes went stale, the fees
  left too little);
* once signed, held until its blockhash expires, whatever became of it: landed, failed, lost
  the auction, dropped, or (dry run) never sent. So no trade is signed twice within its
  blockhash's life. Found again meanwhile, a bundle of it that Jito failed or dropped may be
  sent again, the same signed bytes (:meth:`TradeBook.resendable`): the trade is worth it
  again, and a re-send is not a re-sign.

Pure: the clock and the block height are passed in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from galileo.landing.stats import LanderKind, Settled

__all__ = ["BUILD_TIMEOUT", "LegAction", "TradeBook", "TradeKey"]

BUILD_TIMEOUT = 30.0  # seconds a claim may go unsigned before it is released anyway
SWEEP_EVERY = 0.5  # seconds between sweeps: a claim is checked against what is held, not the whole book
MAX_TRADES = 20_000  # beyond this many held trades, the oldest are let go (memory stays bounded)

LegAction = tuple[str, str, int, int]
"""One leg: (input mint, output mint, amount in, amount out)."""

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class TradeKey:
    """What a round trip does: its legs in order."""

    legs: tuple[LegAction, ...]

    def __str__(self) -> str:
        return hashlib.sha256(repr(self.legs).encode()).hexdigest()[:12]


@dataclass
class _Trade(Generic[P]):
    claimed_at: float
    last_valid: int | None = None  # set once signed
    payload: P | None = None  # what was signed (the lander's to re-send)
    open: set[LanderKind] = field(default_factory=set)  # variants sent and not settled
    dead: set[LanderKind] = field(default_factory=set)  # variants Jito failed or dropped: not on chain


class TradeBook(Generic[P]):
    def __init__(self, *, build_timeout: float = BUILD_TIMEOUT, limit: int = MAX_TRADES) -> None:
        self.build_timeout = build_timeout
        self.limit = limit
        self._trades: dict[TradeKey, _Trade[P]] = {}
        self._swept_at = -float("inf")

    def __len__(self) -> int:
        return len(self._trades)

    def __contains__(self, key: object) -> bool:
        return key in self._trades

    def claim(self, key: TradeKey, now: float, height: int | None) -> bool:
        """Take ``key`` for building; False while the same trade is being built or its transactions live."""
        self.sweep(now, height)
        if key in self._trades:
            return False
        if len(self._trades) >= self.limit:
            del self._trades[next(iter(self._trades))]
        self._trades[key] = _Trade(now)
        return True

    def release(self, key: TradeKey) -> None:
        """Nothing of ``key`` was signed: it may be found and built again."""
        trade = self._trades.get(key)
        if trade is not None and trade.last_valid is None:
            del self._trades[key]

    def signed(self, key: TradeKey, last_valid: int, sent: set[LanderKind], payload: P | None = None) -> None:
        """``key``'s transactions exist (valid until block height ``last_valid``); ``sent``: the variants out."""
        trade = self._trades.get(key)
        if trade is not None:
            trade.last_valid = last_valid
            trade.payload = payload
            trade.open |= sent

    def settled(self, key: TradeKey, lander: LanderKind, state: Settled, *, on_chain: bool) -> None:
        """A variant of ``key`` settled (the trade itself is held until its blockhash expires)."""
        trade = self._trades.get(key)
        if trade is None:
            return
        trade.open.discard(lander)
        if not on_chain and state in ("failed", "dropped"):
            trade.dead.add(lander)

    def resendable(self, key: TradeKey, height: int | None) -> tuple[P, set[LanderKind]] | None:
        """What of ``key`` may be sent again, the same bytes: variants Jito failed or dropped, blockhash alive."""
        trade = self._trades.get(key)
        if trade is None or trade.payload is None or not trade.dead or trade.last_valid is None:
            return None
        if height is None or height > trade.last_valid:
            return None
        return trade.payload, set(trade.dead)

    def resent(self, key: TradeKey, landers: set[LanderKind]) -> None:
        """Those variants are out again."""
        trade = self._trades.get(key)
        if trade is not None:
            trade.dead -= landers
            trade.open |= landers

    def sweep(self, now: float, height: int | None) -> None:
        """Let go of trades whose blockhash expired, and claims never signed within ``build_timeout``."""
        if now - self._swept_at < SWEEP_EVERY:
            return
        self._swept_at = now
        gone = [
            key
            for key, t in self._trades.items()
            if (t.last_valid is None and now - t.claimed_at > self.build_timeout)
            or (t.last_valid is not None and height is not None and height > t.last_valid)
        ]
        for key in gone:
            del self._trades[key]
