"""The lander stack: send a round trip's transactions from IPs with budget, then follow them.

* ``jito``: the bundle (one transaction) to every configured block engine. Jito limits each
  (IP, region) pair, so each send is hashed over the IPs by (region, bundle id): rendezvous
  ranking keeps re-sends of the same bytes to a region on one IP, different bundles spread
  over every IP, and a send whose first-ranked IP is paced or cooling spills to the next
  ranked one instead of waiting (see :mod:`galileo.policy.allocator`). N IPs carry N times a
  region's per-IP rate.
* ``staked`` / ``rpc``: ``sendTransaction`` (skipPreflight, maxRetries 0) to each endpoint,
  hashed by (endpoint, signature) the same way, and re-broadcast (the same bytes, the same IP)
  every ``lander.rebroadcast_s`` until it lands or its blockhash expires.

**One trade, one signed transaction per lander variant.** A strategy claims a trade by what
it does (:class:`~galileo.landing.trades.TradeKey`) before building it; while the same trade
is being built or is in flight, claiming it again fails and the strategy does not sign it
again (see :mod:`galileo.landing.trades`).

**More offered than fits.** Each upstream (a region, an endpoint) keeps at most
``SEND_HORIZON`` seconds of its IPs' budget outstanding (queued or in flight); a send beyond
that is shed at once and counted, rather than queued to leave stale (a bundle is worth least
when it is old) or to expire in the farm's queue.

``lander.mode: dry_run`` (the default) builds and signs but sends nothing: it says (at debug)
what would be sent, with the bundle id Jito would give it, and counts it. Sends re-broadcast
the *same signed bytes*, which is idempotent (a signature lands at most once), so a send lost
with a dead worker is retried on another IP; nothing is ever re-signed before its blockhash
expires. Accepted sends are followed by :class:`~galileo.landing.follow.Follower`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from broker.results import BundleAccepted, TxSent
from broker.types import JobOutcome
from galileo.chain import ChainState
from galileo.client import NULL_METRICS, FarmClient, StrategyMetrics
from galileo.config.sections import LanderConfig
from galileo.landing.assemble import Assembled
from galileo.landing.follow import Follower
from galileo.landing.pnl import Prices
from galileo.landing.stats import LanderKind, LandingStats
from galileo.landing.trades import TradeBook, TradeKey
from galileo.tx import BuiltTransaction
from galileo.upstreams import Endpoint, Upstreams

__all__ = ["LanderStack", "Receipt", "bundle_id_of"]

log = logging.getLogger("galileo.lander")

# Jito "bundle contains an already processed transaction", RPC "This transaction has already
# been processed", Ultra "Failed to land: transaction already processed".
_ALREADY_PROCESSED = re.compile(r"already (been )?processed", re.IGNORECASE)
DUPLICATE_WINDOW = 120.0  # seconds a sent signature is remembered (a blockhash lives ~60-90 s)
SEND_HORIZON = 1.0  # seconds of an upstream's budget a lander keeps outstanding; beyond it, sends are shed
LANES_FRESH = 0.1  # seconds an upstream's lanes are reused before the farm is asked again


def bundle_id_of(signatures: list[str]) -> str:
    """Jito's bundle id: lowercase hex SHA-256 of the transactions' first signatures joined by ','."""
    return hashlib.sha256(",".join(signatures).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Receipt:
    lander: LanderKind
    endpoint: str  # a label, never a URL with a key in it
    ip: str | None
    ident: str  # bundle id or signature
    accepted: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class _Signed:
    """What a trade was signed as: re-sent as it is, never signed again in its blockhash's life."""

    tx: Assembled
    mint: str
    profit: int


@dataclass(frozen=True, slots=True)
class _Send:
    lander: LanderKind
    ep: Endpoint
    built: BuiltTransaction
    ident: str
    outcome: Awaitable[JobOutcome]


