"""The simulated market: a handful of mints, a seeded random walk per slot, pools that follow it.

Each mint's USD price walks slot by slot (seeded). Each pair has three pools; a pool's price is the
mid price times its own seeded deviation (σ ≈ 4 bps), and its reserves hold the pair's liquidity,
so a swap prices as a constant-product pool with a fee: ``out = y·in' / (x + in')``,
``in' = in - in·fee_ppm / 10⁶``. The router program (:mod:`galileo.sim.router`) runs the very same
integer arithmetic on chain, so a quote executed in the slot it was made in pays exactly what it
promised, and one executed later pays what the pool gives then (or fails its slippage check).

A pool's price stands still for ``hold_slots`` slots, as a real pool's does until someone trades
on it: its reserves are set from the mid price and its deviation at the first slot of each hold
period, and each pool has its own seeded phase, so pools move at different slots and a gap between
two of them lasts until one of them moves (the mid walks on every slot). Services route through a
pool chosen per (service, pair, slot), so they quote differently. Every number is a pure function
of (seed, hold_slots, pair, pool, slot); ``hold_slots=1`` is a fresh price every slot. Two pools
that disagree by more than the fees are what makes a round trip A→B→A profitable now and then
(about one in ten for ~1 SOL), and with a hold of a few slots most such gaps outlive the two
slots a bundle waits to land.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

__all__ = [
    "FEE_PPM",
    "MAX_HOLD_SLOTS",
    "MINTS",
    "POOLS_PER_PAIR",
    "SOL",
    "USDC",
    "Mint",
    "PoolState",
    "PriceModel",
    "QuoteResult",
    "deterministic_gauss",
    "deterministic_unit",
    "exact_in_out",
    "exact_out_in",
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
_POOL_NOISE_BPS = 4.0
_RECENT = 2048  # walk steps kept (~14 min of 400 ms slots); older ones are walked again
MAX_HOLD_SLOTS = 1000  # a held price is at most this old: its walk step is still among the recent ones
_CHECKPOINT = 1024  # one walk value kept per this many steps
FEE_PPM = 220  # 2.2 bps per swap
POOLS_PER_PAIR = 3
_PPM = 1_000_000


def deterministic_unit(seed: int, *parts: object) -> float:
    """A uniform number in (0, 1) that depends only on ``seed`` and ``parts``."""
    key = "\x1f".join(map(str, parts)).encode()
    digest = hashlib.blake2b(key, digest_size=8, key=seed.to_bytes(8, "little", signed=True)).digest()
    return (int.from_bytes(digest, "little") + 0.5) / 2.0**64


def deterministic_gauss(seed: int, *parts: object) -> float:
    """A standard normal number that depends only on ``seed`` and ``parts``."""
    return _NORMAL.inv_cdf(deterministic_unit(seed, *parts))


def exact_in_out(x: int, y: int, fee_ppm: int, amount: int) -> int:
    """What a pool with reserves (x in, y out) pays for ``amount`` in: the router's formula."""
    after_fee = amount - amount * fee_ppm // _PPM
    return y * after_fee // (x + after_fee)


