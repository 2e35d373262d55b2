"""Following sends until they land, fail, expire or are dropped: a few batched polls a second.

Every accepted send is one pending entry (a bundle sent to three regions is one entry). Once
a second, while anything is pending:

1. **On chain?** One ``getSignatureStatuses`` for up to 256 pending transactions (a bundle's
   one transaction included): landed, or landed with an error (failed). This costs the Jito
   budget nothing: it goes to RPC, and one call follows hundreds of sends.
2. **Expired?** Its blockhash is past its last valid block height, or ``follow_timeout_s``
   has passed.
3. **Dropped?** A bundle not on chain ``DROP_CHECK_AFTER`` seconds after it was sent is asked
   about with ``getInflightBundleStatuses``, at most 5 ids per call, hashed over the IPs like
   sends are: ``Pending`` goes on, ``Landed`` / ``Failed`` settle it, ``Invalid`` (unknown to
   that region) moves the question to the next region that accepted it, and a bundle no
   region knows is dropped (no more polls spent on it).
4. **Re-broadcast.** A ``staked`` / ``rpc`` transaction not yet on chain is sent again, the same
   signed bytes to the same endpoints (hashed to the same IPs), every ``lander.rebroadcast_s``
   until it lands or its blockhash expires: RPC sends go out with ``maxRetries: 0``, so nothing
   else would. A signature lands at most once, so a re-send can never double a trade.

Whatever is on chain (landed, or an RPC transaction that failed and paid its fee) is then read
back with ``getTransaction`` to book its realised P&L (:mod:`galileo.landing.pnl`), retried once
a second while the node does not know it yet. Each settled send also settles its trade in the
:class:`~galileo.landing.trades.TradeBook`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from broker.results import BundleStatuses, SignatureStatuses, TransactionMeta
from galileo.chain import ChainState
from galileo.client import NULL_METRICS, FarmClient, StrategyMetrics
from galileo.landing.pnl import Prices, balance_change, in_lamports, realised_in_base
from galileo.landing.stats import LanderKind, LandingStats, Settled
from galileo.landing.trades import TradeBook, TradeKey
from galileo.upstreams import MAX_BUNDLE_IDS, MAX_SIGNATURES, Endpoint, Upstreams

__all__ = ["Follower", "Pending"]

log = logging.getLogger("galileo.lander")

FOLLOW_EVERY = 1.0  # seconds between polls; a block is ~0.4 s, so a landed send is seen within ~3 blocks
DROP_CHECK_AFTER = 2.0  # a bundle not on chain after this long is asked about at Jito
DROP_CHECK_EVERY = 2.0  # and again at most this often
REALISE_TRIES = 10  # getTransaction asks, a second apart: a node answers once the slot is confirmed
REALISE_EVERY = 1.0

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


@dataclass
class Pending:
    lander: LanderKind
    ident: str  # bundle id or signature
    signature: str  # the transaction's: how RPC sees it land
    endpoints: list[Endpoint]  # that accepted it, in order
    last_valid: int
    mint: str
    profit: int
    sent_at: float
    wire: bytes = b""  # the signed bytes, for re-broadcasts
    payer: str = ""  # the wallet: whose balance changes are the P&L
    trade: TradeKey | None = None
    checked_at: float = float("-inf")  # the last getInflightBundleStatuses
    resent_at: float = float("-inf")  # the last re-broadcast (or the send)
    ask: list[Endpoint] = field(default_factory=list)  # regions not yet saying they do not know it


class Follower:
    def __init__(
        self,
        farm: FarmClient,
        upstreams: Upstreams,
        chain: ChainState,
        stats: LandingStats,
        *,
        timeout: float,
        rebroadcast: float = 0.0,
        trades: TradeBook[Any] | None = None,
        prices: Prices | None = None,
        strategy: str = "",
        metrics: StrategyMetrics = NULL_METRICS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.farm = farm
        self.upstreams = upstreams
        self.chain = chain
        self.stats = stats
        self.timeout = timeout
        self.rebroadcast = rebroadcast
        self.trades = trades
        self.prices = prices
        self.strategy = strategy
        self.metrics = metrics
        self._clock = clock
        self.pending: dict[tuple[str, str], Pending] = {}
        self._task: asyncio.Task[None] | None = None
        self._side: set[asyncio.Task[None]] = set()  # re-broadcasts and getTransaction reads

    def clock(self) -> float:
        """The injected clock, else the running loop's (monotonic; virtual in tests)."""
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def follow(
        self,
        lander: LanderKind,
        ident: str,
        signature: str,
        ep: Endpoint,
        last_valid: int,
        mint: str,
        profit: int,
        *,
        wire: bytes = b"",
        payer: str = "",
        trade: TradeKey | None = None,
    ) -> None:
        """Follow ``ident``, accepted by ``ep`` (another endpoint's acceptance of it joins the same entry)."""
        p = self.pending.get((lander, ident))
        if p is None:
            now = self.clock()
            p = Pending(lander, ident, signature, [], last_valid, mint, profit, now, wire, payer, trade, resent_at=now)
            self.pending[(lander, ident)] = p
        if ep not in p.endpoints:
            p.endpoints.append(ep)
            if lander == "jito":
                p.ask.append(ep)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._follow_while_pending(), name="lander-follow")

    async def _follow_while_pending(self) -> None:
        while self.pending:
            await asyncio.sleep(FOLLOW_EVERY)
            await self.poll()

    async def poll(self) -> None:
        """One round: on chain, expired, dropped, re-broadcast."""
        await self._on_chain()
        now = self.clock()
        height = self.chain.block_height()
        for p in list(self.pending.values()):
            if (height is not None and height > p.last_valid) or now - p.sent_at > self.timeout:
                self._settle(p, "expired")
        await self._dropped(now)
        self._rebroadcast(now)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    def _rebroadcast(self, now: float) -> None:
        if self.rebroadcast <= 0:
            return
        for p in self.pending.values():
            if p.lander == "jito" or not p.wire or now - p.resent_at < self.rebroadcast:
                continue
            p.resent_at = now
            for ep in p.endpoints:
                self.stats.rebroadcasts += 1
                self._spawn(self._resend(ep, p), f"resend-{p.ident[:8]}")

    async def _resend(self, ep: Endpoint, p: Pending) -> None:
        # Hashed on (endpoint, signature): the same IP as the first send. Its outcome matters not:
        # the send was accepted once, and the next poll sees whether it landed.
        await self.farm.run(self.upstreams.send_transaction(ep, p.wire, p.signature))

    async def _on_chain(self) -> None:
        waiting = list(self.pending.values())
        groups = list(chunks(waiting, MAX_SIGNATURES))
        outs = await asyncio.gather(
            *(self.farm.run(self.upstreams.signature_statuses([p.signature for p in group])) for group in groups)
        )
        for group, out in zip(groups, outs, strict=True):
            if not out.ok or not isinstance(out.value, SignatureStatuses):
                continue  # asked again next round
            for p, st in zip(group, out.value.statuses, strict=False):
                if st is not None:
                    self._settle(p, "failed" if st.err else "landed", on_chain=True)

    async def _dropped(self, now: float) -> None:
        by_region: dict[str, list[Pending]] = {}
        for p in self.pending.values():
            if p.ask and now - p.sent_at >= DROP_CHECK_AFTER and now - p.checked_at >= DROP_CHECK_EVERY:
                by_region.setdefault(p.ask[0].label, []).append(p)
                p.checked_at = now
        asks = [(group, group[0].ask[0]) for ps in by_region.values() for group in chunks(ps, MAX_BUNDLE_IDS)]
        outs = await asyncio.gather(
            *(self.farm.run(self.upstreams.inflight_bundle_statuses(ep, [p.ident for p in g])) for g, ep in asks)
        )
        for (group, ep), out in zip(asks, outs, strict=True):
            if not out.ok or not isinstance(out.value, BundleStatuses):
                continue
            for p, st in zip(group, out.value.statuses, strict=False):
                status = st.status if st is not None else "Invalid"
                if status == "Landed":
                    self._settle(p, "landed", on_chain=True)
                elif status == "Failed":
                    self._settle(p, "failed")
                elif status == "Invalid":
                    with contextlib.suppress(ValueError):
                        p.ask.remove(ep)  # that region does not know it; ask the next one
                    if not p.ask:
                        self._settle(p, "dropped")

    def _settle(self, p: Pending, state: Settled, *, on_chain: bool = False) -> None:
        if self.pending.pop((p.lander, p.ident), None) is None:
            return
        self.stats.settled[(p.lander, state)] += 1
        if state == "landed":
            self.stats.landed_profit[p.mint] += p.profit
            self.metrics.lander_landed(p.lander, p.endpoints[0].label)
        if self.trades is not None and p.trade is not None:
            self.trades.settled(p.trade, p.lander, state, on_chain=on_chain)
        if on_chain and p.payer:  # landed, or failed and paid for: what did it do to the wallet?
            self._spawn(self._realise(p), f"realise-{p.ident[:8]}")
        # Per send: debug. Most bundles on mainnet lose the auction; the summary line counts them.
        log.debug("%s %s", p.ident[:16], state, extra={"lander": p.lander, "endpoint": p.endpoints[0].label})

    async def _realise(self, p: Pending) -> None:
        try:
            for attempt in range(REALISE_TRIES):
                if attempt:
                    await asyncio.sleep(REALISE_EVERY)
                out = await self.farm.run(self.upstreams.get_transaction(p.signature))
                if out.ok and isinstance(out.value, TransactionMeta) and out.value.found:
                    self._book(p, out.value)
                    return
        except asyncio.CancelledError:  # closing: on chain, but its P&L was not read
            self.stats.unrealised += 1
            raise
        self.stats.unrealised += 1
        log.debug("%s: getTransaction never found it; its P&L is not booked", p.signature[:16])

    def _book(self, p: Pending, meta: TransactionMeta) -> None:
        change = balance_change(meta, p.payer)
        realised = realised_in_base(p.mint, change, self.prices)
        if realised is None:
            self.stats.unrealised += 1
            return
        self.stats.realised += 1
        self.stats.realised_profit[p.mint] += realised
        self.stats.realised_expected[p.mint] += p.profit
        self.metrics.round_trip(
            self.strategy,
            p.mint,
            expected_lamports=in_lamports(p.mint, p.profit, self.prices),
            realised_lamports=in_lamports(p.mint, realised, self.prices),
        )
        log.debug(
            "%s on chain: %+d realised vs %+d expected (%s)",
            p.signature[:16],
            realised,
            p.profit,
            p.mint[:8],
            extra={"lander": p.lander, "fee": change.fee, "failed": change.failed},
        )

    async def close(self, timeout: float = 5.0) -> None:
        """Wait up to ``timeout`` for what is pending to settle, then stop following."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        side = set(self._side)
        if side and timeout > 0:  # the last P&L reads get their moment; re-broadcasts are moot now
            await asyncio.wait(side, timeout=timeout)
        for task in side:
            task.cancel()
        await asyncio.gather(*side, return_exceptions=True)
