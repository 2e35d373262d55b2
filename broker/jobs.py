"""Job payloads: what a worker is asked to do. One Struct per job kind, a tagged union on the wire.

A payload never carries a secret. Where an upstream needs one, the payload names the
environment variable that holds it (:class:`SecretRef`) and the worker reads it from its own
environment: local workers inherit the coordinator's, workers on other hosts use their own.
Solana RPC URLs that embed an API key travel the same way: ``url_env`` names the variable
holding the whole URL.

The tag of each Struct is the job's *kind* (``jupiter_quote``, ``jito_send_bundle`` ...).
Amounts are raw u64 units, keys and mints base58 strings, transactions their wire bytes (the
worker base64-encodes them). Optional upstream parameters left at ``None`` are not sent, so
the upstream's documented default applies.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "DflowQuote",
    "DflowSwapInstructions",
    "HttpRequest",
    "JitoBundleStatuses",
    "JitoInflightStatuses",
    "JitoSendBundle",
    "JitoSendTransaction",
    "JitoTipAccounts",
    "JitoTipFloor",
    "JobPayload",
    "JupiterQuote",
    "JupiterSwapInstructions",
    "RpcGetMultipleAccounts",
    "RpcGetTransaction",
    "RpcLatestBlockhash",
    "RpcPrioritizationFees",
    "RpcSendTransaction",
    "RpcSignatureStatuses",
    "RpcSimulateTransaction",
    "SecretRef",
    "SwapMode",
    "TitanConnect",
    "TitanStop",
    "TitanSubscribe",
    "UltraExecute",
    "UltraOrder",
]

SwapMode = Literal["ExactIn", "ExactOut"]
Commitment = Literal["processed", "confirmed", "finalized"]


class SecretRef(msgspec.Struct, frozen=True, array_like=True):
    """Put the value of env var ``env`` into header ``header`` (with ``prefix``, e.g. "Bearer ")."""

    header: str
    env: str
    prefix: str = ""


class HttpRequest(msgspec.Struct, tag="http", kw_only=True, omit_defaults=True):
    """A generic HTTP request from the worker's address. The ``ok`` value is an HttpResponse."""

    url: str
    method: str = "GET"
    headers: list[tuple[str, str]] = msgspec.field(default_factory=list)
    body: bytes | None = None
    connect_timeout: float | None = None  # seconds; the job's budget bounds the whole call anyway
    read_timeout: float | None = None
    secret: SecretRef | None = None
    max_body: int = 4 << 20  # larger bodies are a decode_error, not a worker out of memory


# --- Jupiter Swap API v1 (reference §1) and DFlow (§3) ----------------------------------


class JupiterQuote(msgspec.Struct, tag="jupiter_quote", kw_only=True, omit_defaults=True):
    """``GET {base_url}/quote``; the ``ok`` value is a Quote. ``base_url`` like ``https://api.jup.ag/swap/v1``."""

    base_url: str
    input_mint: str
    output_mint: str
    amount: int
    slippage_bps: int | None = None
    swap_mode: SwapMode | None = None
    dexes: list[str] = []
    exclude_dexes: list[str] = []
    only_direct_routes: bool | None = None
    restrict_intermediate_tokens: bool | None = None
    max_accounts: int | None = None
    instruction_version: Literal["V1", "V2"] | None = None
    secret: SecretRef | None = None  # x-api-key on api.jup.ag


class JupiterSwapInstructions(msgspec.Struct, tag="jupiter_swap_instructions", kw_only=True, omit_defaults=True):
    """``POST {base_url}/swap-instructions``; the ``ok`` value is SwapInstructions.

    ``quote`` is the /quote response body (``Quote.raw``), sent back verbatim as ``quoteResponse``.
    Of the priority options give at most one: ``compute_unit_price_micro_lamports``,
    ``prioritization_fee_lamports`` or ``jito_tip_lamports`` (sent as ``{"jitoTipLamports": n}``).
    """

    base_url: str
    user_public_key: str
    quote: bytes
    wrap_and_unwrap_sol: bool | None = None
    use_shared_accounts: bool | None = None
    fee_account: str | None = None
    destination_token_account: str | None = None
    compute_unit_price_micro_lamports: int | None = None
    prioritization_fee_lamports: int | None = None
    jito_tip_lamports: int | None = None
    dynamic_compute_unit_limit: bool | None = None
    skip_user_accounts_rpc_calls: bool | None = None
    dynamic_slippage: bool | None = None
    blockhash_slots_to_expiry: int | None = None
    secret: SecretRef | None = None


