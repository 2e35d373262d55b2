"""Titan WebSocket API messages (reference §4): typed requests in, MessagePack maps out.

Requests are decoded into msgspec Structs (camelCase keys, pubkeys as 32-byte bin); replies are
plain maps so optional fields can be left out exactly as the Rust server's ``to_vec_named`` does.
"""

from __future__ import annotations

import gzip
from typing import Any

import msgspec
from solders.pubkey import Pubkey

from galileo.sim.accounts import SimAccounts
from galileo.sim.common import min_out, route_pool
from galileo.sim.instructions import Aggregator, SwapRequest, build_swap, ix_titan
from galileo.sim.prices import PriceModel

__all__ = [
    "INTERVAL_MS",
    "PROTOCOL",
    "PROTOCOL_GZIP",
    "PROVIDERS",
    "ClientRequest",
    "Codec",
    "SwapQuoteRequest",
    "server_info",
    "swap_quotes",
]

PROTOCOL = "v1.api.titan.ag"
PROTOCOL_GZIP = "v1.api.titan.ag+gzip"
INTERVAL_MS = (50, 10_000, 1_000)  # min, max, default
PROVIDERS: dict[str, Aggregator] = {"Titan": "titan", "Metis": "jupiter"}


class ClientRequest(msgspec.Struct):
    """``{id: u32, data: RequestData}``; ``data`` is a single-key map."""

    id: int
    data: dict[str, Any]


class SwapParams(msgspec.Struct, rename="camel"):
    """``SwapQuoteRequest.swap``."""

    input_mint: bytes
    output_mint: bytes
    amount: int
    swap_mode: str | None = None
    slippage_bps: int | None = None
    dexes: list[str] | None = None
    exclude_dexes: list[str] | None = None
    only_direct_routes: bool | None = None
    add_size_constraint: bool | None = None
    size_constraint: int | None = None
    providers: list[str] | None = None
    accounts_limit_total: int | None = None
    accounts_limit_writable: int | None = None


class TransactionParams(msgspec.Struct, rename="camel"):
    """``SwapQuoteRequest.transaction``."""

    user_public_key: bytes
    close_input_token_account: bool | None = None
    create_output_token_account: bool | None = None
    fee_account: bytes | None = None
    fee_bps: int | None = None
    fee_from_input_mint: bool | None = None
    output_account: bytes | None = None


class UpdateParams(msgspec.Struct, rename="camel"):
    """``SwapQuoteRequest.update``."""

    interval_ms: int | None = None
    num_quotes: int | None = None


class SwapQuoteRequest(msgspec.Struct):
    """``NewSwapQuoteStream`` parameters."""

    swap: SwapParams
    transaction: TransactionParams
    update: UpdateParams | None = None


class Codec:
    """MessagePack framing, gzip-wrapped when the ``+gzip`` subprotocol was chosen."""

    def __init__(self, use_gzip: bool) -> None:
        self.use_gzip = use_gzip
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(ClientRequest)

    def encode(self, message: dict[str, Any]) -> bytes:
        """One server message as a binary frame payload."""
        raw = self._encoder.encode(message)
        return gzip.compress(raw, compresslevel=5) if self.use_gzip else raw

    def decode(self, frame: bytes) -> ClientRequest:
        """One client frame; raises ValueError (bad gzip) or msgspec.DecodeError."""
        if self.use_gzip:
            try:
                frame = gzip.decompress(frame)
            except (OSError, EOFError) as exc:
                raise ValueError(f"frame is not gzip data: {exc}") from None
        return self._decoder.decode(frame)


def server_info(concurrent_streams: int) -> dict[str, Any]:
    """``ServerInfo`` for GetInfo: ``concurrent_streams`` is what one connection may hold."""
    lo, hi, default = INTERVAL_MS
    return {
        "protocolVersion": {"major": 1, "minor": 2, "patch": 0},
        "settings": {
            "quoteUpdate": {
                "intervalMs": {"min": lo, "max": hi, "default": default},
                "numQuotes": {"min": 1, "max": 3, "default": 3},
            },
            "swap": {
                "slippageBps": {"min": 0, "max": 10_000, "default": 50},
                "onlyDirectRoutes": False,
                "addSizeConstraint": True,
            },
            "transaction": {"closeInputTokenAccount": False, "createOutputTokenAccount": True},
            "connection": {"concurrentStreams": concurrent_streams},
        },
    }


def swap_quotes(
    prices: PriceModel, accounts: SimAccounts, req: SwapQuoteRequest, quote_id: str, slot: int
) -> dict[str, Any] | None:
    """``SwapQuotes`` with one route per provider; None when no provider has a route."""
    s = req.swap
    in_mint, out_mint = str(Pubkey(s.input_mint)), str(Pubkey(s.output_mint))
    exact_out = s.swap_mode == "ExactOut"
    slippage = 50 if s.slippage_bps is None else s.slippage_bps
    user = Pubkey(req.transaction.user_public_key)
    dexes = frozenset(s.dexes) if s.dexes else None
    exclude = frozenset(s.exclude_dexes or ())
    quotes: dict[str, Any] = {}
    for provider, aggregator in PROVIDERS.items():
        if s.providers and provider not in s.providers:
            continue
        service = f"titan:{provider}"
        preferred = prices.pool_index(service, in_mint, out_mint, slot)
        pool = route_pool(accounts, in_mint, out_mint, preferred, dexes, exclude)
        q = prices.quote(service, in_mint, out_mint, s.amount, exact_out, slot, pool.index) if pool else None
        if pool is None or q is None:
            continue
        threshold = min_out(q.out_amount, slippage)
        max_in = q.in_amount * (10_000 + slippage) // 10_000
        plan = build_swap(
            SwapRequest(
                aggregator,
                user,
                in_mint,
                out_mint,
                max_in if exact_out else q.in_amount,
                q.out_amount,
                q.out_amount if exact_out else threshold,
                0 if exact_out else slippage,  # ExactOut: at least the asked output
                pool,
            )
        )
        alts = [plan.alts[0], accounts.common_alt] if aggregator == "titan" else plan.alts
        ixs = [*plan.setup, plan.swap, *plan.cleanup]
        quotes[provider] = {
            "inAmount": q.in_amount,
            "outAmount": q.out_amount,
            "slippageBps": slippage,
            "steps": [
                {
                    "ammKey": bytes(pool.amm),
                    "label": pool.label,
                    "inputMint": s.input_mint,
                    "outputMint": s.output_mint,
                    "inAmount": q.in_amount,
                    "outAmount": q.out_amount,
                    "allocPpb": 1_000_000_000,
                    "feeMint": s.input_mint,
                    "feeAmount": q.fee_amount,
                }
            ],
            "instructions": [ix_titan(ix) for ix in ixs],
            "addressLookupTables": [bytes(k) for k in alts],
            "contextSlot": slot,
            "timeTakenNs": 1_500_000,
            "expiresAfterSlot": slot + 10,
            "computeUnits": plan.compute_units,
            "computeUnitsSafe": plan.compute_units_safe,
        }
    if not quotes:
        return None
    return {
        "id": quote_id,
        "inputMint": s.input_mint,
        "outputMint": s.output_mint,
        "swapMode": "ExactOut" if exact_out else "ExactIn",
        "amount": s.amount,
        "quotes": quotes,
    }
