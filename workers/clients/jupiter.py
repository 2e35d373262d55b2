"""Jupiter Swap API v1 ("Metis"): ``GET /quote`` and ``POST /swap-instructions`` (reference §1).

Auth: ``x-api-key`` on api.jup.ag (a SecretRef), none on lite-api or a self-hosted binary.
Errors: 429 → rate_limited (Retry-After honoured), ``{"error", "errorCode"}`` with 4xx/5xx →
http_error carrying ``errorCode: error`` (e.g. ``COULD_NOT_FIND_ANY_ROUTE``).
"""

from __future__ import annotations

import msgspec

from broker.jobs import JupiterQuote, JupiterSwapInstructions
from broker.protocol import Outcome
from broker.results import Quote
from workers.clients.instructions import BlockhashMeta, JsonInstruction, from_json
from workers.clients.swap import get_json, post_swap, swap_instructions_result
from workers.clients.transport import Call, query, upstream

__all__ = ["jupiter_quote", "jupiter_swap_instructions"]


class _SwapInfo(msgspec.Struct, rename="camel"):
    label: str = ""


class _RouteStep(msgspec.Struct, rename="camel"):
    swap_info: _SwapInfo


class _QuoteBody(msgspec.Struct, rename="camel", kw_only=True):
    """The documented required fields of a /quote answer; anything else is tolerated and kept in ``raw``."""

    input_mint: str
    in_amount: int
    output_mint: str
    out_amount: int
    other_amount_threshold: int
    swap_mode: str
    slippage_bps: int
    price_impact_pct: float
    route_plan: list[_RouteStep]
    context_slot: int = 0


class _SwapBody(msgspec.Struct, rename="camel", kw_only=True):
    """A /swap-instructions answer: ``cleanupInstruction`` is one nullable object, the blockhash 32 ints."""

    compute_budget_instructions: list[JsonInstruction]
    setup_instructions: list[JsonInstruction]
    swap_instruction: JsonInstruction
    address_lookup_table_addresses: list[str]
    cleanup_instruction: JsonInstruction | None = None
    other_instructions: list[JsonInstruction] = []
    token_ledger_instruction: JsonInstruction | None = None
    compute_unit_limit: int | None = None
    prioritization_fee_lamports: int = 0
    blockhash_with_metadata: BlockhashMeta | None = None


# strict=False: amounts arrive as decimal strings ("1000000"), priceImpactPct too
_quote_decoder = msgspec.json.Decoder(_QuoteBody, strict=False)
_swap_decoder = msgspec.json.Decoder(_SwapBody, strict=False)


@upstream(JupiterQuote)
async def jupiter_quote(call: Call, job: JupiterQuote) -> Outcome:
    """GET {base_url}/quote → Quote (with the raw body for /swap-instructions)."""
    params = query(
        inputMint=job.input_mint,
        outputMint=job.output_mint,
        amount=job.amount,
        slippageBps=job.slippage_bps,
        swapMode=job.swap_mode,
        dexes=job.dexes,
        excludeDexes=job.exclude_dexes,
        onlyDirectRoutes=job.only_direct_routes,
        restrictIntermediateTokens=job.restrict_intermediate_tokens,
        maxAccounts=job.max_accounts,
        instructionVersion=job.instruction_version,
    )
    got = await get_json(call, job.base_url + "/quote", params, job.secret, _quote_decoder, "jupiter /quote")
    if isinstance(got, Outcome):
        return got
    q, reply = got
    value = Quote(
        in_amount=q.in_amount,
        out_amount=q.out_amount,
        other_amount_threshold=q.other_amount_threshold,
        slippage_bps=q.slippage_bps,
        price_impact_pct=q.price_impact_pct,
        swap_mode=q.swap_mode,
        context_slot=q.context_slot,
        route=[step.swap_info.label for step in q.route_plan],
        raw=reply.body,
    )
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)


@upstream(JupiterSwapInstructions)
async def jupiter_swap_instructions(call: Call, job: JupiterSwapInstructions) -> Outcome:
    """POST {base_url}/swap-instructions → SwapInstructions (cleanup as a list of 0 or 1)."""
    fields = {
        "userPublicKey": job.user_public_key,
        "wrapAndUnwrapSol": job.wrap_and_unwrap_sol,
        "useSharedAccounts": job.use_shared_accounts,
        "feeAccount": job.fee_account,
        "destinationTokenAccount": job.destination_token_account,
        "computeUnitPriceMicroLamports": job.compute_unit_price_micro_lamports,
        "prioritizationFeeLamports": (
            {"jitoTipLamports": job.jito_tip_lamports}
            if job.jito_tip_lamports is not None
            else job.prioritization_fee_lamports
        ),
        "dynamicComputeUnitLimit": job.dynamic_compute_unit_limit,
        "skipUserAccountsRpcCalls": job.skip_user_accounts_rpc_calls,
        "dynamicSlippage": job.dynamic_slippage,
        "blockhashSlotsToExpiry": job.blockhash_slots_to_expiry,
    }
    what = "jupiter /swap-instructions"
    got = await post_swap(call, job.base_url + "/swap-instructions", fields, job.quote, job.secret, _swap_decoder, what)
    if isinstance(got, Outcome):
        return got
    s, reply = got
    setup = ([s.token_ledger_instruction] if s.token_ledger_instruction else []) + s.setup_instructions
    return swap_instructions_result(
        reply,
        what,
        compute_budget=from_json(s.compute_budget_instructions),
        setup=from_json(setup),
        swap=from_json([s.swap_instruction])[0],
        cleanup=from_json([s.cleanup_instruction] if s.cleanup_instruction else []),
        other=from_json(s.other_instructions),
        alts=s.address_lookup_table_addresses,
        compute_unit_limit=s.compute_unit_limit,
        prioritization_fee_lamports=s.prioritization_fee_lamports,
        blockhash=s.blockhash_with_metadata,
    )
