"""Jupiter Swap API v1 ("Metis"): ``/quote``, ``/swap-instructions``, ``/swap`` (reference §1)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from solders.pubkey import Pubkey

from galileo.sim.common import (
    BadRequest,
    Priority,
    b64,
    compile_unsigned,
    decimal_str,
    max_in,
    min_out,
    parse_priority,
    parse_pubkey,
    parse_quote_query,
    read_json_object,
    route_pool,
)
from galileo.sim.errors import json_response
from galileo.sim.instructions import (
    SwapPlan,
    SwapRequest,
    build_swap,
    compute_unit_limit,
    compute_unit_price,
    ix_json,
)
from galileo.sim.state import SimState, state_of

__all__ = ["add_routes"]

_SERVICE = "jupiter"


def _error(message: str, code: str, status: int = 400) -> web.Response:
    return json_response({"error": message, "errorCode": code}, status)


def _no_route() -> web.Response:
    return _error("Could not find any route", "COULD_NOT_FIND_ANY_ROUTE")


def quote_json(state: SimState, query: dict[str, str], service: str) -> dict[str, Any] | web.Response:
    """A Jupiter-shaped quote (shared with Ultra), or the error response to send."""
    started = time.perf_counter()
    try:
        p = parse_quote_query(query)
    except BadRequest as exc:
        return _error(str(exc), "INVALID_REQUEST")
    if p.input_mint == p.output_mint:
        return _error("Circular arbitrage is disabled", "CIRCULAR_ARBITRAGE_IS_DISABLED")
    slot = state.slot()
    preferred = state.prices.pool_index(service, p.input_mint, p.output_mint, slot)
    pool = route_pool(state.accounts, p.input_mint, p.output_mint, preferred, p.dexes, p.exclude_dexes)
    q = (
        state.prices.quote(service, p.input_mint, p.output_mint, p.amount, p.exact_out, slot, pool.index)
        if pool
        else None
    )
    if pool is None or q is None:
        return _no_route()
    threshold = max_in(q.in_amount, p.slippage_bps) if p.exact_out else min_out(q.out_amount, p.slippage_bps)
    others = [x for x in state.accounts.pools[(p.input_mint, p.output_mint)] if x is not pool]
    return {
        "inputMint": p.input_mint,
        "inAmount": str(q.in_amount),
        "outputMint": p.output_mint,
        "outAmount": str(q.out_amount),
        "otherAmountThreshold": str(threshold),
        "swapMode": "ExactOut" if p.exact_out else "ExactIn",
        "slippageBps": p.slippage_bps,
        "platformFee": None,
        "priceImpactPct": decimal_str(q.price_impact),
        "routePlan": [
            {
                "swapInfo": {
                    "ammKey": str(pool.amm),
                    "label": pool.label,
                    "inputMint": p.input_mint,
                    "outputMint": p.output_mint,
                    "inAmount": str(q.in_amount),
                    "outAmount": str(q.out_amount),
                    "feeAmount": str(q.fee_amount),
                    "feeMint": p.input_mint,
                },
                "percent": 100,
                "bps": 10000,
            }
        ],
        "contextSlot": slot,
        "timeTaken": time.perf_counter() - started,
        "swapUsdValue": decimal_str(q.usd_value),
        "simplerRouteUsed": False,
        "mostReliableAmmsQuoteReport": {"info": {str(x.amm): "Not the best quote." for x in others}},
        "useIncurredSlippageForQuoting": None,
        "otherRoutePlans": None,
        "loadedLongtailToken": False,
        "instructionVersion": "V1",
    }


async def quote(request: web.Request) -> web.Response:
    """GET /jupiter/swap/v1/quote."""
    body = quote_json(state_of(request), dict(request.query), _SERVICE)
    return body if isinstance(body, web.Response) else json_response(body)


def _int_field(quote: dict[str, Any], name: str) -> int:
    value = quote.get(name)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadRequest(f"quoteResponse.{name} must be an integer amount string, got {value!r}") from None


class _SwapBuild:
    """A parsed swap request and its instruction plan."""

    def __init__(self, state: SimState, body: dict[str, Any]) -> None:
        q = body.get("quoteResponse")
        if not isinstance(q, dict):
            raise BadRequest("quoteResponse is required and must be the /quote object")
        self.user: Pubkey = parse_pubkey(body.get("userPublicKey"), "userPublicKey")
        in_mint, out_mint = q.get("inputMint"), q.get("outputMint")
        parse_pubkey(in_mint, "quoteResponse.inputMint")
        parse_pubkey(out_mint, "quoteResponse.outputMint")
        assert isinstance(in_mint, str) and isinstance(out_mint, str)
        in_amount, out_amount = _int_field(q, "inAmount"), _int_field(q, "outAmount")
        threshold = _int_field(q, "otherAmountThreshold")
        slippage = q.get("slippageBps", 0)
        if not isinstance(slippage, int):
            raise BadRequest("quoteResponse.slippageBps must be an integer")
        exact_out = q.get("swapMode") == "ExactOut"
        amm = None
        plan_json = q.get("routePlan")
        if isinstance(plan_json, list) and plan_json and isinstance(plan_json[0], dict):
            amm = (plan_json[0].get("swapInfo") or {}).get("ammKey")
        pools = state.accounts.pools.get((in_mint, out_mint))
        if pools is None:
            raise BadRequest("quoteResponse routes a pair this simulator does not know")
        pool = next((p for p in pools if str(p.amm) == amm), pools[0])
        self.plan: SwapPlan = build_swap(
            SwapRequest(
                aggregator="jupiter",
                user=self.user,
                in_mint=in_mint,
                out_mint=out_mint,
                in_amount=threshold if exact_out else in_amount,
                out_amount=out_amount,
                min_out=out_amount if exact_out else threshold,
                slippage_bps=0 if exact_out else slippage,  # ExactOut: at least the asked output
                pool=pool,
                wrap_unwrap=body.get("wrapAndUnwrapSol", True) is not False,
            )
        )
        state.seen(self.user)
        dynamic = body.get("dynamicComputeUnitLimit") is True
        self.dynamic = dynamic
        self.cu_limit = self.plan.compute_units_safe if dynamic else 1_400_000
        self.priority: Priority = parse_priority(body, self.cu_limit)
        self.plan.other = self.priority.tip_instructions(self.user, state.slot())


async def swap_instructions(request: web.Request) -> web.Response:
    """POST /jupiter/swap/v1/swap-instructions."""
    state = state_of(request)
    try:
        b = _SwapBuild(state, await read_json_object(request))
    except BadRequest as exc:
        return _error(str(exc), "INVALID_REQUEST")
    bh, last_valid, slot = state.ledger.issue_blockhash(state.now())
    budget = [compute_unit_limit(b.cu_limit)]
    if b.priority.micro_lamports:
        budget.append(compute_unit_price(b.priority.micro_lamports))
    wall = time.time()
    return json_response(
        {
            "tokenLedgerInstruction": None,
            "computeBudgetInstructions": [ix_json(ix) for ix in budget],
            "setupInstructions": [ix_json(ix) for ix in b.plan.setup],
            "swapInstruction": ix_json(b.plan.swap),
            "cleanupInstruction": ix_json(b.plan.cleanup[0]) if b.plan.cleanup else None,
            "otherInstructions": [ix_json(ix) for ix in b.plan.other],
            "addressLookupTableAddresses": [str(k) for k in b.plan.alts],
            "prioritizationFeeLamports": b.priority.fee_lamports or b.priority.jito_tip,
            "computeUnitLimit": b.cu_limit,
            "prioritizationType": b.priority.prioritization_type(25_000),
            "simulationSlot": slot if b.dynamic else None,
            "dynamicSlippageReport": None,
            "simulationError": None,
            "addressesByLookupTableAddress": None,
            "blockhashWithMetadata": {
                "blockhash": list(bytes(bh)),
                "lastValidBlockHeight": last_valid,
                "fetchedAt": {"secs_since_epoch": int(wall), "nanos_since_epoch": int(wall % 1 * 1e9)},
            },
        }
    )


async def swap(request: web.Request) -> web.Response:
    """POST /jupiter/swap/v1/swap: the whole swap as one unsigned base64 v0 transaction."""
    state = state_of(request)
    try:
        b = _SwapBuild(state, await read_json_object(request))
    except BadRequest as exc:
        return _error(str(exc), "INVALID_REQUEST")
    bh, last_valid, _ = state.ledger.issue_blockhash(state.now())
    raw = compile_unsigned(b.user, b.plan, state.accounts, bh, b.cu_limit, b.priority)
    return json_response(
        {
            "swapTransaction": b64(raw),
            "lastValidBlockHeight": last_valid,
            "prioritizationFeeLamports": b.priority.fee_lamports or b.priority.jito_tip,
            "computeUnitLimit": b.cu_limit,
            "prioritizationType": b.priority.prioritization_type(25_000),
            "dynamicSlippageReport": None,
            "simulationError": None,
        }
    )


def add_routes(app: web.Application) -> None:
    """Mount the Jupiter Swap API v1 under /jupiter/swap/v1."""
    app.router.add_get("/jupiter/swap/v1/quote", quote)
    app.router.add_post("/jupiter/swap/v1/swap-instructions", swap_instructions)
    app.router.add_post("/jupiter/swap/v1/swap", swap)
