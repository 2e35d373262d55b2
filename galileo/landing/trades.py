"""Trade identity: one trade, one signed transaction per lander variant, never two in flight.

A trade is identified by what it does, not by its signature: every leg's provider, mints and
amounts (:class:`TradeKey`). The pipeline quotes the same round trip again and again, and two
batches that find the same legs at the same amounts found the same trade; signing it again
(another blockhash, another tip account) would put a second transaction on the way that can
land too. The slot is left out on purpose: the same legs and amounts a slot later do the
same thing on chain.

:class:`TradeBook` holds each trade from the moment it is claimed (before its
swap-instructions are asked for) until nothing of it can land any more:

* released at once if nothing was signed (the build failed, the quotes went stale);
* once signed, kept until every variant that was sent is settled on chain (landed, or failed
  and paid for) or its blockhash expired. A bundle Jito dropped is not settled: its bytes
  stay valid, so the trade is not signed again until its blockhash expires. In dry run nothing
  is sent, so a signed trade is held until its blockhash expires, as it would be live.

Pure: the clock and the block height are passed in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from galileo.landing.stats import LanderKind, Settled

__all__ = ["BUILD_TIMEOUT", "LegAction", "TradeBook", "TradeKey"]

BUILD_TIMEOUT = 30.0  # seconds a claim may go unsigned before it is released anyway
SWEEP_EVERY = 0.5  # seconds between sweeps: a claim is checked against what is held, not the whole book
MAX_TRADES = 20_000  # beyond this many held trades, the oldest are let go (memory stays bounded)

LegAction = tuple[str, str, str, int, int]
"""One leg: (provider, input mint, output mint, amount in, amount out)."""


@dataclass(frozen=True, slots=True)
class TradeKey:
    """What a round trip does: its legs in order."""

    legs: tuple[LegAction, ...]

    def __str__(self) -> str:
        return hashlib.sha256(repr(self.legs).encode()).hexdigest()[:12]


@dataclass
class _Trade:
    claimed_at: float
    last_valid: int | None = None  # set once signed
    open: set[LanderKind] = field(default_factory=set)  # variants sent and not settled
    on_chain: bool = False  # a variant landed or failed on chain


class TradeBook:
    def __init__(self, *, build_timeout: float = BUILD_TIMEOUT, limit: int = MAX_TRADES) -> None:
        self.build_timeout = build_timeout
        self.limit = limit
        self._trades: dict[TradeKey, _Trade] = {}
        self._swept_at = -float("inf")

    def __len__(self) -> int:
        return len(self._trades)

    def __contains__(self, key: object) -> bool:
        return key in self._trades

    def claim(self, key: TradeKey, now: float, height: int | None) -> bool:
        """Take ``key`` for building; False when the same trade is already being built or in flight."""
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

    def signed(self, key: TradeKey, last_valid: int, sent: set[LanderKind]) -> None:
        """``key``'s transactions exist (valid until block height ``last_valid``); ``sent``: the variants out."""
        trade = self._trades.get(key)
        if trade is not None:
            trade.last_valid = last_valid
            trade.open |= sent

    def settled(self, key: TradeKey, lander: LanderKind, state: Settled) -> None:
        """A variant of ``key`` settled; the trade is let go once nothing of it can land."""
        trade = self._trades.get(key)
        if trade is None:
            return
        if state == "expired":  # its blockhash is gone: nothing of this trade can land
            del self._trades[key]
            return
        if state in ("landed", "failed"):
            trade.open.discard(lander)
            trade.on_chain = True
        if trade.on_chain and not trade.open:
            del self._trades[key]

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
