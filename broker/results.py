"""Decoded answers: what a worker sends back when a job's result is ``ok`` (and Titan's events).

Every upstream's answer is decoded once, in the worker, into one of these tagged Structs, so
the coordinator never parses upstream JSON. Amounts are ints, keys base58 strings,
instructions :class:`broker.solana.Instruction`, transactions raw bytes.
"""

from __future__ import annotations

import msgspec

from broker.solana import Instruction

__all__ = [
    "AccountInfo",
    "Accounts",
    "Blockhash",
    "BundleAccepted",
    "BundleStatus",
    "BundleStatuses",
    "HttpResponse",
    "PrioritizationFees",
    "Quote",
    "ResultValue",
    "SignatureStatus",
    "SignatureStatuses",
    "Simulation",
    "SwapInstructions",
    "TipAccounts",
    "TipFloor",
    "TitanConnectionSummary",
    "TitanInfo",
    "TitanQuote",
    "TitanStreamEnded",
    "TitanStreamOpened",
    "TokenBalance",
    "TransactionMeta",
    "TxSent",
    "UltraExecuteResult",
    "UltraOrderResult",
]


class HttpResponse(msgspec.Struct, tag="http", kw_only=True, omit_defaults=True):
    """The answer to an :class:`~broker.jobs.HttpRequest`."""

    status: int
    headers: list[tuple[str, str]] = msgspec.field(default_factory=list)
    body: bytes = b""


class Quote(msgspec.Struct, tag="quote", kw_only=True, omit_defaults=True):
    """A Jupiter or DFlow /quote. ``raw`` is the response body, to be echoed to /swap-instructions."""

    in_amount: int
    out_amount: int
    other_amount_threshold: int  # min out (ExactIn) or max in (ExactOut), slippage applied
    slippage_bps: int
    price_impact_pct: float
    swap_mode: str = "ExactIn"
    context_slot: int = 0
    route: list[str] = []  # one label per hop: Jupiter ``swapInfo.label``, DFlow ``venue``
    request_id: str = ""  # DFlow's requestId
    raw: bytes = b""


class SwapInstructions(msgspec.Struct, tag="swap_instructions", kw_only=True, omit_defaults=True):
    """A /swap-instructions answer; assemble as compute_budget, setup, swap, other, cleanup.

    ``blockhash`` is base58 whatever the upstream sent (Jupiter sends 32 ints), "" when the
    upstream sent none. ``compute_unit_limit`` is 0 when neither the field nor a
    SetComputeUnitLimit instruction says it.
    """

    compute_budget: list[Instruction]
    setup: list[Instruction]
    swap: Instruction
    cleanup: list[Instruction] = []
    other: list[Instruction] = []
    alts: list[str] = []
    compute_unit_limit: int = 0
    prioritization_fee_lamports: int = 0
    blockhash: str = ""
    last_valid_block_height: int = 0


class UltraOrderResult(msgspec.Struct, tag="ultra_order", kw_only=True, omit_defaults=True):
    """An Ultra /order. ``transaction`` is the unsigned wire transaction (b"" without a taker).

    ``error_code``/``error_message`` carry the order's own errorCode (1 insufficient funds,
    2 top up for gas, 3 minimum for gasless); such an order has no transaction.
    """

    request_id: str
    in_amount: int
    out_amount: int
    other_amount_threshold: int = 0
    slippage_bps: int = 0
    price_impact_pct: float = 0.0
    swap_mode: str = "ExactIn"
    router: str = ""
    route: list[str] = []
    transaction: bytes = b""
    fee_bps: int = 0
    signature_fee_lamports: int = 0
    prioritization_fee_lamports: int = 0
    rent_fee_lamports: int = 0
    gasless: bool = False
    error_code: int = 0
    error_message: str = ""


class UltraExecuteResult(msgspec.Struct, tag="ultra_execute", kw_only=True, omit_defaults=True):
    """A successful Ultra /execute (status Success, code 0)."""

    status: str
    signature: str
    slot: int
    code: int = 0
    error: str = ""
    input_amount: int = 0  # inputAmountResult
    output_amount: int = 0  # outputAmountResult


class BundleAccepted(msgspec.Struct, tag="bundle_accepted", kw_only=True):
    """Jito accepted a bundle (which says nothing yet about landing)."""

    bundle_id: str


