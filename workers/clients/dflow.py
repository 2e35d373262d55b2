"""DFlow aggregator: ``GET /quote`` and ``POST /swap-instructions`` (reference §3).

Auth: ``x-api-key`` (a SecretRef); the public host is keyless but tightly limited. Errors:
429 → rate_limited, ``{"code", "msg"}`` with 4xx/5xx → http_error carrying ``code: msg``
(e.g. ``route_not_found``). Unlike Jupiter, swap-instructions returns ``cleanupInstructions``
(a list), a base58 blockhash, and always ``blockhashWithMetadata`` and ``computeUnitLimit``.
"""

from __future__ import annotations

import msgspec

from broker.jobs import DflowQuote, DflowSwapInstructions
from broker.protocol import Outcome
from broker.results import Quote
from workers.clients.instructions import BlockhashMeta, JsonInstruction, from_json
from workers.clients.swap import get_json, post_swap, swap_instructions_result
from workers.clients.transport import Call, query, upstream

__all__ = ["dflow_quote", "dflow_swap_instructions"]


class _Leg(msgspec.Struct, rename="camel"):
    venue: str = ""


class _QuoteBody(msgspec.Struct, rename="camel", kw_only=True):
    """The fields DFlow documents as required; the rest is tolerated and kept in ``raw``."""

    context_slot: int
    in_amount: int
    input_mint: str
    min_out_amount: int
    other_amount_threshold: int
    out_amount: int
    output_mint: str
    price_impact_pct: float
    route_plan: list[_Leg]
    slippage_bps: int
    request_id: str = ""


class _SwapBody(msgspec.Struct, rename="camel", kw_only=True):
    compute_budget_instructions: list[JsonInstruction]
    setup_instructions: list[JsonInstruction]
    swap_instruction: JsonInstruction
    address_lookup_table_addresses: list[str]
    blockhash_with_metadata: BlockhashMeta
    compute_unit_limit: int
    cleanup_instructions: list[JsonInstruction] = []
    other_instructions: list[JsonInstruction] = []
    prioritization_fee_lamports: int = 0


_quote_decoder = msgspec.json.Decoder(_QuoteBody, strict=False)  # amounts are decimal strings
_swap_decoder = msgspec.json.Decoder(_SwapBody, strict=False)


@upstream(DflowQuote)
async def dflow_quote(call: Call, job: DflowQuote) -> Outcome:
    """GET {base_url}/quote → Quote (ExactIn; ``other_amount_threshold`` is the min out)."""
    params = query(
        inputMint=job.input_mint,
        outputMint=job.output_mint,
        amount=job.amount,
        slippageBps=job.slippage_bps,
        dexes=job.dexes,
        excludeDexes=job.exclude_dexes,
        onlyDirectRoutes=job.only_direct_routes,
        maxRouteLength=job.max_route_length,
    )
    got = await get_json(call, job.base_url + "/quote", params, job.secret, _quote_decoder, "dflow /quote")
    if isinstance(got, Outcome):
        return got
    q, reply = got
    value = Quote(
        in_amount=q.in_amount,
        out_amount=q.out_amount,
        other_amount_threshold=q.other_amount_threshold,
        slippage_bps=q.slippage_bps,
        price_impact_pct=q.price_impact_pct,
        context_slot=q.context_slot,
        route=[leg.venue for leg in q.route_plan],
        request_id=q.request_id,
        raw=reply.body,
    )
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)


@upstream(DflowSwapInstructions)
async def dflow_swap_instructions(call: Call, job: DflowSwapInstructions) -> Outcome:
    """POST {base_url}/swap-instructions → SwapInstructions."""
    fields = {
        "userPublicKey": job.user_public_key,
        "wrapAndUnwrapSol": job.wrap_and_unwrap_sol,
        "dynamicComputeUnitLimit": job.dynamic_compute_unit_limit,
        "computeUnitPriceMicroLamports": job.compute_unit_price_micro_lamports,
        "prioritizationFeeLamports": job.prioritization_fee_lamports,
        "destinationTokenAccount": job.destination_token_account,
        "feeAccount": job.fee_account,
        "includeJitoSandwichMitigationAccount": job.include_jito_sandwich_mitigation_account,
        "preserveInputAta": job.preserve_input_ata,
    }
    what = "dflow /swap-instructions"
    got = await post_swap(call, job.base_url + "/swap-instructions", fields, job.quote, job.secret, _swap_decoder, what)
    if isinstance(got, Outcome):
        return got
    s, reply = got
    return swap_instructions_result(
        reply,
        what,
        compute_budget=from_json(s.compute_budget_instructions),
        setup=from_json(s.setup_instructions),
        swap=from_json([s.swap_instruction])[0],
        cleanup=from_json(s.cleanup_instructions),
        other=from_json(s.other_instructions),
        alts=s.address_lookup_table_addresses,
        compute_unit_limit=s.compute_unit_limit,
        prioritization_fee_lamports=s.prioritization_fee_lamports,
        blockhash=s.blockhash_with_metadata,
    )
