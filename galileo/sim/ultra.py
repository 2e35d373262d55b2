"""Jupiter Ultra: ``/order`` (quote + unsigned transaction) and ``/execute`` (reference §2).

``/execute`` lands the signed order as a plain transaction and answers once it has run: the
amounts the swap really moved, or ``Failed`` with the program's error code (6001 when the
price moved past the order's slippage) and what failed.

Ultra picks an order's slippage itself (its documented ``/order`` takes none; the example
answer carries ``"slippageBps": 26``): without ``slippageBps`` the simulator uses
``DEFAULT_SLIPPAGE_BPS``, enough for the two slots before the order runs. The web app's
undocumented ``slippageBps`` is honoured when given.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from typing import Any

import orjson
from aiohttp import web
from solders.message import to_bytes_versioned
from solders.transaction import VersionedTransaction

from galileo.sim.common import BadRequest, Priority, b64, compile_unsigned, parse_pubkey, read_json_object
from galileo.sim.errors import json_response
from galileo.sim.instructions import SwapRequest, build_swap
from galileo.sim.jupiter import quote_json
from galileo.sim.ledger import TxRejected, decode_tx
from galileo.sim.prices import FEE_PPM, exact_in_out
from galileo.sim.state import SimState, UltraOrder, state_of

__all__ = ["DEFAULT_SLIPPAGE_BPS", "ORDER_TTL_SECONDS", "add_routes"]

DEFAULT_SLIPPAGE_BPS = 50  # what Ultra chooses when the order names none (its own estimator)

ORDER_TTL_SECONDS = 120.0
_SERVICE = "ultra"
_PRIORITY_FEE_LAMPORTS = 5_000
_SIGNATURE_FEE = 5_000
_REJECT_CODES = {
    "malformed": (-2, "Invalid signed transaction"),
    "too_large": (-2, "Invalid signed transaction: too large"),
    "signature": (-2, "Invalid signed transaction: signature verification failed"),
    "unsigned": (-1003, "Transaction is not fully signed"),
    "blockhash_not_found": (-1004, "Invalid block height: blockhash not found"),
    "expired": (-1005, "Transaction expired: block height exceeded"),
    "already_processed": (-1000, "Failed to land: transaction already processed"),
}


def _prune(state: SimState, now: float) -> None:
    orders = state.orders
    while orders:
        first = next(iter(orders.values()))
        if now - first.created < ORDER_TTL_SECONDS:
            break
        del orders[first.request_id]


async def order(request: web.Request) -> web.Response:
    """GET /jupiter/ultra/v1/order."""
    started = time.perf_counter()
    state = state_of(request)
    query = dict(request.query)
    query.setdefault("slippageBps", str(DEFAULT_SLIPPAGE_BPS))
    body = quote_json(state, query, _SERVICE)
    if isinstance(body, web.Response):
        assert isinstance(body.body, bytes)
        return json_response({"error": orjson.loads(body.body)["error"]}, body.status)
    taker = query.get("taker")
    try:
        user = parse_pubkey(taker, "taker") if taker else None
    except BadRequest as exc:
        return json_response({"error": str(exc)}, 400)
    request_id = state.new_uuid()
    slot = body["contextSlot"]
    routers = ("aggregator", "aggregator", "jupiterz", "dflow")
    router = routers[slot % len(routers)]
    transaction = ""
    if user is not None:
        in_mint, out_mint = body["inputMint"], body["outputMint"]
        amm = body["routePlan"][0]["swapInfo"]["ammKey"]
        pool = next(p for p in state.accounts.pools[(in_mint, out_mint)] if str(p.amm) == amm)
        exact_out = body["swapMode"] == "ExactOut"
        threshold = int(body["otherAmountThreshold"])
        plan = build_swap(
            SwapRequest(
                aggregator="dflow" if router == "dflow" else "jupiter",
                user=user,
                in_mint=in_mint,
                out_mint=out_mint,
                in_amount=threshold if exact_out else int(body["inAmount"]),
                out_amount=int(body["outAmount"]),
                min_out=int(body["outAmount"]) if exact_out else threshold,
                slippage_bps=body["slippageBps"],
                pool=pool,
            )
        )
        state.seen(user)
        cu_limit = plan.compute_units_safe
        priority = Priority(_PRIORITY_FEE_LAMPORTS * 1_000_000 // cu_limit, _PRIORITY_FEE_LAMPORTS)
        bh, _, _ = state.ledger.issue_blockhash(state.now())
        raw = compile_unsigned(user, plan, state.accounts, bh, cu_limit, priority)
        transaction = b64(raw)
        now = state.now()
        _prune(state, now)
        state.orders[request_id] = UltraOrder(
            request_id,
            to_bytes_versioned(VersionedTransaction.from_bytes(raw).message),
            str(user),
            in_mint,
            out_mint,
            int(body["inAmount"]),
            int(body["outAmount"]),
            now,
            pool.index,
        )
    for extra in (
        "contextSlot",
        "timeTaken",
        "simplerRouteUsed",
        "mostReliableAmmsQuoteReport",
        "useIncurredSlippageForQuoting",
        "otherRoutePlans",
        "loadedLongtailToken",
        "instructionVersion",
    ):
        body.pop(extra, None)
    usd = float(body.pop("swapUsdValue"))
    body.update(
        {
            "mode": "ultra",
            "feeBps": 0,
            "feeMint": body["inputMint"],
            "signatureFeeLamports": _SIGNATURE_FEE if user else 0,
            "prioritizationFeeLamports": _PRIORITY_FEE_LAMPORTS if user else 0,
            "rentFeeLamports": 0,
            "swapType": "aggregator",
            "router": router,
            "transaction": transaction,
            "gasless": False,
            "requestId": request_id,
            "totalTime": (time.perf_counter() - started) * 1000.0,
            "taker": taker or None,
            "inUsdValue": usd,
            "outUsdValue": usd * (1.0 - float(body["priceImpactPct"])),
            "swapUsdValue": usd,
            "priceImpact": -float(body["priceImpactPct"]) * 100.0,
            "expireAt": str(int(time.time() + ORDER_TTL_SECONDS)),
        }
    )
    return json_response(body)


def _failed(code: int, error: str, signature: str, slot: int) -> web.Response:
    return json_response({"status": "Failed", "signature": signature, "slot": str(slot), "code": code, "error": error})


async def execute(request: web.Request) -> web.Response:
    """POST /jupiter/ultra/v1/execute: verify, land, and answer once the transaction has landed."""
    state = state_of(request)
    try:
        body = await read_json_object(request)
    except BadRequest as exc:
        return json_response({"error": str(exc), "code": -5}, 400)
    request_id, signed = body.get("requestId"), body.get("signedTransaction")
    if not isinstance(request_id, str) or not request_id:
        return json_response({"error": "Missing requestId", "code": -4}, 400)
    if not isinstance(signed, str) or not signed:
        return json_response({"error": "Missing signedTransaction", "code": -5}, 400)
    now = state.now()
    slot = state.ledger.slot(now)
    order = state.orders.get(request_id)
    if order is None:
        state.stats.send("ultra", False, "unknown_request_id")
        return _failed(-1, "Order not found: requestId is unknown or expired", "", slot)
    try:
        raw = base64.b64decode(signed, validate=True)
        decoded = decode_tx(raw, verify=False)
    except (binascii.Error, ValueError, TxRejected):
        state.stats.send("ultra", False, "malformed")
        return _failed(-2, "Invalid signed transaction", "", slot)
    sig = decoded.signature
    if to_bytes_versioned(decoded.tx.message) != order.message:
        state.stats.send("ultra", False, "message_mismatch")
        return _failed(-3, "Invalid message bytes: transaction does not match the order", sig, slot)
    try:
        results = decoded.tx.verify_with_results()
        if not all(results):
            unsigned = any(bytes(s) == bytes(64) for s in decoded.tx.signatures)
            raise TxRejected("unsigned" if unsigned else "signature", "signature verification failure")
        landing = state.ledger.pending_landing(sig)
        if landing is None:
            state.settle()
            state.ledger.check_tx(decoded, now)
            state.seen(decoded.tx.message.account_keys[0])
            landing = state.ledger.accept(decoded.signatures, "ultra", now, txs=(decoded.tx,))
            state.stats.send("ultra", True)
    except TxRejected as exc:
        state.stats.send("ultra", False, exc.reason)
        code, message = _REJECT_CODES[exc.reason]
        return _failed(code, message, sig, slot)
    await asyncio.sleep(state.ledger.seconds_until(landing.land_slot, state.now()))
    state.settle()
    err = landing.err_of(sig)
    if err is not None:
        custom = _custom_code(err)
        return _failed(custom if custom is not None else -1000, f"Failed to land: {landing.error}", sig, slot)
    out = order.out_amount
    if landing.ran:  # what the pool paid at the slot the swap ran in
        x, y = state.prices.reserves(order.in_mint, order.out_mint, order.pool, landing.land_slot)
        out = exact_in_out(x, y, FEE_PPM, order.in_amount)
    amounts: dict[str, Any] = {
        "totalInputAmount": str(order.in_amount),
        "totalOutputAmount": str(out),
        "inputAmountResult": str(order.in_amount),
        "outputAmountResult": str(out),
        "swapEvents": [
            {
                "inputMint": order.in_mint,
                "inputAmount": str(order.in_amount),
                "outputMint": order.out_mint,
                "outputAmount": str(out),
            }
        ],
    }
    return json_response({"status": "Success", "signature": sig, "slot": str(landing.land_slot), "code": 0, **amounts})


def _custom_code(err: Any) -> int | None:
    if isinstance(err, dict) and "InstructionError" in err:
        inner = err["InstructionError"][1]
        if isinstance(inner, dict) and "Custom" in inner:
            return int(inner["Custom"])
    return None


def add_routes(app: web.Application) -> None:
    """Mount Ultra under /jupiter/ultra/v1."""
    app.router.add_get("/jupiter/ultra/v1/order", order)
    app.router.add_post("/jupiter/ultra/v1/execute", execute)
