"""DFlow aggregator: ``/quote`` and ``/swap-instructions`` (reference §3)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from galileo.sim.common import (
    BadRequest,
    decimal_str,
    min_out,
    parse_priority,
    parse_pubkey,
    parse_quote_query,
    read_json_object,
    route_pool,
)
from galileo.sim.errors import json_response
from galileo.sim.instructions import SwapRequest, build_swap, compute_unit_limit, compute_unit_price, ix_json
from galileo.sim.prices import MINTS
from galileo.sim.state import state_of

__all__ = ["add_routes"]

_SERVICE = "dflow"


def _error(code: str, msg: str, status: int = 400) -> web.Response:
    return json_response({"code": code, "msg": msg}, status)


async def quote(request: web.Request) -> web.Response:
    """GET /dflow/quote (ExactIn only, as DFlow's /quote)."""
    state = state_of(request)
    query = {k: v for k, v in request.query.items() if k != "swapMode"}
    try:
        p = parse_quote_query(query)
    except BadRequest as exc:
        return _error("invalid_request", str(exc))
    slot = state.slot()
    preferred = state.prices.pool_index(_SERVICE, p.input_mint, p.output_mint, slot)
    pool = route_pool(state.accounts, p.input_mint, p.output_mint, preferred, p.dexes, p.exclude_dexes, venue=True)
    q = state.prices.quote(_SERVICE, p.input_mint, p.output_mint, p.amount, False, slot, pool.index) if pool else None
    if pool is None or q is None:
        return _error("route_not_found", "No route found")
    threshold = str(min_out(q.out_amount, p.slippage_bps))
    return json_response(
        {
            "inputMint": p.input_mint,
            "inAmount": str(q.in_amount),
            "outputMint": p.output_mint,
            "outAmount": str(q.out_amount),
            "otherAmountThreshold": threshold,
            "minOutAmount": threshold,
            "slippageBps": p.slippage_bps,
            "platformFee": None,
            "outTransferFee": None,
            "priceImpactPct": decimal_str(q.price_impact),
            "routePlan": [
                {
                    "venue": pool.venue,
                    "marketKey": str(pool.amm),
                    "inputMint": p.input_mint,
                    "outputMint": p.output_mint,
                    "inAmount": str(q.in_amount),
                    "outAmount": str(q.out_amount),
                    "inputMintDecimals": MINTS[p.input_mint].decimals,
                    "outputMintDecimals": MINTS[p.output_mint].decimals,
                }
            ],
            "contextSlot": slot,
            "requestId": state.new_uuid(),
            "forJitoBundle": False,
            "simulatedComputeUnits": None,
        }
    )


def _amount(q: dict[str, Any], name: str) -> int:
    try:
        return int(q[name])
    except (KeyError, TypeError, ValueError):
        raise BadRequest(f"quoteResponse.{name} is required and must be an integer amount string") from None


async def swap_instructions(request: web.Request) -> web.Response:
    """POST /dflow/swap-instructions."""
    state = state_of(request)
    try:
        body = await read_json_object(request)
        q = body.get("quoteResponse")
        if not isinstance(q, dict):
            raise BadRequest("quoteResponse is required")
        user = parse_pubkey(body.get("userPublicKey"), "userPublicKey")
        state.seen(user)
        in_mint, out_mint = q.get("inputMint"), q.get("outputMint")
        parse_pubkey(in_mint, "quoteResponse.inputMint")
        parse_pubkey(out_mint, "quoteResponse.outputMint")
        assert isinstance(in_mint, str) and isinstance(out_mint, str)
        pools = state.accounts.pools.get((in_mint, out_mint))
        if pools is None:
            raise BadRequest("quoteResponse routes a pair this simulator does not know")
        if body.get("computeUnitPriceMicroLamports") is not None and body.get("prioritizationFeeLamports") is not None:
            raise BadRequest("computeUnitPriceMicroLamports and prioritizationFeeLamports are mutually exclusive")
        slippage = q.get("slippageBps", 0)
        if not isinstance(slippage, int):
            raise BadRequest("quoteResponse.slippageBps must be an integer")
        plan_json = q.get("routePlan")
        market = plan_json[0].get("marketKey") if isinstance(plan_json, list) and plan_json else None
        pool = next((p for p in pools if str(p.amm) == market), pools[0])
        threshold = q.get("minOutAmount", q.get("otherAmountThreshold"))
        plan = build_swap(
            SwapRequest(
                aggregator="dflow",
                user=user,
                in_mint=in_mint,
                out_mint=out_mint,
                in_amount=_amount(q, "inAmount"),
                out_amount=_amount(q, "outAmount"),
                min_out=_amount({"minOutAmount": threshold}, "minOutAmount"),
                slippage_bps=slippage,
                pool=pool,
                wrap_unwrap=body.get("wrapAndUnwrapSol", True) is not False,
            )
        )
        cu_limit = plan.compute_units_safe if body.get("dynamicComputeUnitLimit") is True else 200_000
        cu_limit = max(cu_limit, plan.compute_units_safe)
        priority = parse_priority(body, cu_limit)
    except BadRequest as exc:
        return _error("invalid_request", str(exc))
    plan.other = priority.tip_instructions(user, state.slot())
    budget = [compute_unit_limit(cu_limit)]
    if priority.micro_lamports:
        budget.append(compute_unit_price(priority.micro_lamports))
    bh, last_valid, _ = state.ledger.issue_blockhash(state.now())
    asked = priority.micro_lamports or priority.jito_tip
    return json_response(
        {
            "computeBudgetInstructions": [ix_json(ix) for ix in budget],
            "setupInstructions": [ix_json(ix) for ix in plan.setup],
            "swapInstruction": ix_json(plan.swap),
            "cleanupInstructions": [ix_json(ix) for ix in plan.cleanup],
            "otherInstructions": [ix_json(ix) for ix in plan.other],
            "addressLookupTableAddresses": [str(k) for k in plan.alts],
            "blockhashWithMetadata": {"blockhash": str(bh), "lastValidBlockHeight": last_valid},
            "computeUnitLimit": cu_limit,
            "prioritizationFeeLamports": priority.fee_lamports or priority.jito_tip,
            "prioritizationType": priority.prioritization_type(25_000) if asked else None,
        }
    )


def add_routes(app: web.Application) -> None:
    """Mount DFlow under /dflow."""
    app.router.add_get("/dflow/quote", quote)
    app.router.add_post("/dflow/swap-instructions", swap_instructions)