class DflowQuote(msgspec.Struct, tag="dflow_quote", kw_only=True, omit_defaults=True):
    """``GET {base_url}/quote``; the ``ok`` value is a Quote. ``base_url`` like ``https://quote-api.dflow.net``."""

    base_url: str
    input_mint: str
    output_mint: str
    amount: int
    slippage_bps: int | Literal["auto"] | None = None
    dexes: list[str] = []
    exclude_dexes: list[str] = []
    only_direct_routes: bool | None = None
    max_route_length: int | None = None
    secret: SecretRef | None = None  # x-api-key


class DflowSwapInstructions(msgspec.Struct, tag="dflow_swap_instructions", kw_only=True, omit_defaults=True):
    """``POST {base_url}/swap-instructions``; the ``ok`` value is SwapInstructions.

    ``quote`` is the /quote body (``Quote.raw``), echoed verbatim. DFlow takes either
    ``compute_unit_price_micro_lamports`` or ``prioritization_fee_lamports`` (never both).
    """

    base_url: str
    user_public_key: str
    quote: bytes
    wrap_and_unwrap_sol: bool | None = None
    dynamic_compute_unit_limit: bool | None = None
    compute_unit_price_micro_lamports: int | None = None
    prioritization_fee_lamports: int | Literal["auto", "disabled"] | None = None
    destination_token_account: str | None = None
    fee_account: str | None = None
    include_jito_sandwich_mitigation_account: bool | None = None
    preserve_input_ata: bool | None = None
    secret: SecretRef | None = None


# --- Jupiter Ultra (§2) --------------------------------------------------------------------


class UltraOrder(msgspec.Struct, tag="ultra_order", kw_only=True, omit_defaults=True):
    """``GET {base_url}/order``; the ``ok`` value is an UltraOrderResult (with a transaction iff ``taker``)."""

    base_url: str
    input_mint: str
    output_mint: str
    amount: int
    taker: str | None = None
    slippage_bps: int | None = None
    swap_mode: SwapMode | None = None
    exclude_routers: list[str] = []
    exclude_dexes: list[str] = []
    referral_account: str | None = None
    referral_fee: int | None = None
    payer: str | None = None
    secret: SecretRef | None = None  # x-api-key on api.jup.ag


class UltraExecute(msgspec.Struct, tag="ultra_execute", kw_only=True, omit_defaults=True):
    """``POST {base_url}/execute``; ``ok`` (an UltraExecuteResult) only for status Success, code 0."""

    base_url: str
    signed_transaction: bytes
    request_id: str
    secret: SecretRef | None = None


# --- Jito block engine (§6) --------------------------------------------------------------


class JitoSendBundle(msgspec.Struct, tag="jito_send_bundle", kw_only=True, omit_defaults=True):
    """``sendBundle`` on ``{base_url}/api/v1/bundles``; ``ok`` value BundleAccepted.

    ``base_url`` is the region root, e.g. ``https://ny.mainnet.block-engine.jito.wtf``. At most
    5 signed transactions: a longer bundle ends as ``decode_error`` without being sent.
    """

    base_url: str
    transactions: list[bytes]
    secret: SecretRef | None = None  # x-jito-auth: <uuid>


class JitoBundleStatuses(msgspec.Struct, tag="jito_bundle_statuses", kw_only=True, omit_defaults=True):
    """``getBundleStatuses`` for at most 5 bundle ids; ``ok`` value BundleStatuses."""

    base_url: str
    bundle_ids: list[str]
    secret: SecretRef | None = None


