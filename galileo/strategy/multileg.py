"""Multi-leg: every enabled buy-leg provider x every sell-leg provider, for each batch.

Per batch (base, intermediate, size) on one IP: the buy legs are quoted together (Titan's from
its stream), then each buy quote's sell legs (``amount`` = that buy's ``outAmount``, preferred
onto the buy's IP). The pairs are ranked by profit; the best profitable one is built (both
legs' instructions merged, the tip appended) and landed through the same lander stack as the
blind strategy. One failing leg only removes the pairs that need it.

No IP is ever held across a wait: every leg is an independent job on the shared pool, so a
pair cannot deadlock even with a single IP (the original held a buy lease while waiting for a
sell lease).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from typing import Any

from solders.keypair import Keypair

from galileo.chain import ChainError, ChainState
from galileo.config import GalileoConfig
from galileo.landing.assemble import assemble
from galileo.landing.landers import LanderStack
from galileo.strategy.blind import FarmLike
from galileo.strategy.dispatcher import BatchDispatcher
from galileo.strategy.legs import Leg, LegError, LegQuote, make_leg
from galileo.strategy.plan import QuoteBatchPlan, batches, plan_pairs
from galileo.strategy.profit import PriceBook, estimated_costs, evaluate
from galileo.strategy.stats import StrategyStats, short_mint
from galileo.strategy.titan import TitanStreams
from galileo.strategy.upstreams import QuoteRequest, Upstreams
from galileo.tx import TxError

__all__ = ["MultiLegStrategy"]

log = logging.getLogger("galileo.strategy.multileg")


class MultiLegStrategy:
    def __init__(
        self, farm: Any, cfg: GalileoConfig, wallet: Keypair, *, metrics: Any = None, rng: random.Random | None = None
    ) -> None:
        self.farm: FarmLike = farm
        self.cfg = cfg
        self.wallet = wallet
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.upstreams = Upstreams(cfg)
        self.chain = ChainState(farm.run, self.upstreams)
        self.stats = StrategyStats()
        self.pairs_seen: Counter[tuple[str, str, str]] = Counter()  # (buy, sell, quoted|profitable|landed)
        self.prices = PriceBook()
        self.plans = plan_pairs(cfg.blind_strategy, cfg.intermedium)
        ml = cfg.multi_leg
        user = str(wallet.pubkey())
        titan_cfg = cfg.upstreams.titan
        self.titan = (
            TitanStreams(
                farm, self.upstreams, user, per_ip=titan_cfg.titan_stream_limit, debounce_ms=titan_cfg.titan_debounce_ms
            )
            if "titan" in ml.buy_legs
            else None
        )
        if self.titan is not None:
            farm.hub.event_hooks.append(self.titan.on_event)
        wait = ml.titan_quote_wait_ms / 1000
        self.buy_legs = [make_leg(n, farm, self.upstreams, self.chain, user, self.titan, wait) for n in ml.buy_legs]
        self.sell_legs = [make_leg(n, farm, self.upstreams, self.chain, user, self.titan, wait) for n in ml.sell_legs]
        landers = list(dict.fromkeys(cfg.blind_strategy.enable_landers))
        self.landers = LanderStack(farm.run, self.upstreams, self.chain, cfg.lander, landers, self.stats, metrics)
        self._jito = "jito" in landers
        self._rpc = bool({"staked", "rpc"} & set(landers))
        # The pool's eligibility is judged on the first HTTP leg's upstream.
        http = [n for n in (*ml.buy_legs, *ml.sell_legs) if n != "titan"]
        self.dispatcher = BatchDispatcher(farm, http[0] if http else "titan", batches(self.plans), self.run_batch)
        self._landing: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        self.chain.start()
        if self.titan is not None:
            wants = [QuoteRequest(p.base_mint, p.intermediate_mint, p.trade_size) for p in self.plans]
            self.titan.start(wants, sorted(w.ip for w in self.farm.hub.workers.values()))  # type: ignore[attr-defined]
        log.info(
            "multi-leg: %d round trip(s); buy %s x sell %s",
            len(self.plans),
            ",".join(self.cfg.multi_leg.buy_legs),
            ",".join(self.cfg.multi_leg.sell_legs),
        )
        try:
            await self.dispatcher.run(stop)
        finally:
            await self.dispatcher.drain(5.0)
            if self._landing:
                await asyncio.wait(set(self._landing), timeout=10.0)
            await self.landers.close()
            if self.titan is not None:
                await self.titan.stop()
            await self.chain.stop()

    async def _quote(self, leg: Leg, req: QuoteRequest, ip: str | None, side: str) -> LegQuote | None:
        try:
            q = await leg.quote(req, ip, side)
        except LegError as exc:
            self.stats.quotes[(f"{side}:{leg.name}", "failed")] += 1
            log.debug("%s leg %s: %s", side, leg.name, exc)
            return None
        self.stats.quotes[(f"{side}:{leg.name}", "ok")] += 1
        self.stats.quote_latency(side, q.latency)
        return q

    async def run_batch(self, plan: QuoteBatchPlan, ip: str) -> None:
        self.stats.batches_started += 1
        buy_req = QuoteRequest(plan.base_mint, plan.intermediate_mint, plan.trade_size)
        buys = [
            q
            for q in await asyncio.gather(*(self._quote(leg, buy_req, ip, "buy") for leg in self.buy_legs))
            if q is not None
        ]
        if not buys:
            self.stats.batches_failed += 1
            return
        legs_of = {leg.name: leg for leg in (*self.buy_legs, *self.sell_legs)}
        sell_jobs = [
            (
                b,
                leg,
                self._quote(
                    leg, QuoteRequest(plan.intermediate_mint, plan.base_mint, b.out_amount), b.ip or ip, "sell"
                ),
            )
            for b in buys
            for leg in self.sell_legs
        ]
        sells = await asyncio.gather(*(job for *_, job in sell_jobs))
        candidates: list[tuple[int, LegQuote, LegQuote]] = []
        costs = self._costs(plan.base_mint)
        for (b, _, _), s in zip(sell_jobs, sells, strict=True):
            if s is None:
                continue
            self.pairs_seen[(b.provider, s.provider, "quoted")] += 1
            self.prices.observe(plan.base_mint, b.in_amount, plan.intermediate_mint, b.out_amount)
            if costs is None:
                continue
            verdict = evaluate(plan.trade_size, s.out_amount, costs, plan.pair.min_profit)
            if verdict.profitable:
                candidates.append((verdict.profit, b, s))
        if not any(s is not None for s in sells):
            self.stats.batches_failed += 1
            return
        self.stats.batches_completed += 1
        if not candidates:
            return
        candidates.sort(key=lambda c: c[0], reverse=True)
        profit, best_buy, best_sell = candidates[0]
        self.pairs_seen[(best_buy.provider, best_sell.provider, "profitable")] += 1
        self.stats.opportunities[plan.base_mint] += 1
        self.stats.profit[plan.base_mint] += profit
        lamports = self.prices.to_lamports(plan.base_mint, profit)  # priced: the costs were
        if self.metrics is not None and lamports is not None:
            self.metrics.opportunity("multi_leg", plan.base_mint, profit_lamports=lamports)
        log.info(
            "opportunity %s via %s+%s (+%d)",
            short_mint(plan.base_mint),
            best_buy.provider,
            best_sell.provider,
            profit,
            extra={"batch_id": plan.batch_id},
        )
        task = asyncio.create_task(self._land(plan, best_buy, best_sell, legs_of))
        self._landing.add(task)
        task.add_done_callback(self._landing.discard)

    def _costs(self, mint: str) -> int | None:
        costs = estimated_costs(self.cfg.lander, jito=self._jito, rpc=self._rpc)
        return self.prices.to_base(mint, costs.lamports)

    async def _land(self, plan: QuoteBatchPlan, buy: LegQuote, sell: LegQuote, legs_of: dict[str, Leg]) -> None:
        try:
            legs = await asyncio.gather(legs_of[buy.provider].swap_leg(buy), legs_of[sell.provider].swap_leg(sell))
            tx = await assemble(
                list(legs), self.chain, self.wallet, self.cfg.lander, jito=self._jito, rpc=self._rpc, rng=self.rng
            )
        except (LegError, TxError, ChainError) as exc:
            self.stats.build_failures[type(exc).__name__] += 1
            log.warning(
                "batch %d (%s+%s): cannot build: %s",
                plan.batch_id,
                buy.provider,
                sell.provider,
                exc,
                extra={"batch_id": plan.batch_id},
            )
            return
        self.stats.built += 1
        receipts = await self.landers.land(tx, plan.base_mint)
        if any(r.accepted for r in receipts):
            self.pairs_seen[(buy.provider, sell.provider, "sent")] += 1