class BundleStatus(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One bundle's status.

    ``status`` is getBundleStatuses' ``confirmation_status`` (processed/confirmed/finalized) or
    getInflightBundleStatuses' ``status`` (Invalid/Pending/Failed/Landed). ``err`` is empty for
    ``{"Ok": null}``, else the error as compact JSON.
    """

    bundle_id: str
    status: str
    slot: int | None = None  # landed slot
    transactions: list[str] = []
    err: str = ""


class BundleStatuses(msgspec.Struct, tag="bundle_statuses", kw_only=True):
    """Statuses in the order the ids were asked; None where Jito knows nothing of the bundle."""

    slot: int
    statuses: list[BundleStatus | None]


class TipAccounts(msgspec.Struct, tag="tip_accounts", kw_only=True):
    """Jito's tip accounts (base58)."""

    accounts: list[str]


class TipFloor(msgspec.Struct, tag="tip_floor", kw_only=True):
    """Jito's tip floor: the landed tips' percentiles (and the EMA of the 50th), in lamports."""

    p25: int
    p50: int
    p75: int
    p95: int
    p99: int
    ema50: int = 0


class TxSent(msgspec.Struct, tag="tx_sent", kw_only=True, omit_defaults=True):
    """A transaction was accepted for sending; ``bundle_id`` from Jito's x-bundle-id header."""

    signature: str
    bundle_id: str = ""


class Blockhash(msgspec.Struct, tag="blockhash", kw_only=True):
    """getLatestBlockhash: the blockhash, its last valid block height, and the context slot."""

    blockhash: str
    last_valid_block_height: int
    slot: int


class SignatureStatus(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One signature's status; ``err`` empty on success, else compact JSON of the error."""

    slot: int
    confirmations: int | None = None  # None once rooted (finalized)
    confirmation_status: str = ""
    err: str = ""


class SignatureStatuses(msgspec.Struct, tag="signature_statuses", kw_only=True):
    """Statuses in the order asked; None for signatures the node does not know."""

    slot: int
    statuses: list[SignatureStatus | None]


class Simulation(msgspec.Struct, tag="simulation", kw_only=True, omit_defaults=True):
    """simulateTransaction: ``err`` empty when it ran to the end, else compact JSON of the error;
    ``units_consumed`` either way; the last log lines (at most 40), for a person reading why."""

    slot: int
    units_consumed: int = 0
    err: str = ""
    logs: list[str] = []


class AccountInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One account; ``data`` None when the account does not exist."""

    address: str
    data: bytes | None = None
    owner: str = ""
    lamports: int = 0
    executable: bool = False


class Accounts(msgspec.Struct, tag="accounts", kw_only=True):
    """getMultipleAccounts, in the order asked."""

    slot: int
    accounts: list[AccountInfo]


class PrioritizationFees(msgspec.Struct, tag="prioritization_fees", kw_only=True):
    """getRecentPrioritizationFees: micro-lamports per CU for each recent slot (oldest first)."""

    slot: int  # the newest slot answered (0: none)
    fees: list[int]


class TokenBalance(msgspec.Struct, frozen=True, array_like=True):
    """One token account's balance in a transaction's meta: raw ``amount`` of ``mint`` held by ``owner``."""

    account_index: int
    mint: str
    owner: str
    amount: int


class TransactionMeta(msgspec.Struct, tag="transaction_meta", kw_only=True, omit_defaults=True):
    """What a processed transaction did, from getTransaction's ``meta``.

    Balances are in the order of the message's account keys, loaded addresses after the
    static ones (writable, then read-only), as the RPC gives them. ``err`` is empty on
    success, else the error as compact JSON. ``found`` False: the node does not know the
    signature (yet) at the commitment asked.
    """

    found: bool = True
    slot: int = 0
    err: str = ""
    fee: int = 0
    pre_balances: list[int] = []
    post_balances: list[int] = []
    pre_token_balances: list[TokenBalance] = []
    post_token_balances: list[TokenBalance] = []


class TitanQuote(msgspec.Struct, tag="titan_quote", kw_only=True, omit_defaults=True):
    """The best route of one Titan StreamData update (value of a ``quote`` Event).

    Best = most ``out_amount`` (ExactIn) or least ``in_amount`` (ExactOut) across providers.
    Titan routes carry no compute-budget instructions: add them from ``compute_units_safe``.
    """

    provider: str
    in_amount: int
    out_amount: int
    slippage_bps: int
    instructions: list[Instruction]
    alts: list[str] = []
    compute_units: int = 0
    compute_units_safe: int = 0
    context_slot: int = 0
    expires_after_slot: int = 0
    seq: int
    stream_id: int
    quote_id: str = ""
    route: list[str] = []  # step labels
    providers: dict[str, int] = {}  # every provider's out_amount (ExactIn) or in_amount (ExactOut)


class TitanInfo(msgspec.Struct, tag="titan_info", kw_only=True, omit_defaults=True):
    """A Titan connection is open: what ``GetInfo`` said (value of an ``open`` Event).

    ``concurrent_streams`` is how many streams the server lets this connection hold at once.
    """

    concurrent_streams: int
    interval_ms_min: int = 0
    interval_ms_max: int = 0
    interval_ms_default: int = 0
    protocol: str = ""  # the negotiated subprotocol (``v1.api.titan.ag+gzip`` ...)
    version: str = ""  # the server's protocolVersion, ``major.minor.patch``


class TitanStreamOpened(msgspec.Struct, tag="titan_opened", kw_only=True):
    """Titan opened a stream on the connection (the ``ok`` value of a TitanSubscribe job)."""

    stream_id: int
    interval_ms: int = 0


class TitanStreamEnded(msgspec.Struct, tag="titan_ended", kw_only=True, omit_defaults=True):
    """``StreamEnd``: stream ``stream_id`` is over (value of a ``stream_end`` Event).

    ``stopped``: we asked for it (StopStream); else the server ended it, failed when
    ``error_code`` is set. A stream that ends without an update had no route, as the bot reads it.
    """

    stream_id: int
    updates: int = 0
    stopped: bool = False
    error_code: int | None = None
    error_message: str = ""


class TitanConnectionSummary(msgspec.Struct, tag="titan_connection", kw_only=True, omit_defaults=True):
    """How a Titan connection ended (value of a ``closed`` Event, and of its job's ``ok`` outcome).

    ``ended_by``: ``closed`` (we closed it), ``duration`` (its job's budget ran out), ``server``
    (the server closed it: ``close_code`` and ``close_reason`` say why), ``error`` (the socket broke).
    """

    ended_by: str
    streams_opened: int = 0
    updates: int = 0
    bad_frames: int = 0
    close_code: int | None = None
    close_reason: str = ""


ResultValue = (
    HttpResponse
    | Quote
    | SwapInstructions
    | UltraOrderResult
    | UltraExecuteResult
    | BundleAccepted
    | BundleStatuses
    | TipAccounts
    | TipFloor
    | TxSent
    | Blockhash
    | SignatureStatuses
    | Simulation
    | Accounts
    | PrioritizationFees
    | TransactionMeta
    | TitanQuote
    | TitanInfo
    | TitanStreamOpened
    | TitanStreamEnded
    | TitanConnectionSummary
)