class JitoInflightStatuses(msgspec.Struct, tag="jito_inflight_statuses", kw_only=True, omit_defaults=True):
    """``getInflightBundleStatuses`` (last 5 minutes) for at most 5 bundle ids; ``ok`` value BundleStatuses."""

    base_url: str
    bundle_ids: list[str]
    secret: SecretRef | None = None


class JitoTipAccounts(msgspec.Struct, tag="jito_tip_accounts", kw_only=True, omit_defaults=True):
    """``getTipAccounts``; ``ok`` value TipAccounts."""

    base_url: str
    secret: SecretRef | None = None


class JitoTipFloor(msgspec.Struct, tag="jito_tip_floor", kw_only=True, omit_defaults=True):
    """``GET {url}`` (``https://bundles.jito.wtf/api/v1/bundles/tip_floor``); ``ok`` value TipFloor."""

    url: str


class JitoSendTransaction(msgspec.Struct, tag="jito_send_transaction", kw_only=True, omit_defaults=True):
    """``sendTransaction`` on ``{base_url}/api/v1/transactions``; ``ok`` value TxSent (with the x-bundle-id)."""

    base_url: str
    transaction: bytes
    bundle_only: bool = False
    secret: SecretRef | None = None


# --- Solana JSON-RPC (§7) ----------------------------------------------------------------


class RpcLatestBlockhash(msgspec.Struct, tag="rpc_latest_blockhash", kw_only=True, omit_defaults=True):
    """``getLatestBlockhash``; ``ok`` value Blockhash. Give ``url``, or ``url_env`` naming a variable with it."""

    url: str | None = None
    url_env: str | None = None
    commitment: Commitment | None = None
    min_context_slot: int | None = None
    secret: SecretRef | None = None


class RpcSendTransaction(msgspec.Struct, tag="rpc_send_transaction", kw_only=True, omit_defaults=True):
    """``sendTransaction`` (base64); ``ok`` value TxSent."""

    transaction: bytes
    url: str | None = None
    url_env: str | None = None
    skip_preflight: bool | None = None
    preflight_commitment: Commitment | None = None
    max_retries: int | None = None
    min_context_slot: int | None = None
    secret: SecretRef | None = None


class RpcSimulateTransaction(msgspec.Struct, tag="rpc_simulate_transaction", kw_only=True, omit_defaults=True):
    """``simulateTransaction`` (base64, no signature check); ``ok`` value Simulation, failed or not."""

    transaction: bytes
    url: str | None = None
    url_env: str | None = None
    replace_recent_blockhash: bool | None = None
    commitment: Commitment | None = None
    secret: SecretRef | None = None


class RpcSignatureStatuses(msgspec.Struct, tag="rpc_signature_statuses", kw_only=True, omit_defaults=True):
    """``getSignatureStatuses`` (at most 256); ``ok`` value SignatureStatuses."""

    signatures: list[str]
    url: str | None = None
    url_env: str | None = None
    search_transaction_history: bool | None = None
    secret: SecretRef | None = None


class RpcGetMultipleAccounts(msgspec.Struct, tag="rpc_get_multiple_accounts", kw_only=True, omit_defaults=True):
    """``getMultipleAccounts`` with base64 data (at most 100, e.g. lookup tables); ``ok`` value Accounts."""

    addresses: list[str]
    url: str | None = None
    url_env: str | None = None
    commitment: Commitment | None = None
    min_context_slot: int | None = None
    secret: SecretRef | None = None


class RpcPrioritizationFees(msgspec.Struct, tag="rpc_prioritization_fees", kw_only=True, omit_defaults=True):
    """``getRecentPrioritizationFees`` over at most 128 ``accounts`` (none: the whole chain's).

    The ``ok`` value is PrioritizationFees: per recent slot, the lowest fee (micro-lamports per
    CU) a transaction locking every one of those accounts as writable landed with.
    """

    accounts: list[str] = []
    url: str | None = None
    url_env: str | None = None
    secret: SecretRef | None = None


