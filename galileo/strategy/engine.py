"""The round-trip engine: plan, quote legs, evaluate, swap-instructions, assemble, land, follow.

One engine, configured by a :class:`Shape`: which providers quote the buy leg (base ->
intermediate) and which the sell leg (intermediate -> base). The blind strategy is the shape
with one aggregator on both sides; multi-leg is every buy provider x every sell provider.

Per batch (one plan: base mint, intermediate mint, size) on the IP the pipeline gave it:

1. every buy leg is quoted (``amount`` = size), preferred onto the batch's IP;
2. each buy quote's sell legs are quoted (``amount`` = what that buy surely delivers: its
   minimum out), preferred onto the IP that served the buy, so they move only if it is
   cooling; each is checked against its own buy (the amount it sells must be that);
3. every quote with SOL on one side prices its mint; a base mint not yet priced is priced
   with one SOL quote, so costs can be stated in its units;
4. a pair is an opportunity when its sell leg can be held on chain to pay size + (tip + base
   fee + priority fee, in base units) + the base mint's own ``min_quote_profit``, the fees the
   fee market's (:mod:`galileo.landing.fees`: the tip from Jito's tip floor, the priority fee
   from recent fees, each capped at a share of the profit); the best (by sell out - size -
   costs) is the opportunity (:mod:`galileo.strategy.profit`);
5. the opportunity is claimed as a trade (:mod:`galileo.landing.trades`: what it does, its legs
   and amounts): the same trade already being built or in flight is not signed again;
6. it is landed in its own task while the IP goes on with the next batch: fresh quotes only
   (:mod:`galileo.strategy.fresh`, checked before building and again before sending), both
   legs' instructions (the sell's minimum out set to what the round trip needs), fees for its
   writable accounts evaluated before signing (that minimum out must cover them too), one
   signed transaction per lander kind, sent and followed by the :class:`~galileo.landing.LanderStack`.

No IP is held across a wait: every leg is an independent job on the shared pool, so a pair
cannot deadlock even with a single IP.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from solders.keypair import Keypair

from galileo.chain import ChainError, ChainState
from galileo.client import NULL_METRICS, FarmClient, StrategyMetrics
from galileo.config import GalileoConfig
from galileo.landing import FeeMarket, Fees, LanderStack, TradeBook, TradeKey, assemble, writable_accounts
from galileo.strategy.fresh import context_slot, staleness
from galileo.strategy.legs import Leg, LegError, LegName, LegQuote, make_leg
from galileo.strategy.pipeline import BatchPipeline, BatchShape
from galileo.strategy.plan import QuoteBatchPlan, batches, plan_pairs
from galileo.strategy.profit import SOL_MINT, TWO_LEG_CU_ESTIMATE, Costs, PriceBook, evaluate, needed_out
from galileo.strategy.stats import BatchRecord, Side, StrategyStats, short_mint
from galileo.strategy.titan import TitanStreams
from galileo.tx import DEFAULT_COMPUTE_UNIT_LIMIT, MAX_COMPUTE_UNIT_LIMIT, SwapLeg, TxError, priority_fee_lamports
from galileo.upstreams import QuoteRequest, Upstreams

__all__ = ["RoundTripEngine", "Shape", "enabled_engines"]

log = logging.getLogger("galileo.strategy")

StrategyName = Literal["blind", "multi_leg"]
LAMPORTS_PER_SOL = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Shape:
    """Which providers quote each side of the round trip."""

    name: StrategyName
    buy_legs: tuple[LegName, ...]
    sell_legs: tuple[LegName, ...]

    @classmethod
    def blind(cls, cfg: GalileoConfig) -> Shape:
        provider = cfg.blind_strategy.quote_provider
        return cls("blind", (provider,), (provider,))

    @classmethod
    def multi_leg(cls, cfg: GalileoConfig) -> Shape:
        ml = cfg.multi_leg
        return cls("multi_leg", tuple(dict.fromkeys(ml.buy_legs)), tuple(dict.fromkeys(ml.sell_legs)))


@dataclass(frozen=True, slots=True)
class _Pair:
    buy: LegQuote
    sell: LegQuote


def _batch_shape(buy: Sequence[Leg], sell: Sequence[Leg]) -> BatchShape:
    """Quotes per upstream in one batch: each buy leg once, each sell leg once per buy leg."""
    demand: dict[str, int] = {}
    for leg in buy:
        if leg.upstream:
            demand[leg.upstream] = demand.get(leg.upstream, 0) + 1
    for leg in sell:
        if leg.upstream:
            demand[leg.upstream] = demand.get(leg.upstream, 0) + len(buy)
    stages = tuple(
        stage
        for stage in (
            tuple(dict.fromkeys(leg.upstream for leg in buy if leg.upstream)),
            tuple(dict.fromkeys(leg.upstream for leg in sell if leg.upstream)),
        )
        if stage
    )
    return BatchShape(demand, stages)


class RoundTripEngine:
    def __init__(
        self,
        farm: FarmClient,
        cfg: GalileoConfig,
        wallet: Keypair,
        shape: Shape,
        *,
        metrics: StrategyMetrics = NULL_METRICS,
        rng: random.Random | None = None,
        trades: TradeBook[Any] | None = None,
    ) -> None:
        self.farm = farm
        self.cfg = cfg
        self.wallet = wallet
        self.shape = shape
        self.name: StrategyName = shape.name
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.upstreams = Upstreams(cfg)
        self.chain = ChainState(farm, self.upstreams, clock=_loop_time)  # the loop's: quotes are stamped with it
        self.stats = StrategyStats()
        self.prices = PriceBook()
        self.plans = plan_pairs(cfg.blind_strategy, cfg.intermedium)
        user = str(wallet.pubkey())
        self.titan = (
            TitanStreams(farm, self.upstreams, user, cfg.upstreams.titan) if "titan" in shape.buy_legs else None
        )
        if self.titan is not None:
            metrics.titan_source(self.titan.report)
        wait = cfg.multi_leg.titan_quote_wait_ms / 1000

        def leg(name: LegName) -> Leg:
            return make_leg(name, farm, self.upstreams, self.chain, user, self.titan, wait)

        self.buy_legs = [leg(n) for n in shape.buy_legs]
        self.sell_legs = [leg(n) for n in shape.sell_legs]
        self._legs = {leg.name: leg for leg in (*self.buy_legs, *self.sell_legs)}
        self._pricer = next((leg for leg in (*self.buy_legs, *self.sell_legs) if leg.upstream), None)
        enabled = cfg.blind_strategy.enable_landers
        self.landers = LanderStack(
            farm,
            self.upstreams,
            self.chain,
            cfg.lander,
            enabled,
            self.stats.landing,
            metrics,
            prices=self.prices,
            strategy=self.name,
            trades=trades,
        )
        self._jito = "jito" in enabled
        self._rpc = bool({"staked", "rpc"} & set(enabled))
        self.fees = FeeMarket(farm, self.upstreams, cfg.lander, jito=self._jito, rpc=self._rpc)
        self.pipeline = BatchPipeline(
            farm, _batch_shape(self.buy_legs, self.sell_legs), batches(self.plans), self.run_batch
        )
        self._tasks: set[asyncio.Task[None]] = set()  # landings and price probes
        self._pricing: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then let in-flight batches and landings finish (briefly)."""
        log.info(
            "%s: %d round trip(s), buy %s x sell %s, landing via %s (%s)",
            self.name,
            len(self.plans),
            ",".join(self.shape.buy_legs),
            ",".join(self.shape.sell_legs),
            ",".join(self.landers.landers) or "-",
            self.cfg.lander.mode,
        )
        self.chain.start()
        self.fees.start()
        if self.titan is not None:
            self.titan.start([QuoteRequest(p.base_mint, p.intermediate_mint, p.trade_size) for p in self.plans])
        try:
            await self.pipeline.run(stop)
        finally:
            await self.pipeline.drain(5.0)
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=10.0)
            await self.landers.close()
            await self.fees.stop()
            if self.titan is not None:
                await self.titan.stop()
            await self.chain.stop()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- one batch ------------------------------------------------------------------

    async def _quote(self, leg: Leg, req: QuoteRequest, ip: str | None, side: Side, mint: str) -> LegQuote | None:
        try:
            q = await leg.quote(req, ip, f"quote_{side}")
        except LegError as exc:
            self.stats.quotes[(f"{side}:{leg.name}", exc.result)] += 1
            self.metrics.quote(self.name, mint, exc.result)
            log.debug("%s leg %s: %s", side, leg.name, exc, extra={"local_ip": ip, "ip_task_kind": f"quote_{side}"})
            return None
        self.stats.quotes[(f"{side}:{leg.name}", "ok")] += 1
        self.metrics.quote(self.name, mint, "ok")
        self.stats.quote_latency(side, q.latency)
        self.chain.saw_slot(context_slot(q))
        return replace(q, received=self.chain.clock())

    async def _sells(self, plan: QuoteBatchPlan, buy: LegQuote, ip: str) -> list[_Pair]:
        req = QuoteRequest(plan.intermediate_mint, plan.base_mint, buy.sure_out)
        # A Titan buy came from a stream, not an HTTP call: its sells stay on the batch's IP rather
        # than all crowding onto the one IP holding a token's connection.
        prefer = ip if buy.provider == "titan" else (buy.ip or ip)
        sells = await asyncio.gather(*(self._quote(leg, req, prefer, "sell", plan.base_mint) for leg in self.sell_legs))
        pairs = []
        for sell in sells:
            if sell is None:
                continue
            if sell.in_amount != buy.sure_out:  # the sell leg must be this buy's, of what it surely gives
                log.warning(
                    "batch %d: %s sell leg quoted %d, the %s buy leg gives %d; dropped",
                    plan.batch_id,
                    sell.provider,
                    sell.in_amount,
                    buy.provider,
                    buy.sure_out,
                    extra={"batch_id": plan.batch_id},
                )
                continue
            if sell.ip is not None and sell.ip == buy.ip:
                self.stats.sell_on_buy_ip += 1
            else:
                self.stats.sell_moved += 1
            self.prices.observe(plan.intermediate_mint, sell.in_amount, plan.base_mint, sell.out_amount)
            self.stats.pairs[(buy.provider, sell.provider, "quoted")] += 1
            pairs.append(_Pair(buy, sell))
        return pairs

    async def run_batch(self, plan: QuoteBatchPlan, ip: str) -> None:
        self.stats.batches_started += 1
        req = QuoteRequest(plan.base_mint, plan.intermediate_mint, plan.trade_size)
        buys = [
            q
            for q in await asyncio.gather(*(self._quote(leg, req, ip, "buy", plan.base_mint) for leg in self.buy_legs))
            if q is not None
        ]
        for b in buys:
            self.prices.observe(plan.base_mint, b.in_amount, plan.intermediate_mint, b.out_amount)
        pairs = [p for ps in await asyncio.gather(*(self._sells(plan, b, ip) for b in buys)) for p in ps]
        if not pairs:
            self.stats.batches_failed += 1
            return
        self.stats.batches_completed += 1
        top = max(pairs, key=lambda p: p.sell.out_amount)
        if self.titan is not None:  # how close this (pair, size) comes to profit: which streams are worth it
            self.titan.observe(req, (top.sell.out_amount - plan.trade_size) * 10_000 / plan.trade_size)
        self.stats.recent.append(
            BatchRecord(
                plan.batch_id,
                plan.base_mint,
                plan.intermediate_mint,
                plan.trade_size,
                top.buy.ip or ip,
                top.sell.ip or ip,
                top.buy.out_amount,
                top.sell.out_amount,
            )
        )
        if not self._priced(plan.base_mint):
            return  # not yet priced: the probe _priced started will fix that
        candidates = [
            (verdict.profit, p)
            for p in pairs
            if (costs := self._landing_costs(plan.base_mint, p.sell.out_amount - plan.trade_size)) is not None
            and (verdict := evaluate(plan.trade_size, p.sell.out_amount, costs, plan.pair.min_profit)).profitable
        ]
        if not candidates:
            return
        profit, best = max(candidates, key=lambda c: c[0])
        self.stats.pairs[(best.buy.provider, best.sell.provider, "profitable")] += 1
        self.stats.opportunities[plan.base_mint] += 1
        self.stats.profit[plan.base_mint] += profit
        lamports = self.prices.to_lamports(plan.base_mint, profit)  # priced: the costs were
        if lamports is not None:
            self.metrics.opportunity(self.name, plan.base_mint, profit_lamports=lamports)
        log.debug(
            "opportunity %s %d -> %s -> %d via %s+%s (+%d)",
            short_mint(plan.base_mint),
            plan.trade_size,
            short_mint(plan.intermediate_mint),
            best.sell.out_amount,
            best.buy.provider,
            best.sell.provider,
            profit,
            extra={"batch_id": plan.batch_id, "buy_ip": best.buy.ip, "sell_ip": best.sell.ip},
        )
        trade = _trade_key(best)
        if not self.landers.claim(trade):  # the same legs at the same amounts: being built, or signed and alive
            self._skip("duplicate")
            if self.landers.resendable(trade):  # Jito failed or dropped its bundle: the same bytes again
                self._spawn(self._resend(trade), f"resend-{plan.batch_id}")
            return
        self._spawn(self.land(plan, best, profit, trade), f"land-{plan.batch_id}")

    # --- costs ----------------------------------------------------------------------

    def _priced(self, mint: str) -> bool:
        """Whether SOL is priced in ``mint`` (if not, a probe is started)."""
        return self._costs_in_base(mint, Costs(tip=0)) is not None

    def _landing_costs(
        self, mint: str, gross: int, cu_limit: int = TWO_LEG_CU_ESTIMATE, fees: Fees | None = None
    ) -> int | None:
        """What landing costs in ``mint``'s units, for a round trip of ``gross`` profit before landing costs.

        ``fees``: what it will be signed with; by default the fee market's estimate (the tip
        floor's tip and the newest priority fees, each capped at its share of ``gross``).
        """
        gross_lamports = max(0, self.prices.to_lamports(mint, gross) or 0)
        fees = fees or self.fees.estimate(gross_lamports, cu_limit)
        priority = priority_fee_lamports(cu_limit, fees.cu_price) if self._rpc else 0
        return self._costs_in_base(mint, Costs(tip=fees.tip if self._jito else 0, priority_fee=priority))

    def _costs_in_base(self, mint: str, costs: Costs) -> int | None:
        value = self.prices.to_base(mint, costs.lamports)
        if value is None and mint not in self._pricing and self._pricer is not None:
            self._pricing.add(mint)
            self._spawn(self._price_probe(self._pricer, mint), f"price-{mint[:8]}")
        return value

    async def _price_probe(self, leg: Leg, mint: str) -> None:
        """Learn SOL's price in ``mint`` with one quote of 1 SOL."""
        try:
            q = await leg.quote(QuoteRequest(SOL_MINT, mint, LAMPORTS_PER_SOL), None, "price")
        except LegError:
            self._pricing.discard(mint)  # try again with the next batch
            return
        self.prices.observe(SOL_MINT, q.in_amount, mint, q.out_amount)

    # --- thresholds (issue 15.3): what the chain holds the sell leg to ---------------

    def _needed(self, plan: QuoteBatchPlan, gross: int) -> int | None:
        """The sell leg's minimum out: size + the fee market's estimated costs + min profit (None: not priced)."""
        costs = self._landing_costs(plan.base_mint, gross)
        return None if costs is None else needed_out(plan.trade_size, costs, plan.pair.min_profit)

    def _covers(self, plan: QuoteBatchPlan, sell_min_out: int, costs: int | None) -> bool:
        """Whether the sell leg's minimum out, as built, pays size + ``costs`` + min profit."""
        if costs is not None and sell_min_out >= needed_out(plan.trade_size, costs, plan.pair.min_profit):
            return True
        self.stats.build_failures["unprofitable_after_fees"] += 1
        self._skip("unprofitable_after_fees")
        return False

    # --- landing: freshness, fees before signing, one trade one signed transaction per variant ---

    def _skip(self, reason: str) -> None:
        self.stats.skipped[reason] += 1
        self.metrics.opportunity_skipped(self.name, reason)

    def _stale(self, pair: _Pair) -> bool:
        """Whether a leg's quote is too old to land (counted with its reason)."""
        now, slot, limit = self.chain.clock(), self.chain.slot(), self.cfg.lander.max_quote_age_slots
        for q in (pair.buy, pair.sell):
            reason = staleness(q, slot, now, limit)
            if reason is not None:
                self.stats.stale[(q.provider, reason)] += 1
                self._skip(reason)
                return True
        return False

    async def _resend(self, trade: TradeKey) -> None:
        await self.landers.resend(trade)

    def _cu_limit(self, legs: Sequence[SwapLeg]) -> int:
        """The most compute-unit limit assembly will set (for the priority fee's cap): the legs' own
        figures, its fallback; what it measures, times ``cu_limit_multiplier``, is less."""
        units = sum(leg.compute_unit_limit or DEFAULT_COMPUTE_UNIT_LIMIT for leg in legs)
        return min(MAX_COMPUTE_UNIT_LIMIT, units)

    async def land(self, plan: QuoteBatchPlan, pair: _Pair, profit: int, trade: TradeKey) -> None:
        """Build, sign and send ``trade`` (claimed by the caller); released unless something was sent."""
        sent = False
        try:
            sent = await self._land(plan, pair, profit, trade)
        finally:
            if not sent:
                self.landers.release(trade)

    async def _land(self, plan: QuoteBatchPlan, pair: _Pair, profit: int, trade: TradeKey) -> bool:
        if self._stale(pair):
            return False
        gross = pair.sell.out_amount - plan.trade_size
        needed = self._needed(plan, gross)
        if needed is None:
            return False
        try:
            legs = await asyncio.gather(
                self._legs[pair.buy.provider].swap_leg(pair.buy),
                self._legs[pair.sell.provider].swap_leg(pair.sell, min_out=needed),
            )
            cu_limit = self._cu_limit(legs)
            writable = writable_accounts(
                (ix for leg in legs for ix in (*leg.setup, *leg.swap, *leg.other, *leg.cleanup)),
                exclude=(str(self.wallet.pubkey()),),
            )
            fees = await self.fees.fees(writable, max(0, self.prices.to_lamports(plan.base_mint, gross) or 0), cu_limit)
            # The fees it would be signed with, evaluated before signing: the sell's floor must pay them.
            if not self._covers(plan, legs[1].min_out, self._landing_costs(plan.base_mint, gross, cu_limit, fees)):
                return False
            tx = await assemble(
                list(legs),
                self.chain,
                self.wallet,
                self.cfg.lander,
                jito=self._jito,
                rpc=self._rpc,
                rng=self.rng,
                fees=fees,
            )
        except (LegError, TxError, ChainError) as exc:
            self.stats.build_failures[getattr(exc, "result", type(exc).__name__)] += 1
            bug = isinstance(exc, TxError) and not getattr(exc, "market", False)  # not a price that moved
            level = logging.WARNING if bug else logging.DEBUG  # a build bug vs a busy upstream or a market
            log.log(
                level,
                "batch %d (%s+%s): cannot build the transaction: %s",
                plan.batch_id,
                pair.buy.provider,
                pair.sell.provider,
                exc,
                extra={"batch_id": plan.batch_id},
            )
            return False
        if self._stale(pair):  # the instructions took their time: still fresh enough to send?
            return False
        exact = self._costs_in_base(plan.base_mint, Costs(tip=tx.tip, priority_fee=tx.priority_fee))
        if not self._covers(plan, legs[1].min_out, exact):  # the sell's floor pays the exact costs too
            return False
        profit = evaluate(plan.trade_size, pair.sell.out_amount, exact or 0, plan.pair.min_profit).profit
        self.stats.built += 1
        receipts = await self.landers.land(tx, plan.base_mint, profit, trade)
        if any(r.accepted for r in receipts):
            self.stats.pairs[(pair.buy.provider, pair.sell.provider, "sent")] += 1
        return True


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def _trade_key(pair: _Pair) -> TradeKey:
    """What the round trip does: each leg's mints and amounts (two providers paying the same are one trade)."""
    return TradeKey(
        tuple((q.request.input_mint, q.request.output_mint, q.in_amount, q.out_amount) for q in (pair.buy, pair.sell))
    )


def enabled_engines(
    farm: FarmClient, cfg: GalileoConfig, wallet: Keypair, *, metrics: StrategyMetrics = NULL_METRICS
) -> list[RoundTripEngine]:
    """The engines the config enables: blind, multi-leg, or both (each with its own pipeline, one trade book)."""
    shapes = []
    if cfg.blind_strategy.enable:
        shapes.append(Shape.blind(cfg))
    if cfg.multi_leg.enable:
        shapes.append(Shape.multi_leg(cfg))
    trades: TradeBook[Any] = TradeBook()  # one book: blind and multi-leg can find the very same trade
    return [RoundTripEngine(farm, cfg, wallet, shape, metrics=metrics, trades=trades) for shape in shapes]
