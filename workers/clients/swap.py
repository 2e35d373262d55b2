"""What the Jupiter and DFlow clients share: GET a quote, POST swap-instructions, build results.

Both aggregators answer a quote the caller must echo back verbatim, and swap-instructions as
JSON instruction groups; they differ in field names and which fields are required, which
each client states in its own response Structs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from broker.jobs import SecretRef
from broker.protocol import Outcome
from broker.results import SwapInstructions
from broker.solana import Instruction
from workers.clients.instructions import BlockhashMeta, blockhash_b58, compute_unit_limit_of
from workers.clients.transport import Call, Reply, decode_json, failed_reply, json_body

__all__ = ["get_json", "post_swap", "swap_instructions_result"]

T = TypeVar("T")


async def get_json(
    call: Call,
    url: str,
    params: Mapping[str, str],
    secret: SecretRef | None,
    decoder: msgspec.json.Decoder[T],
    what: str,
) -> tuple[T, Reply] | Outcome:
    """GET ``url`` and decode a 2xx answer; any other answer is mapped to its outcome."""
    reply = await call.request("GET", url, params=params, headers=call.auth(secret))
    if isinstance(reply, Outcome):
        return reply
    return _decoded(reply, decoder, what)


async def post_swap(
    call: Call,
    url: str,
    fields: Mapping[str, Any],
    quote: bytes,
    secret: SecretRef | None,
    decoder: msgspec.json.Decoder[T],
    what: str,
) -> tuple[T, Reply] | Outcome:
    """POST a swap request whose ``quoteResponse`` is ``quote``, byte for byte as the upstream sent it."""
    if not quote.lstrip().startswith(b"{"):
        return Outcome(result="decode_error", error=f"{what}: quote must be the raw /quote JSON object (Quote.raw)")
    body = json_body(fields, quoteResponse=quote)
    reply = await call.request("POST", url, body=body, headers=call.auth(secret))
    if isinstance(reply, Outcome):
        return reply
    return _decoded(reply, decoder, what)


def _decoded(reply: Reply, decoder: msgspec.json.Decoder[T], what: str) -> tuple[T, Reply] | Outcome:
    failed = failed_reply(reply)
    if failed is not None:
        return failed
    value = decode_json(decoder, reply, what)
    if isinstance(value, Outcome):
        return value
    return value, reply


def swap_instructions_result(
    reply: Reply,
    what: str,
    *,
    compute_budget: list[Instruction],
    setup: list[Instruction],
    swap: Instruction,
    cleanup: list[Instruction],
    other: list[Instruction],
    alts: list[str],
    compute_unit_limit: int | None,
    prioritization_fee_lamports: int,
    blockhash: BlockhashMeta | None,
) -> Outcome:
    """The ``ok`` outcome of a swap-instructions answer (blockhash made base58), or a decode_error."""
    hash_b58, last_valid = "", 0
    if blockhash is not None:
        try:
            hash_b58 = blockhash_b58(blockhash.blockhash)
        except ValueError as exc:
            return Outcome(
                result="decode_error",
                status=reply.status,
                latency=reply.latency,
                error=f"{what}: blockhashWithMetadata.blockhash: {exc}",
            )
        last_valid = blockhash.last_valid_block_height
    value = SwapInstructions(
        compute_budget=compute_budget,
        setup=setup,
        swap=swap,
        cleanup=cleanup,
        other=other,
        alts=alts,
        compute_unit_limit=compute_unit_limit_of(compute_budget) if compute_unit_limit is None else compute_unit_limit,
        prioritization_fee_lamports=prioritization_fee_lamports,
        blockhash=hash_b58,
        last_valid_block_height=last_valid,
    )
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)
