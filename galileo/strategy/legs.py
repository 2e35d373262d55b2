"""Leg providers: one way to quote a leg, one way to turn the quote into instructions.

The round-trip engine quotes every configured buy leg, then every sell leg of each buy, through
these; blind is the case of one provider on both sides.

Every leg is quoted with slippage 0, so its minimum out (``LegQuote.min_out``) is what it
quoted; the sell leg's instructions are then asked for with the minimum out the round trip
needs (``swap_leg(q, min_out=...)``), see :mod:`galileo.strategy.profit`.

* Jupiter, DFlow: ``/quote``, then ``/swap-instructions`` echoing the quote (with the sell's
  slippage and threshold rewritten to that minimum out).
* Ultra: ``/order`` (with our wallet as taker) returns a whole unsigned transaction; its
  lookup tables are resolved and it is decompiled into instructions (its own compute budget
  dropped: the merged transaction sets one). An order that needs a second signer (an RFQ
  maker, Jupiter's gas payer) cannot be merged: it is skipped (``needs_other_signer``). A
  sell's order is asked again with the slippage the round trip can afford.
* Titan: quotes come from WebSocket streams (:mod:`galileo.strategy.titan`: one connection per
  token) and already carry instructions; the compute budget comes from the route's
  ``computeUnitsSafe``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from broker.results import Quote, SwapInstructions, TitanQuote, UltraOrderResult
from broker.types import JobOutcome
from galileo.chain import ChainState
from galileo.client import FarmClient
from galileo.landing import leg_of
from galileo.strategy.titan import TitanStreams
from galileo.tx import SwapLeg, is_compute_budget
from galileo.tx.budget import decode_compute_unit_limit, is_compute_unit_limit
from galileo.tx.decompile import decompile, lookup_addresses, message_of
from galileo.tx.errors import TxBuildError
from galileo.tx.slippage import min_out as min_out_of
from galileo.tx.slippage import slippage_for
from galileo.upstreams import QuoteRequest, Upstreams

__all__ = ["Leg", "LegError", "LegName", "LegQuote", "make_leg"]

LegName = Literal["jupiter", "dflow", "ultra", "titan"]
Aggregator = Literal["jupiter", "dflow"]


class LegError(RuntimeError):
    """A leg could not be quoted or turned into instructions; ``result`` names why, as outcomes do."""

    def __init__(self, message: str, result: str = "failed") -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True, slots=True)
class LegQuote:
    provider: LegName
    request: QuoteRequest
    in_amount: int
    out_amount: int
    ip: str | None  # the IP that served the quote (or holds the Titan stream)
    latency: float
    value: Quote | UltraOrderResult | TitanQuote
    received: float = 0.0  # when the engine got it (its clock; 0: not stamped), for freshness
    min_out: int = 0  # what the route pays at least, or fails (its otherAmountThreshold)

    @property
    def sure_out(self) -> int:
        """What the leg delivers for certain if it lands: its minimum out (its out if none is known)."""
        return self.min_out or self.out_amount


class Leg:
    """Base: ``quote`` a leg, then ``swap_leg`` its instructions."""

    name: LegName
    upstream: str | None = None  # the upstream each quote is a job of (None: quotes come from a stream)

    def __init__(self, farm: FarmClient, upstreams: Upstreams, chain: ChainState, user: str) -> None:
        self.farm = farm
        self.upstreams = upstreams
        self.chain = chain
        self.user = user

    async def quote(self, req: QuoteRequest, prefer_ip: str | None, task: str) -> LegQuote:
        """Quote ``req`` (a job labelled ``task``: quote_buy, quote_sell, price); raises LegError."""
        raise NotImplementedError

    async def swap_leg(self, q: LegQuote, min_out: int | None = None) -> SwapLeg:
        """The leg's instructions; with ``min_out``, a route that pays at least that or fails."""
        raise NotImplementedError


def _fail(what: str, out: JobOutcome) -> LegError:
    result = "empty" if out.ok else out.result  # answered, but no usable quote
    return LegError(f"{what}: {out.result} {out.error}".strip(), result)


def _short(q: LegQuote, min_out: int) -> LegError:
    return LegError(f"{q.provider} quoted {q.out_amount}, below the {min_out} the round trip needs", "short")


class AggregatorLeg(Leg):
    """Jupiter or DFlow: quote, then swap-instructions on the quote's IP."""

    def __init__(self, name: Aggregator, farm: FarmClient, upstreams: Upstreams, chain: ChainState, user: str) -> None:
        super().__init__(farm, upstreams, chain, user)
        self.name = name
        self.upstream = name

    async def quote(self, req: QuoteRequest, prefer_ip: str | None, task: str) -> LegQuote:
        out = await self.farm.run(self.upstreams.quote(req, prefer_ip=prefer_ip, task=task, provider=self.name))
        if not out.ok or not isinstance(out.value, Quote) or out.value.out_amount <= 0:
            raise _fail(f"{self.name} quote", out)
        q = out.value
        return LegQuote(
            self.name, req, q.in_amount, q.out_amount, out.ip, out.latency, q, min_out=q.other_amount_threshold
        )

    async def swap_leg(self, q: LegQuote, min_out: int | None = None) -> SwapLeg:
        assert isinstance(q.value, Quote)
        if min_out is not None and min_out > q.out_amount:
            raise _short(q, min_out)
        try:
            spec = self.upstreams.swap_instructions(
                q.value.raw, self.user, prefer_ip=q.ip, provider=self.name, min_out=min_out
            )
        except ValueError as exc:
            raise LegError(f"{self.name} quote: {exc}", "bad_quote") from None
        out = await self.farm.run(spec)
        if not out.ok or not isinstance(out.value, SwapInstructions):
            raise _fail(f"{self.name} swap-instructions", out)
        sure = min_out_of(q.out_amount, slippage_for(q.out_amount, min_out) or 0) if min_out else q.sure_out
        return leg_of(out.value, q.request.input_mint, q.request.output_mint, label=self.name, min_out=sure)