class RpcGetTransaction(msgspec.Struct, tag="rpc_get_transaction", kw_only=True, omit_defaults=True):
    """``getTransaction`` (base64, ``maxSupportedTransactionVersion`` 0); ``ok`` value TransactionMeta.

    A transaction the node does not know (yet, at ``commitment``) is ``ok`` with ``found`` False.
    """

    signature: str
    url: str | None = None
    url_env: str | None = None
    commitment: Commitment | None = None
    secret: SecretRef | None = None


# --- Titan WebSocket quote streams (§4) --------------------------------------------------


class TitanConnect(msgspec.Struct, tag="titan_connect", kw_only=True, omit_defaults=True):
    """A long-lived job: open one Titan WebSocket and hold it for the streams of one token.

    Titan's limits belong to the token (a ``jti`` may hold one connection) and to the
    connection (``concurrentStreams`` streams at once), so a token gets one connection and its
    streams are multiplexed on it: :class:`TitanSubscribe` and :class:`TitanStop` jobs sent to
    the same worker find it by ``lease``. Events: ``open`` (TitanInfo, from ``GetInfo``),
    ``quote`` (TitanQuote, one per StreamData), ``stream_end`` (TitanStreamEnded), ``closed``
    (TitanConnectionSummary). Runs until closed by a TitanStop, the server or the network, or
    until its budget is two seconds from its end. ``url`` like ``wss://api.titan.exchange/api/v1/ws``;
    ``secret`` normally ``SecretRef("Authorization", "TITAN_TOKEN", "Bearer ")``.
    """

    url: str
    lease: str
    compress: bool = True  # offer the +gzip subprotocol first
    heartbeat: float = 10.0  # seconds between pings; a pong missing for half of it ends the connection
    secret: SecretRef | None = None


class TitanSubscribe(msgspec.Struct, tag="titan_subscribe", kw_only=True, omit_defaults=True):
    """Open a quote stream on the connection ``lease`` of this worker; ``ok`` value TitanStreamOpened.

    ``replace``: stop that stream of the connection first, in the same breath, so a stream is
    renewed without a free slot (quotes of the old one stop, the new one's start a round trip later).
    """

    lease: str
    input_mint: str
    output_mint: str
    amount: int
    user_public_key: str
    replace: int | None = None
    swap_mode: SwapMode | None = None
    slippage_bps: int | None = None
    dexes: list[str] | None = None
    exclude_dexes: list[str] | None = None
    providers: list[str] | None = None
    only_direct_routes: bool | None = None
    add_size_constraint: bool | None = None
    size_constraint: int | None = None
    accounts_limit_total: int | None = None
    accounts_limit_writable: int | None = None
    close_input_token_account: bool | None = None
    create_output_token_account: bool | None = None
    interval_ms: int | None = None
    num_quotes: int | None = None


class TitanStop(msgspec.Struct, tag="titan_stop", kw_only=True, omit_defaults=True):
    """StopStream ``stream_id`` on the connection ``lease`` (``ok`` once Titan says StreamStopped);
    with ``stream_id`` None, stop every stream and close the connection."""

    lease: str
    stream_id: int | None = None


JobPayload = (
    HttpRequest
    | JupiterQuote
    | JupiterSwapInstructions
    | DflowQuote
    | DflowSwapInstructions
    | UltraOrder
    | UltraExecute
    | JitoSendBundle
    | JitoBundleStatuses
    | JitoInflightStatuses
    | JitoTipAccounts
    | JitoSendTransaction
    | JitoTipFloor
    | RpcLatestBlockhash
    | RpcSendTransaction
    | RpcSignatureStatuses
    | RpcSimulateTransaction
    | RpcGetMultipleAccounts
    | RpcPrioritizationFees
    | RpcGetTransaction
    | TitanConnect
    | TitanSubscribe
    | TitanStop
)
