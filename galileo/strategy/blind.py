"""The blind strategy: quote every base -> intermediate -> base round trip, land the profitable ones.

Per batch (one plan: base mint, intermediate mint, size) on one IP:

1. the buy leg (base -> intermediate, ``amount`` = size) is preferred onto the IP the
   dispatcher gave the batch;
2. the sell leg (intermediate -> base, ``amount`` = the buy leg's ``outAmount``) is preferred
   onto the IP that actually served the buy leg, so it moves only if that IP is cooling;
   it is checked against its own batch (mints and amount must match the buy leg's);
3. profit = sell out - size - (tip + base fee + priority fee, in base units) against that
   base mint's own ``min_quote_profit``;
4. a profitable batch is handed to :meth:`BlindStrategy.land` at once, in its own task, while
   the IP goes on with the next batch: swap-instructions for both legs, assembly, landing.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Protocol

from solders.keypair import Keypair

from broker.results import Quote, SwapInstructions
from broker.types import JobOutcome, JobSpec
from galileo.chain import ChainError, ChainState
from galileo.config import GalileoConfig
from galileo.landing.assemble import RoundTrip, assemble, leg_of
from galileo.landing.landers import LanderStack
from galileo.strategy.dispatcher import BatchDispatcher
from galileo.strategy.plan import QuoteBatchPlan, batches, plan_pairs
from galileo.strategy.profit import SOL_MINT, Costs, PriceBook, estimated_costs, evaluate
from galileo.strategy.stats import BatchRecord, StrategyStats, short_mint
from galileo.strategy.upstreams import QuoteRequest, Upstreams
from galileo.tx import TxError

__all__ = ["BlindStrategy", "FarmLike"]

log = logging.getLogger("galileo.strategy.blind")


class FarmLike(Protocol):
    async def run(self, spec: JobSpec) -> JobOutcome: ...

    def eligible_ips(self, upstream: str) -> list[str]: ...


class BlindStrategy:
    def __init__(
        self,
        farm: FarmLike,
        cfg: GalileoConfig,
        wallet: Keypair,
        *,
        metrics: Any = None,
        rng: random.Random | None = None,
    ) -> None:
        self.farm = farm
        self.cfg = cfg
        self.wallet = wallet
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.upstreams = Upstreams(cfg)
        self.chain = ChainState(farm.run, self.upstreams)
        self.stats = StrategyStats()
        self.prices = PriceBook()
        self.pairs = plan_pairs(cfg.blind_strategy, cfg.intermedium)
        landers = list(dict.fromkeys(cfg.blind_strategy.enable_landers))
        self.landers = LanderStack(farm.run, self.upstreams, self.chain, cfg.lander, landers, self.stats, metrics)
        self.provider = cfg.blind_strategy.quote_provider
        self.dispatcher = BatchDispatcher(farm, self.provider, batches(self.pairs), self.run_batch)
        self._landing: set[asyncio.Task[None]] = set()
        self._pricing: set[str] = set()
        self._jito = "jito" in landers
        self._rpc = bool({"staked", "rpc"} & set(landers))

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then let in-flight batches and landings finish (briefly)."""
        log.info(
            "blind strategy: %d round trip(s) over %s, landing via %s (%s)",
            len(self.pairs),
            self.provider,
            ",".join(self.cfg.blind_strategy.enable_landers) or "-",
            self.cfg.lander.mode,
        )
        self.chain.start()
        try:
            await self.dispatcher.run(stop)
        finally:
            await self.dispatcher.drain(5.0)
            if self._landing:
                await asyncio.wait(set(self._landing), timeout=10.0)
            await self.landers.close()
            await self.chain.stop()

    # --- one batch ------------------------------------------------------------------

    def _quoted(self, leg: str, plan: QuoteBatchPlan, out: JobOutcome) -> Quote | None:
        self.stats.quotes[(leg, out.result)] += 1
        if self.metrics is not None:
            self.metrics.quote("blind", plan.base_mint, out.result)
        if out.ok and isinstance(out.value, Quote) and out.value.out_amount > 0:
            self.stats.quote_latency(leg, out.latency)
            return out.value
        log.debug(
            "%s leg failed: %s %s",
            leg,
            out.result,
            out.error,
            extra={"batch_id": plan.batch_id, "local_ip": out.ip, "ip_task_kind": f"quote_{leg}"},
        )
        return None

    async def run_batch(self, plan: QuoteBatchPlan, ip: str) -> None:
        self.stats.batches_started += 1
        buy_out = await self.farm.run(
            self.upstreams.quote(
                QuoteRequest(plan.base_mint, plan.intermediate_mint, plan.trade_size), prefer_ip=ip, task="quote_buy"
            )
        )
        buy = self._quoted("buy", plan, buy_out)
        if buy is None or buy_out.ip is None:
            self.stats.batches_failed += 1
            return
        self.prices.observe(plan.base_mint, buy.in_amount, plan.intermediate_mint, buy.out_amount)
        sell_out = await self.farm.run(
            self.upstreams.quote(
                QuoteRequest(plan.intermediate_mint, plan.base_mint, buy.out_amount),
                prefer_ip=buy_out.ip,
                task="quote_sell",
            )
        )
        sell = self._quoted("sell", plan, sell_out)
        if sell is None or sell_out.ip is None:
            self.stats.batches_failed += 1
            return
        if sell_out.ip == buy_out.ip:
            self.stats.sell_on_buy_ip += 1
        else:
            self.stats.sell_moved += 1
        if sell.in_amount != buy.out_amount:  # the sell leg must be this batch's, of this buy's output
            log.warning(
                "batch %d: sell leg quoted %d, buy leg gave %d; dropped",
                plan.batch_id,
                sell.in_amount,
                buy.out_amount,
                extra={"batch_id": plan.batch_id},
            )
            self.stats.batches_failed += 1
            return
        self.stats.batches_completed += 1
        self.stats.recent.append(
            BatchRecord(
                plan.batch_id,
                plan.base_mint,
                plan.intermediate_mint,
                plan.trade_size,
                buy_out.ip,
                sell_out.ip,
                buy.out_amount,
                sell.out_amount,
            )
        )
        log.debug(
            "batch done",
            extra={
                "batch_id": plan.batch_id,
                "buy_ip": buy_out.ip,
                "sell_ip": sell_out.ip,
                "size": plan.trade_size,
                "sell_out": sell.out_amount,
            },
        )
        self.prices.observe(plan.intermediate_mint, sell.in_amount, plan.base_mint, sell.out_amount)
        costs = self._costs_in_base(plan.base_mint, estimated_costs(self.cfg.lander, jito=self._jito, rpc=self._rpc))
        if costs is None:
            return  # not yet priced: the probe started by _costs_in_base will fix that
        verdict = evaluate(plan.trade_size, sell.out_amount, costs, plan.pair.min_profit)
        if not verdict.profitable:
            return
        self.stats.opportunities[plan.base_mint] += 1
        self.stats.profit[plan.base_mint] += verdict.profit
        lamports = self.prices.to_lamports(plan.base_mint, verdict.profit)  # priced: the costs were
        if self.metrics is not None and lamports is not None:
            self.metrics.opportunity("blind", plan.base_mint, profit_lamports=lamports)
        log.info(
            "opportunity %s %d -> %s -> %d (+%d)",
            short_mint(plan.base_mint),
            plan.trade_size,
            short_mint(plan.intermediate_mint),
            sell.out_amount,
            verdict.profit,
            extra={"batch_id": plan.batch_id, "buy_ip": buy_out.ip, "sell_ip": sell_out.ip},
        )
        trip = RoundTrip(plan, buy, sell, buy_out.ip, sell_out.ip, verdict.profit)
        task = asyncio.create_task(self.land(trip), name=f"land-{plan.batch_id}")
        self._landing.add(task)
        task.add_done_callback(self._landing.discard)

    # --- costs ----------------------------------------------------------------------

    def _costs_in_base(self, mint: str, costs: Costs) -> int | None:
        value = self.prices.to_base(mint, costs.lamports)
        if value is None and mint not in self._pricing:
            self._pricing.add(mint)
            task = asyncio.create_task(self._price_probe(mint))
            self._landing.add(task)
            task.add_done_callback(self._landing.discard)
        return value

    async def _price_probe(self, mint: str) -> None:
        """Learn SOL's price in ``mint`` with one quote of 1 SOL."""
        out = await self.farm.run(
            self.upstreams.quote(QuoteRequest(SOL_MINT, mint, 1_000_000_000), prefer_ip=None, task="price")
        )
        if out.ok and isinstance(out.value, Quote):
            self.prices.observe(SOL_MINT, out.value.in_amount, mint, out.value.out_amount)
        else:
            self._pricing.discard(mint)  # try again with the next batch

    # --- landing --------------------------------------------------------------------

    async def land(self, trip: RoundTrip) -> None:
        user = str(self.wallet.pubkey())
        buy_si, sell_si = await asyncio.gather(
            self.farm.run(self.upstreams.swap_instructions(trip.buy.raw, user, prefer_ip=trip.buy_ip)),
            self.farm.run(self.upstreams.swap_instructions(trip.sell.raw, user, prefer_ip=trip.sell_ip)),
        )
        legs = [o.value for o in (buy_si, sell_si) if o.ok and isinstance(o.value, SwapInstructions)]
        if len(legs) != 2:
            failed = buy_si if not buy_si.ok else sell_si
            self.stats.build_failures[f"swap_instructions:{failed.result}"] += 1
            return
        try:
            tx = await assemble(
                [leg_of(si) for si in legs],
                self.chain,
                self.wallet,
                self.cfg.lander,
                jito=self._jito,
                rpc=self._rpc,
                rng=self.rng,
            )
        except (TxError, ChainError) as exc:
            self.stats.build_failures[type(exc).__name__] += 1
            log.warning(
                "batch %d: cannot build the transaction: %s",
                trip.plan.batch_id,
                exc,
                extra={"batch_id": trip.plan.batch_id},
            )
            return
        exact = self._costs_in_base(trip.plan.base_mint, Costs(tip=tx.tip, priority_fee=tx.priority_fee))
        if (
            exact is not None
            and not evaluate(trip.plan.trade_size, trip.sell.out_amount, exact, trip.plan.pair.min_profit).profitable
        ):
            self.stats.build_failures["unprofitable_after_fees"] += 1
            return
        self.stats.built += 1
        await self.landers.land(tx, trip.plan.base_mint)
