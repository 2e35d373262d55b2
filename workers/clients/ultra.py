"""Jupiter Ultra: ``GET /order`` and ``POST /execute`` (reference §2).

Auth: ``x-api-key`` on api.jup.ag (a SecretRef). Errors: 429 → rate_limited; ``{"error"}``
(order) or ``{"error", "code"}`` (execute) with 4xx/5xx → http_error. An execute answered
200 is ``ok`` only for ``status: Success`` with ``code: 0``; anything else (``Failed``, code
-1005 expired, -1 unknown requestId ...) is http_error with the code, message and signature
in ``error``.
"""

from __future__ import annotations

import base64

import msgspec

from broker.jobs import UltraExecute, UltraOrder
from broker.protocol import Outcome
from broker.results import UltraExecuteResult, UltraOrderResult
from workers.clients.swap import get_json
from workers.clients.transport import Call, decode_json, failed_reply, json_body, query, upstream

__all__ = ["ultra_execute", "ultra_order"]


class _SwapInfo(msgspec.Struct, rename="camel"):
    label: str = ""


class _RouteStep(msgspec.Struct, rename="camel"):
    swap_info: _SwapInfo


class _OrderBody(msgspec.Struct, rename="camel", kw_only=True):
    """What a client needs of /order (the bot treats the rest as optional; so do we)."""

    request_id: str
    in_amount: int
    out_amount: int
    other_amount_threshold: int = 0
    swap_mode: str = "ExactIn"
    slippage_bps: int = 0
    price_impact_pct: float = 0.0
    route_plan: list[_RouteStep] = []
    router: str = ""
    transaction: bytes | None = None  # base64, "" or null (no taker, or an errorCode)
    fee_bps: int = 0
    signature_fee_lamports: int = 0
    prioritization_fee_lamports: int = 0
    rent_fee_lamports: int = 0
    gasless: bool = False
    error_code: int | None = None
    error_message: str | None = None


class _ExecuteBody(msgspec.Struct, rename="camel", kw_only=True):
    code: int
    status: str = ""
    signature: str = ""
    slot: int | str | None = None  # documented as a string
    error: str = ""
    input_amount_result: int | None = None
    output_amount_result: int | None = None


_order_decoder = msgspec.json.Decoder(_OrderBody, strict=False)  # amounts are decimal strings
_execute_decoder = msgspec.json.Decoder(_ExecuteBody, strict=False)


def _int(value: int | str | None) -> int:
    if isinstance(value, int):
        return value
    return int(value) if value and value.isdigit() else 0


@upstream(UltraOrder)
async def ultra_order(call: Call, job: UltraOrder) -> Outcome:
    """GET {base_url}/order → UltraOrderResult (an unsigned transaction when ``taker`` is given)."""
    params = query(
        inputMint=job.input_mint,
        outputMint=job.output_mint,
        amount=job.amount,
        taker=job.taker,
        slippageBps=job.slippage_bps,
        swapMode=job.swap_mode,
        excludeRouters=job.exclude_routers,
        excludeDexes=job.exclude_dexes,
        referralAccount=job.referral_account,
        referralFee=job.referral_fee,
        payer=job.payer,
    )
    got = await get_json(call, job.base_url + "/order", params, job.secret, _order_decoder, "ultra /order")
    if isinstance(got, Outcome):
        return got
    o, reply = got
    value = UltraOrderResult(
        request_id=o.request_id,
        in_amount=o.in_amount,
        out_amount=o.out_amount,
        other_amount_threshold=o.other_amount_threshold,
        slippage_bps=o.slippage_bps,
        price_impact_pct=o.price_impact_pct,
        swap_mode=o.swap_mode,
        router=o.router,
        route=[step.swap_info.label for step in o.route_plan],
        transaction=o.transaction or b"",
        fee_bps=o.fee_bps,
        signature_fee_lamports=o.signature_fee_lamports,
        prioritization_fee_lamports=o.prioritization_fee_lamports,
        rent_fee_lamports=o.rent_fee_lamports,
        gasless=o.gasless,
        error_code=o.error_code or 0,
        error_message=o.error_message or "",
    )
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)


@upstream(UltraExecute)
async def ultra_execute(call: Call, job: UltraExecute) -> Outcome:
    """POST {base_url}/execute → UltraExecuteResult when the swap landed (Success, code 0)."""
    body = json_body(
        {"signedTransaction": base64.b64encode(job.signed_transaction).decode(), "requestId": job.request_id}
    )
    reply = await call.request("POST", job.base_url + "/execute", body=body, headers=call.auth(job.secret))
    if isinstance(reply, Outcome):
        return reply
    failed = failed_reply(reply)
    if failed is not None:
        return failed
    e = decode_json(_execute_decoder, reply, "ultra /execute")
    if isinstance(e, Outcome):
        return e
    if e.status != "Success" or e.code != 0:
        sig = f" (signature {e.signature})" if e.signature else ""
        return Outcome(
            result="http_error",
            status=reply.status,
            latency=reply.latency,
            error=f"Ultra execute {e.status or 'failed'}, code {e.code}: {e.error or 'no message'}{sig}"[:400],
        )
    value = UltraExecuteResult(
        status=e.status,
        signature=e.signature,
        slot=_int(e.slot),
        code=e.code,
        input_amount=e.input_amount_result or 0,
        output_amount=e.output_amount_result or 0,
    )
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)
