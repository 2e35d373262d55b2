"""Fees that follow the market: the Jito tip from Jito's tip floor, the priority fee from recent fees.

Both are capped at a share of the round trip's *gross* profit (its profit before landing costs),
and both feed the profit evaluation before anything is signed:

* **Tip** (:func:`tip_for`): the floor's ``lander.tip.percentile`` of recently landed tips,
  else ``lander.tip_lamports``; at most ``tip.max_profit_share`` of the gross profit; at least
  1000 lamports (Jito's minimum). The floor is read every ``tip.refresh_s`` through the farm, in
  the background: no trade waits for it.
* **Priority fee** (:func:`cu_price_for`): the ``priority_fee.percentile`` of the recent slots'
  ``getRecentPrioritizationFees`` over the transaction's writable accounts, else
  ``lander.compute_unit_price_micro_lamports``; at most ``priority_fee.max_micro_lamports``
  per compute unit, and at most ``priority_fee.max_profit_share`` of the gross profit for the
  whole fee. Each set of writable accounts is read at most once per ``refresh_s`` (one read in
  flight per set, the last ``MAX_FEE_SETS`` sets kept); a read that fails falls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from broker.results import PrioritizationFees, TipFloor
from broker.solana import Instruction
from galileo.client import FarmClient
from galileo.config.sections import LanderConfig
from galileo.tx import MIN_JITO_TIP_LAMPORTS
from galileo.upstreams import Upstreams

__all__ = ["MAX_FEE_ACCOUNTS", "FeeMarket", "Fees", "cu_price_for", "percentile", "tip_for", "writable_accounts"]

log = logging.getLogger("galileo.lander")

MAX_FEE_ACCOUNTS = 128  # getRecentPrioritizationFees takes at most 128 accounts
MAX_FEE_SETS = 512  # sets of writable accounts whose fees are remembered
FLOOR_STALE_AFTER = 6  # refresh periods without a good read before the floor is not trusted


@dataclass(frozen=True, slots=True)
class Fees:
    """What one round trip pays to land: ``tip`` (lamports, the Jito variant) and
    ``cu_price`` (micro-lamports per compute unit, the staked / rpc variant)."""

    tip: int
    cu_price: int


def percentile(values: Sequence[int], pct: int) -> int:
    """The nearest-rank ``pct``-th percentile of ``values`` (0: the least, 100: the most)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _share(gross_lamports: int, share: float) -> int:
    return max(0, math.floor(gross_lamports * share))


def tip_for(cfg: LanderConfig, floor: TipFloor | None, gross_lamports: int) -> int:
    """The Jito tip for a round trip whose profit before landing costs is ``gross_lamports``."""
    pct = cfg.tip.percentile
    wanted = cfg.tip_lamports if floor is None or pct is None else int(getattr(floor, f"p{pct}"))
    capped = min(wanted, _share(gross_lamports, cfg.tip.max_profit_share))
    return max(MIN_JITO_TIP_LAMPORTS, capped)