def exact_out_in(x: int, y: int, fee_ppm: int, out: int) -> int | None:
    """The least input for which :func:`exact_in_out` pays at least ``out`` (None: out of reach)."""
    if out >= y:
        return None
    need = -(-x * out // (y - out))  # in' with y·in'/(x+in') >= out
    amount = -(-need * _PPM // (_PPM - fee_ppm))
    while exact_in_out(x, y, fee_ppm, amount) < out:  # the fee's floor can cost a unit
        amount += 1
    return amount


class QuoteResult(NamedTuple):
    """One priced swap. Amounts in raw units; ``fee_amount`` in the input mint."""

    in_amount: int
    out_amount: int
    fee_amount: int
    price_impact: float
    usd_value: float
    pool: int


class PoolState(NamedTuple):
    """A pool at one slot: its mints in address order and their reserves (raw units)."""

    mint_a: str
    mint_b: str
    reserve_a: int
    reserve_b: int


def _liquidity_usd(a: Mint, b: Mint) -> float:
    if {a.symbol, b.symbol} <= {"USDC", "USDT"}:
        return 50e6
    if "BONK" in (a.symbol, b.symbol):
        return 2e6
    return 20e6


class _Walk:
    """One mint's log-price walk, a seeded step per slot, in bounded memory.

    It keeps the latest ``_RECENT`` to ``2 × _RECENT`` steps, and a checkpoint every
    ``_CHECKPOINT`` steps (one number per seven minutes of 400 ms slots); an older step is
    walked again from its checkpoint, which gives the very same number.
    """

    def __init__(self, seed: int, mint: str, base_slot: int) -> None:
        self.seed, self.mint, self.base_slot = seed, mint, base_slot
        self.vol = MINTS[mint].vol_bps / 1e4
        self.checkpoints = [0.0]  # the walk at step k * _CHECKPOINT
        self.start = 0  # step of recent[0]
        self.recent = [0.0]

    def _step(self, value: float, i: int) -> float:
        """The walk at step ``i`` from its value at step ``i - 1``."""
        return value + self.vol * deterministic_gauss(self.seed, "walk", self.mint, self.base_slot + i)

    def at(self, i: int) -> float:
        """The walk at step ``i`` (>= 0)."""
        head = self.start + len(self.recent) - 1
        if i <= head:
            if i >= self.start:
                return self.recent[i - self.start]
            k = i // _CHECKPOINT
            value = self.checkpoints[k]
            for j in range(k * _CHECKPOINT + 1, i + 1):
                value = self._step(value, j)
            return value
        value = self.recent[-1]
        for j in range(head + 1, i + 1):
            value = self._step(value, j)
            self.recent.append(value)
            if j % _CHECKPOINT == 0:
                self.checkpoints.append(value)
        if len(self.recent) > 2 * _RECENT:
            del self.recent[:-_RECENT]
            self.start = i - len(self.recent) + 1
        return value


class PriceModel:
    """Mid prices per slot, pool states per slot (held ``hold_slots`` slots), and quotes against them."""

    def __init__(self, seed: int, base_slot: int, hold_slots: int = 1) -> None:
        if not 1 <= hold_slots <= MAX_HOLD_SLOTS:
            raise ValueError(f"hold_slots: {hold_slots} is not in 1..{MAX_HOLD_SLOTS}")
        self.seed = seed
        self.base_slot = base_slot
        self.hold_slots = hold_slots
        self._walk: dict[str, _Walk] = {m: _Walk(seed, m, base_slot) for m in MINTS}
        self._pools: dict[tuple[str, str, int], PoolState] = {}
        self._pools_slot = base_slot

    def _log_walk(self, mint: str, slot: int) -> float:
        return self._walk[mint].at(max(0, slot - self.base_slot))

    def mid_usd(self, mint: str, slot: int) -> float:
        """USD price of one whole token of ``mint`` at ``slot``."""
        m = MINTS[mint]
        own = m.usd * math.exp(self._log_walk(mint, slot))
        if m.anchor is None:
            return own
        anchor = MINTS[m.anchor]
        return own * self.mid_usd(anchor.mint, slot) / anchor.usd

    def held_slot(self, slot: int, *key: object) -> int:
        """The first slot of the hold period ``slot`` falls in, for the pool ``key``.

        Periods are ``hold_slots`` long and each pool has its own seeded phase, so pools move at
        different slots; with ``hold_slots=1`` it is ``slot`` itself.
        """
        if self.hold_slots == 1:
            return slot
        phase = int(deterministic_unit(self.seed, "hold", *key) * self.hold_slots)
        return slot - (slot + phase) % self.hold_slots

    def pool_state(self, mint_x: str, mint_y: str, index: int, slot: int) -> PoolState:
        """Pool ``index`` of the pair at ``slot`` (either mint order)."""
        a, b = sorted((mint_x, mint_y))
        if slot != self._pools_slot:  # one slot's worth of cache is all the hot path needs
            self._pools.clear()
            self._pools_slot = slot
        key = (a, b, index)
        state = self._pools.get(key)
        if state is None:
            ma, mb = MINTS[a], MINTS[b]
            liquidity = _liquidity_usd(ma, mb)
            held = self.held_slot(slot, "pool", a, b, index)  # the pool's price as set then
            g = max(-4.0, min(4.0, deterministic_gauss(self.seed, "pool", a, b, index, held)))
            deviation = math.exp(_POOL_NOISE_BPS * g / 1e4)
            reserve_a = int(liquidity / self.mid_usd(a, held) * 10**ma.decimals)
            reserve_b = int(liquidity / self.mid_usd(b, held) * 10**mb.decimals * deviation)
            state = self._pools[key] = PoolState(a, b, reserve_a, reserve_b)
        return state

    def reserves(self, in_mint: str, out_mint: str, index: int, slot: int) -> tuple[int, int]:
        """(input reserve, output reserve) of pool ``index`` for a swap in_mint → out_mint."""
        state = self.pool_state(in_mint, out_mint, index, slot)
        if in_mint == state.mint_a:
            return state.reserve_a, state.reserve_b
        return state.reserve_b, state.reserve_a

    def pool_index(self, service: str, in_mint: str, out_mint: str, slot: int) -> int:
        """Which of the pair's pools a service routes through at ``slot``.

        Chosen afresh every slot, not held with the prices: a transaction names the pool its quote
        used, so routing never changes what a bundle pays, and a fresh choice lets a service meet
        a held gap at any slot of its life instead of in the few route periods that happen to span it.
        """
        u = deterministic_unit(self.seed, "pool", service, in_mint, out_mint, slot)
        return int(u * POOLS_PER_PAIR)

    def quote(
        self,
        service: str,
        in_mint: str,
        out_mint: str,
        amount: int,
        exact_out: bool,
        slot: int,
        pool: int | None = None,
    ) -> QuoteResult | None:
        """Price a swap of ``amount`` (input if ExactIn, output if ExactOut) through ``pool`` (the
        service's own choice when None) at ``slot``; None = no route."""
        a, b = MINTS.get(in_mint), MINTS.get(out_mint)
        if a is None or b is None or a is b or amount <= 0 or amount >= 2**64:
            return None
        index = self.pool_index(service, in_mint, out_mint, slot) if pool is None else pool
        x, y = self.reserves(in_mint, out_mint, index, slot)
        if exact_out:
            found = exact_out_in(x, y, FEE_PPM, amount)
            if found is None:
                return None
            in_amount, out_amount = found, amount
        else:
            in_amount, out_amount = amount, exact_in_out(x, y, FEE_PPM, amount)
        after_fee = in_amount - in_amount * FEE_PPM // _PPM
        impact = after_fee / (x + after_fee)
        if impact >= 0.5 or out_amount <= 0 or in_amount >= 2**64:
            return None  # deeper than the simulated pools: no route, as a real aggregator would say
        known = in_amount / 10**a.decimals * self.mid_usd(in_mint, slot)
        return QuoteResult(in_amount, out_amount, in_amount * FEE_PPM // _PPM, impact, known, index)