class LanderStack:
    def __init__(
        self,
        farm: FarmClient,
        upstreams: Upstreams,
        chain: ChainState,
        cfg: LanderConfig,
        landers: Sequence[LanderKind],
        stats: LandingStats | None = None,
        metrics: StrategyMetrics = NULL_METRICS,
        *,
        prices: Prices | None = None,
        strategy: str = "",
        trades: TradeBook[Any] | None = None,
    ) -> None:
        self.farm = farm
        self.upstreams = upstreams
        self.chain = chain
        self.cfg = cfg
        self.landers = list(dict.fromkeys(landers))
        self.stats = stats if stats is not None else LandingStats()
        self.metrics = metrics
        self.trades: TradeBook[Any] = trades if trades is not None else TradeBook()  # one per farm
        self.follower = Follower(
            farm,
            upstreams,
            chain,
            self.stats,
            timeout=cfg.follow_timeout_s,
            rebroadcast=cfg.rebroadcast_s,
            trades=self.trades,
            prices=prices,
            strategy=strategy,
            metrics=metrics,
        )
        self._sent: dict[str, float] = {}  # signature -> when; identical transactions go out once
        self._outstanding: Counter[str] = Counter()  # upstream -> sends queued or in flight
        self._room: dict[str, tuple[float, float]] = {}  # upstream -> (when looked, sends it can hold)
        for lander in self.landers:  # every endpoint's landing series, at 0 until something happens
            for ep in self._endpoints(lander):
                metrics.lander_endpoint(lander, ep.label)

    @property
    def dry_run(self) -> bool:
        return self.cfg.mode != "live"

    def _endpoints(self, lander: LanderKind) -> list[Endpoint]:
        if lander == "jito":
            return self.upstreams.jito
        return self.upstreams.staked if lander == "staked" else self.upstreams.rpc

    def _capacity(self, upstream: str, now: float) -> float:
        """Sends ``upstream`` can hold outstanding: ``SEND_HORIZON`` of every eligible IP's pace (or its cap)."""
        looked = self._room.get(upstream)
        if looked is not None and now - looked[0] < LANES_FRESH:
            return looked[1]
        room = 0.0
        for lane in self.farm.eligible(upstream):
            if math.isfinite(lane.rate):
                room += max(1.0, lane.rate * SEND_HORIZON)
            elif lane.cap is not None:
                room += lane.cap
            else:
                room = math.inf
                break
        self._room[upstream] = (now, room)
        return room

    async def _sent_through(self, upstream: str, outcome: Awaitable[JobOutcome]) -> JobOutcome:
        try:
            return await outcome
        finally:
            self._outstanding[upstream] -= 1

    def _first_time(self, signature: str) -> bool:
        """Two batches can build byte-identical transactions (same route, blockhash and tip account)."""
        now = asyncio.get_running_loop().time()
        if signature in self._sent:
            return False
        if len(self._sent) > 10_000:
            self._sent = {s: t for s, t in self._sent.items() if now - t < DUPLICATE_WINDOW}
        self._sent[signature] = now
        return True

    def claim(self, trade: TradeKey) -> bool:
        """Take ``trade`` for building; False while the same trade is being built or its transactions live."""
        return self.trades.claim(trade, self.follower.clock(), self.chain.block_height())

    def release(self, trade: TradeKey) -> None:
        """Nothing of ``trade`` was signed (its build failed or was given up): it may be built again."""
        self.trades.release(trade)

    async def land(self, tx: Assembled, mint: str, profit: int = 0, trade: TradeKey | None = None) -> list[Receipt]:
        """Send (or, in dry run, describe) every enabled lander's variant; follow what is accepted.

        ``profit``: the round trip's expected profit in ``mint``'s units, counted when it lands.
        ``trade``: what it does, as claimed; held until its blockhash expires.
        """
        receipts = await self._send(tx, mint, profit, trade, self.landers, first=True)
        if trade is not None:
            accepted = {r.lander for r in receipts if r.accepted}
            self.trades.signed(trade, tx.last_valid_block_height, accepted, _Signed(tx, mint, profit))
        return receipts

    def resendable(self, trade: TradeKey) -> bool:
        """Whether a bundle of ``trade`` that Jito failed or dropped may go again (live, blockhash alive)."""
        return not self.dry_run and self.trades.resendable(trade, self.chain.block_height()) is not None

    async def resend(self, trade: TradeKey) -> list[Receipt]:
        """Send again, the very same bytes, the variants of ``trade`` Jito failed or dropped (found again)."""
        got = self.trades.resendable(trade, self.chain.block_height())
        if got is None or self.dry_run:
            return []
        signed, dead = got
        self.trades.resent(trade, dead)  # at once: the next rediscovery does not send them too
        landers = [lander for lander in self.landers if lander in dead]
        receipts = await self._send(signed.tx, signed.mint, signed.profit, trade, landers, first=False)
        self.stats.resends += len(receipts)
        accepted = {r.lander for r in receipts if r.accepted}
        for lander in set(landers) - accepted:
            self.trades.settled(trade, lander, "dropped", on_chain=False)
        return receipts

    async def _send(
        self,
        tx: Assembled,
        mint: str,
        profit: int,
        trade: TradeKey | None,
        landers: Sequence[LanderKind],
        *,
        first: bool,
    ) -> list[Receipt]:
        sends: list[_Send] = []
        now = asyncio.get_running_loop().time()
        for lander in landers:
            built = tx.jito if lander == "jito" else tx.rpc
            if built is None:
                continue
            if first and not self._first_time(f"{lander}:{built.signature}"):
                self.stats.duplicates += 1
                continue
            ident = bundle_id_of([built.signature]) if lander == "jito" else built.signature
            for ep in self._endpoints(lander):
                if self.dry_run:
                    self.stats.dry_run_sends += 1
                    self.metrics.lander_would_send(lander, ep.label)
                    log.debug(
                        "dry run: would send %s to %s",
                        "bundle" if lander == "jito" else "transaction",
                        ep.label,
                        extra={"lander": lander, "endpoint": ep.label, "ident": ident, "size": built.size},
                    )
                    continue
                if self._outstanding[ep.upstream] >= self._capacity(ep.upstream, now):
                    self.stats.sends[(lander, ep.label, "shed")] += 1
                    log.debug("shed a send to %s: its IPs' budget is spoken for", ep.label, extra={"ident": ident})
                    continue
                spec = (
                    self.upstreams.send_bundle(ep, [built.wire], ident)
                    if lander == "jito"
                    else self.upstreams.send_transaction(ep, built.wire, built.signature)
                )
                self.stats.sends[(lander, ep.label, "attempt")] += 1
                self.metrics.lander_attempt(lander, ep.label)
                self._outstanding[ep.upstream] += 1
                sends.append(_Send(lander, ep, built, ident, self._sent_through(ep.upstream, self.farm.run(spec))))
        outcomes = await asyncio.gather(*(s.outcome for s in sends))
        receipts = [self._receipt(s, out) for s, out in zip(sends, outcomes, strict=True)]
        for s, r in zip(sends, receipts, strict=True):
            if r.accepted:
                self.follower.follow(
                    s.lander,
                    s.ident,
                    s.built.signature,
                    s.ep,
                    tx.last_valid_block_height,
                    mint,
                    profit,
                    wire=s.built.wire,
                    payer=str(s.built.message.account_keys[0]),
                    trade=trade,
                )
        return receipts

    def _receipt(self, s: _Send, out: JobOutcome) -> Receipt:
        lander, label = s.lander, s.ep.label
        if out.ok and isinstance(out.value, BundleAccepted | TxSent):
            said = "sent to %s"
        elif not out.ok and _ALREADY_PROCESSED.search(out.error):
            # On chain already: an earlier send of these same bytes got there first (a job re-sent
            # after its worker died, another region, a previous run). Not a failure; follow it.
            said = "%s says already processed"
        else:
            self.stats.sends[(lander, label, "failed")] += 1
            # A send that never left (no budget before its deadline) is the summary's business;
            # an endpoint that said no is the operator's.
            level = logging.WARNING if out.ip is not None else logging.DEBUG
            log.log(
                level,
                "send to %s failed: %s %s",
                label,
                out.result,
                out.error,
                extra={"lander": lander, "endpoint": label, "local_ip": out.ip},
            )
            return Receipt(lander, label, out.ip, s.ident, False, f"{out.result}: {out.error}")
        self.stats.sends[(lander, label, "ok")] += 1
        self.metrics.lander_success(lander, label)
        log.debug(
            said,
            label,
            extra={
                "lander": lander,
                "endpoint": label,
                "ident": s.ident,
                "local_ip": out.ip,
                "latency_ms": round(out.latency * 1000, 3),
            },
        )
        return Receipt(lander, label, out.ip, s.ident, True)

    async def close(self, timeout: float = 5.0) -> None:
        """Give what is being followed up to ``timeout`` to settle, then stop following."""
        await self.follower.close(timeout)