def cu_price_for(cfg: LanderConfig, recent: Sequence[int] | None, gross_lamports: int, cu_limit: int) -> int:
    """The compute-unit price (micro-lamports) of a round trip of ``cu_limit`` units."""
    pf = cfg.priority_fee
    if recent and pf.percentile is not None:
        price = percentile(recent, pf.percentile)
    else:
        price = cfg.compute_unit_price_micro_lamports
    price = min(price, pf.max_micro_lamports)
    if cu_limit > 0:  # the whole fee, cu_limit x price / 1e6 rounded up, within the share
        price = min(price, _share(gross_lamports, pf.max_profit_share) * 1_000_000 // cu_limit)
    return max(0, price)


def writable_accounts(instructions: Iterable[Instruction], exclude: Iterable[str] = ()) -> tuple[str, ...]:
    """The accounts ``instructions`` write, sorted, without ``exclude`` (the wallet: nobody else bids on it)."""
    skip = set(exclude)
    found = {m.pubkey for ix in instructions for m in ix.accounts if m.is_writable and m.pubkey not in skip}
    return tuple(sorted(found))[:MAX_FEE_ACCOUNTS]


@dataclass
class _Recent:
    read_at: float
    fees: list[int] | None  # None: the read failed; the fallback applies until the next read


class FeeMarket:
    """The tip floor and recent prioritization fees, read through the farm and kept fresh."""

    def __init__(
        self,
        farm: FarmClient,
        upstreams: Upstreams,
        cfg: LanderConfig,
        *,
        jito: bool,
        rpc: bool,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.farm = farm
        self.upstreams = upstreams
        self.cfg = cfg
        self.jito = jito
        self.rpc = rpc
        self._clock = clock
        self._floor: TipFloor | None = None
        self._floor_at = -math.inf
        self._recent: OrderedDict[tuple[str, ...], _Recent] = OrderedDict()
        self._reading: dict[tuple[str, ...], asyncio.Future[None]] = {}
        self._last_fees: list[int] | None = None  # the newest good read of any set: for screening
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def clock(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    # --- the tip floor ----------------------------------------------------------------

    def start(self) -> None:
        """Read the tip floor now and every ``tip.refresh_s`` (when Jito lands and a percentile is set)."""
        if self.jito and self.cfg.tip.percentile is not None and self._task is None:
            self._task = asyncio.create_task(self._refresh_floor_forever(), name="tip-floor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _refresh_floor_forever(self) -> None:
        while True:
            await self.refresh_floor()
            await asyncio.sleep(self.cfg.tip.refresh_s)

    async def refresh_floor(self) -> None:
        """One read of the tip floor."""
        out = await self.farm.run(self.upstreams.tip_floor())
        if out.ok and isinstance(out.value, TipFloor):
            self._floor, self._floor_at = out.value, self.clock()
            self._warned = False
        elif not self._warned:  # once per outage: the fallback tip is in the summary's costs anyway
            self._warned = True
            log.warning(
                "tip floor: %s %s; tipping lander.tip_lamports (%d) until it answers",
                out.result,
                out.error,
                self.cfg.tip_lamports,
            )

    @property
    def floor(self) -> TipFloor | None:
        """The tip floor, unless it has not been read for ``FLOOR_STALE_AFTER`` refresh periods."""
        if self.clock() - self._floor_at > FLOOR_STALE_AFTER * self.cfg.tip.refresh_s:
            return None
        return self._floor

    def tip(self, gross_lamports: int) -> int:
        """The tip for a round trip of ``gross_lamports`` profit before landing costs (0 without Jito)."""
        return tip_for(self.cfg, self.floor, gross_lamports) if self.jito else 0

    # --- priority fees ----------------------------------------------------------------

    async def recent_fees(self, accounts: tuple[str, ...]) -> list[int] | None:
        """The recent slots' fees on ``accounts``, read at most once per ``refresh_s`` (None: not known)."""
        if self.cfg.priority_fee.percentile is None:
            return None
        now = self.clock()
        known = self._recent.get(accounts)
        if known is not None and now - known.read_at < self.cfg.priority_fee.refresh_s:
            return known.fees
        reading = self._reading.get(accounts)
        if reading is None:
            reading = asyncio.ensure_future(self._read(accounts))
            self._reading[accounts] = reading
            reading.add_done_callback(lambda _: self._reading.pop(accounts, None))
        await asyncio.shield(reading)
        got = self._recent.get(accounts)
        return got.fees if got is not None else None

    async def _read(self, accounts: tuple[str, ...]) -> None:
        out = await self.farm.run(self.upstreams.prioritization_fees(list(accounts)))
        fees = out.value.fees if out.ok and isinstance(out.value, PrioritizationFees) and out.value.fees else None
        if fees is not None:
            self._last_fees = fees
        self._recent[accounts] = _Recent(self.clock(), fees)
        self._recent.move_to_end(accounts)
        while len(self._recent) > MAX_FEE_SETS:
            self._recent.popitem(last=False)

    async def cu_price(self, accounts: tuple[str, ...], gross_lamports: int, cu_limit: int) -> int:
        """The compute-unit price for a round trip writing ``accounts`` (0 without staked / rpc landing)."""
        if not self.rpc:
            return 0
        return cu_price_for(self.cfg, await self.recent_fees(accounts), gross_lamports, cu_limit)

    async def fees(self, accounts: tuple[str, ...], gross_lamports: int, cu_limit: int) -> Fees:
        """Both fees of a round trip: what it will be signed with."""
        return Fees(self.tip(gross_lamports), await self.cu_price(accounts, gross_lamports, cu_limit))

    def estimate(self, gross_lamports: int, cu_limit: int) -> Fees:
        """Both fees without reading anything: to screen quotes before building (the newest fees read stand in)."""
        price = cu_price_for(self.cfg, self._last_fees, gross_lamports, cu_limit) if self.rpc else 0
        return Fees(self.tip(gross_lamports), price)