class UltraLeg(Leg):
    name: LegName = "ultra"
    upstream = "ultra"

    async def quote(self, req: QuoteRequest, prefer_ip: str | None, task: str, slippage_bps: int = 0) -> LegQuote:
        out = await self.farm.run(
            self.upstreams.ultra_order(req, self.user, prefer_ip=prefer_ip, task=task, slippage_bps=slippage_bps)
        )
        if not out.ok or not isinstance(out.value, UltraOrderResult):
            raise _fail("ultra order", out)
        order = out.value
        if not order.transaction or order.out_amount <= 0:
            raise LegError(f"ultra order without a transaction: {order.error_message or order.error_code}", "empty")
        self._check_signers(order)
        return LegQuote(
            "ultra",
            req,
            order.in_amount,
            order.out_amount,
            out.ip,
            out.latency,
            order,
            min_out=order.other_amount_threshold,
        )

    def _check_signers(self, order: UltraOrderResult) -> None:
        """An order we cannot sign alone (an RFQ maker, a gas payer) is no leg of ours: skipped, counted."""
        try:
            message = message_of(order.transaction)
        except TxBuildError as exc:
            raise LegError(f"ultra transaction: {exc}") from None
        signers = message.account_keys[: message.header.num_required_signatures]
        if order.gasless or [str(k) for k in signers] != [self.user]:
            others = ", ".join(str(k) for k in signers if str(k) != self.user) or "a gas payer"
            raise LegError(
                f"ultra {order.router} order needs {others} to sign too: cannot be merged, skipped",
                "needs_other_signer",
            )

    async def swap_leg(self, q: LegQuote, min_out: int | None = None) -> SwapLeg:
        assert isinstance(q.value, UltraOrderResult)
        if min_out is not None and min_out > q.sure_out:
            raise _short(q, min_out)
        bps = slippage_for(q.out_amount, min_out) if min_out is not None else None
        if bps:  # the order was asked with slippage 0: ask again with what the round trip can afford
            q = await self.quote(q.request, q.ip, "swap_instructions", slippage_bps=bps)
            if min_out is not None and q.sure_out < min_out:
                raise _short(q, min_out)
        assert isinstance(q.value, UltraOrderResult)
        try:
            message = message_of(q.value.transaction)
            alts = lookup_addresses(message)
            tables = await self.chain.lookup_tables(alts) if alts else []
            instructions = decompile(message, tables)
        except TxBuildError as exc:
            raise LegError(f"ultra transaction: {exc}") from None
        limit = next((decode_compute_unit_limit(ix.data) for ix in instructions if is_compute_unit_limit(ix)), None)
        body = tuple(ix for ix in instructions if not is_compute_budget(ix))
        return SwapLeg(
            swap=body,
            compute_unit_limit=limit,
            alts=tuple(alts),
            input_mint=q.request.input_mint,
            output_mint=q.request.output_mint,
            label="ultra",
            min_out=q.sure_out,
        )


class TitanLeg(Leg):
    name: LegName = "titan"

    def __init__(
        self, farm: FarmClient, upstreams: Upstreams, chain: ChainState, user: str, streams: TitanStreams, wait: float
    ) -> None:
        super().__init__(farm, upstreams, chain, user)
        self.streams = streams
        self.wait = wait

    async def quote(self, req: QuoteRequest, prefer_ip: str | None, task: str) -> LegQuote:
        got = await self.streams.quote_for(req, self.wait)
        if got is None:
            raise LegError("no titan stream quote for this (pair, size)", "no_stream")
        quote, ip = got
        sure = min_out_of(quote.out_amount, quote.slippage_bps)
        return LegQuote("titan", req, quote.in_amount, quote.out_amount, ip, 0.0, quote, min_out=sure)

    async def swap_leg(self, q: LegQuote, min_out: int | None = None) -> SwapLeg:
        assert isinstance(q.value, TitanQuote)
        if min_out is not None and min_out > q.sure_out:  # a stream's route is fixed: it is what it is
            raise _short(q, min_out)
        t = q.value
        return SwapLeg(
            swap=tuple(t.instructions),
            compute_unit_limit=t.compute_units_safe or t.compute_units or None,
            alts=tuple(t.alts),
            input_mint=q.request.input_mint,
            output_mint=q.request.output_mint,
            label="titan",
            min_out=q.sure_out,
        )


def make_leg(
    name: LegName,
    farm: FarmClient,
    upstreams: Upstreams,
    chain: ChainState,
    user: str,
    streams: TitanStreams | None,
    titan_wait: float,
) -> Leg:
    if name == "jupiter" or name == "dflow":
        return AggregatorLeg(name, farm, upstreams, chain, user)
    if name == "ultra":
        return UltraLeg(farm, upstreams, chain, user)
    if name == "titan":
        assert streams is not None
        return TitanLeg(farm, upstreams, chain, user, streams, titan_wait)
    raise ValueError(f"unknown leg provider {name!r}")
