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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from broker.results import BundleStatuses, SignatureStatuses
from galileo.chain import ChainState
from galileo.client import NULL_METRICS, FarmClient, StrategyMetrics
from galileo.landing.stats import LanderKind, LandingStats, Settled
from galileo.upstreams import MAX_BUNDLE_IDS, MAX_SIGNATURES, Endpoint, Upstreams

__all__ = ["Follower", "Pending"]

log = logging.getLogger("galileo.lander")

FOLLOW_EVERY = 1.0  # seconds between polls; a block is ~0.4 s, so a landed send is seen within ~3 blocks
DROP_CHECK_AFTER = 2.0  # a bundle not on chain after this long is asked about at Jito
DROP_CHECK_EVERY = 2.0  # and again at most this often

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
    checked_at: float = float("-inf")  # the last getInflightBundleStatuses
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
        metrics: StrategyMetrics = NULL_METRICS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.farm = farm
        self.upstreams = upstreams
        self.chain = chain
        self.stats = stats
        self.timeout = timeout
        self.metrics = metrics
        self._clock = clock
        self.pending: dict[tuple[str, str], Pending] = {}
        self._task: asyncio.Task[None] | None = None

    def clock(self) -> float:
        """The injected clock, else the running loop's (monotonic; virtual in tests)."""
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def follow(
        self, lander: LanderKind, ident: str, signature: str, ep: Endpoint, last_valid: int, mint: str, profit: int
    ) -> None:
        """Follow ``ident``, accepted by ``ep`` (another endpoint's acceptance of it joins the same entry)."""
        p = self.pending.get((lander, ident))
        if p is None:
            p = Pending(lander, ident, signature, [], last_valid, mint, profit, self.clock())
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
        """One round: on chain, expired, dropped."""
        await self._on_chain()
        now = self.clock()
        height = self.chain.block_height()
        for p in list(self.pending.values()):
            if (height is not None and height > p.last_valid) or now - p.sent_at > self.timeout:
                self._settle(p, "expired")
        await self._dropped(now)

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
                    self._settle(p, "failed" if st.err else "landed")

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
                    self._settle(p, "landed")
                elif status == "Failed":
                    self._settle(p, "failed")
                elif status == "Invalid":
                    with contextlib.suppress(ValueError):
                        p.ask.remove(ep)  # that region does not know it; ask the next one
                    if not p.ask:
                        self._settle(p, "dropped")

    def _settle(self, p: Pending, state: Settled) -> None:
        if self.pending.pop((p.lander, p.ident), None) is None:
            return
        self.stats.settled[(p.lander, state)] += 1
        if state == "landed":
            self.stats.landed_profit[p.mint] += p.profit
            self.metrics.lander_landed(p.lander, p.endpoints[0].label)
        # Per send: debug. Most bundles on mainnet lose the auction; the summary line counts them.
        log.debug("%s %s", p.ident[:16], state, extra={"lander": p.lander, "endpoint": p.endpoints[0].label})

    async def close(self, timeout: float = 5.0) -> None:
        """Wait up to ``timeout`` for what is pending to settle, then stop following."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
