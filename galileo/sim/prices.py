"""The simulated market: a handful of mints, a seeded random walk per slot, noisy per-service quotes.

Every number is a pure function of (seed, service, pair, direction, size bucket, slot), so the same
request at the same slot gets the same answer. Per-service noise (σ ≈ 3 bps) is what makes a
round trip A→B→A profitable now and then (roughly one in eight for ~1 SOL).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

__all__ = [
    "MINTS",
    "SOL",
    "USDC",
    "Mint",
    "PriceModel",
    "QuoteResult",
    "deterministic_gauss",
    "deterministic_unit",
]

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


@dataclass(frozen=True)
class Mint:
    """A token the simulator can route: starting USD price, per-slot volatility, optional anchor."""

    symbol: str
    mint: str
    decimals: int
    usd: float
    vol_bps: float
    anchor: str | None = None  # priced as anchor's price × (usd / anchor's usd) × own small walk


MINTS: dict[str, Mint] = {
    m.mint: m
    for m in (
        Mint("SOL", SOL, 9, 200.0, 1.0),
        Mint("USDC", USDC, 6, 1.0, 0.02),
        Mint("USDT", "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCE8BenwNYB", 6, 1.0, 0.02),
        Mint("JUP", "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", 6, 0.8, 1.5),
        Mint("BONK", "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", 5, 0.00002, 2.0),
        Mint("JitoSOL", "J1toso1uCk3RLmjorhTtrVwY9HJ7X8V9yYac6Y7kGCPn", 9, 240.0, 0.1, anchor=SOL),
    )
}

_NORMAL = NormalDist()
_NOISE_BPS = 3.0
_FEE_BPS = 2.2
_POOLS_PER_PAIR = 3


def deterministic_unit(seed: int, *parts: object) -> float:
    """A uniform number in (0, 1) that depends only on ``seed`` and ``parts``."""
    key = "\x1f".join(map(str, parts)).encode()
    digest = hashlib.blake2b(key, digest_size=8, key=seed.to_bytes(8, "little", signed=True)).digest()
    return (int.from_bytes(digest, "little") + 0.5) / 2.0**64


def deterministic_gauss(seed: int, *parts: object) -> float:
    """A standard normal number that depends only on ``seed`` and ``parts``."""
    return _NORMAL.inv_cdf(deterministic_unit(seed, *parts))


class QuoteResult(NamedTuple):
    """One priced swap. Amounts in raw units; ``fee_amount`` in the input mint."""

    in_amount: int
    out_amount: int
    fee_amount: int
    price_impact: float
    usd_value: float
    pool: int


def _liquidity_usd(a: Mint, b: Mint) -> float:
    if {a.symbol, b.symbol} <= {"USDC", "USDT"}:
        return 50e6
    if "BONK" in (a.symbol, b.symbol):
        return 2e6
    return 20e6


class PriceModel:
    """Mid prices per slot and quotes per service."""

    def __init__(self, seed: int, base_slot: int) -> None:
        self.seed = seed
        self.base_slot = base_slot
        self._walk: dict[str, list[float]] = {m: [0.0] for m in MINTS}
        self._noise: dict[tuple[str, str, str, int, int], float] = {}
        self._noise_slot = base_slot

    def _log_walk(self, mint: str, slot: int) -> float:
        walk = self._walk[mint]
        i = max(0, slot - self.base_slot)
        vol = MINTS[mint].vol_bps / 1e4
        while len(walk) <= i:
            walk.append(walk[-1] + vol * deterministic_gauss(self.seed, "walk", mint, self.base_slot + len(walk)))
        return walk[i]

    def mid_usd(self, mint: str, slot: int) -> float:
        """USD price of one whole token of ``mint`` at ``slot``."""
        m = MINTS[mint]
        own = m.usd * math.exp(self._log_walk(mint, slot))
        if m.anchor is None:
            return own
        anchor = MINTS[m.anchor]
        return own * self.mid_usd(anchor.mint, slot) / anchor.usd

    def _noise_bps(self, service: str, in_mint: str, out_mint: str, bucket: int, slot: int) -> float:
        if slot != self._noise_slot:  # one slot's worth of cache is all the hot path needs
            self._noise.clear()
            self._noise_slot = slot
        key = (service, in_mint, out_mint, bucket, slot)
        n = self._noise.get(key)
        if n is None:
            g = deterministic_gauss(self.seed, "noise", *key)
            n = self._noise[key] = _NOISE_BPS * max(-4.0, min(4.0, g))
        return n

    def pool_index(self, service: str, in_mint: str, out_mint: str, slot: int) -> int:
        """Which of the pair's pools a service routes through at ``slot``."""
        u = deterministic_unit(self.seed, "pool", service, in_mint, out_mint, slot)
        return int(u * _POOLS_PER_PAIR)

    def quote(
        self, service: str, in_mint: str, out_mint: str, amount: int, exact_out: bool, slot: int
    ) -> QuoteResult | None:
        """Price a swap of ``amount`` (input if ExactIn, output if ExactOut); None = no route."""
        a, b = MINTS.get(in_mint), MINTS.get(out_mint)
        if a is None or b is None or a is b or amount <= 0:
            return None
        p_in, p_out = self.mid_usd(in_mint, slot), self.mid_usd(out_mint, slot)
        known = amount / 10**b.decimals * p_out if exact_out else amount / 10**a.decimals * p_in
        liquidity = _liquidity_usd(a, b)
        impact = known / (known + liquidity)
        bucket = int(math.log2(known + 1.0))
        noise = self._noise_bps(service, in_mint, out_mint, bucket, slot)
        rate = 1.0 - (_FEE_BPS - noise) / 1e4 - impact
        if rate <= 0.5:
            return None  # deeper than the simulated pools: no route, as a real aggregator would say
        if exact_out:
            in_amount = math.ceil(amount / 10**b.decimals * p_out / p_in * 10**a.decimals / rate)
            out_amount = amount
        else:
            in_amount = amount
            out_amount = math.floor(amount / 10**a.decimals * p_in / p_out * 10**b.decimals * rate)
        if out_amount <= 0 or in_amount <= 0 or in_amount >= 2**64 or out_amount >= 2**64:
            return None
        fee = in_amount * _FEE_BPS // 10_000
        pool = self.pool_index(service, in_mint, out_mint, slot)
        return QuoteResult(in_amount, out_amount, int(fee), impact, known, pool)
