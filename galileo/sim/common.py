"""Request parsing and transaction helpers shared by the Jupiter, DFlow and Ultra handlers."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from solders.hash import Hash
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from galileo.sim.accounts import TIP_ACCOUNTS, Pool, SimAccounts
from galileo.sim.instructions import Ix, SwapPlan, ix_solders, system_transfer
from galileo.sim.prices import MINTS

__all__ = [
    "BadRequest",
    "Priority",
    "QuoteParams",
    "b58decode",
    "b58encode",
    "b64",
    "compile_unsigned",
    "decimal_str",
    "decode_wire",
    "max_in",
    "min_out",
    "parse_bool",
    "parse_priority",
    "parse_pubkey",
    "parse_quote_query",
    "read_json_object",
    "route_pool",
]


class BadRequest(Exception):
    """The request is malformed; the message says which parameter and why."""


@dataclass(frozen=True)
class QuoteParams:
    """The quote parameters every aggregator shares."""

    input_mint: str
    output_mint: str
    amount: int
    slippage_bps: int
    exact_out: bool
    dexes: frozenset[str] | None
    exclude_dexes: frozenset[str]


def parse_bool(value: str | None, default: bool) -> bool:
    """A query-string boolean (``true``/``false``)."""
    if value is None:
        return default
    return value.lower() in ("true", "1", "yes")


def _int_param(query: Mapping[str, str], name: str, default: int | None, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(f"query parameter {name} is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name} cannot be parsed: {raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter {name} must be in {lo}..{hi}, got {value}")
    return value


def _labels(raw: str | None) -> frozenset[str] | None:
    if not raw:
        return None
    return frozenset(x.strip() for x in raw.split(",") if x.strip())


def parse_quote_query(query: Mapping[str, str], default_slippage: int = 50) -> QuoteParams:
    """Parse inputMint, outputMint, amount, slippageBps, swapMode, dexes, excludeDexes."""
    for name in ("inputMint", "outputMint"):
        value = query.get(name)
        if not value:
            raise BadRequest(f"query parameter {name} is required")
        parse_pubkey(value, name)
    mode = query.get("swapMode", "ExactIn")
    if mode not in ("ExactIn", "ExactOut"):
        raise BadRequest(f"query parameter swapMode must be ExactIn or ExactOut, got {mode!r}")
    slippage = query.get("slippageBps")
    return QuoteParams(
        input_mint=query["inputMint"],
        output_mint=query["outputMint"],
        amount=_int_param(query, "amount", None, 1, 2**64 - 1),
        slippage_bps=default_slippage
        if slippage == "auto"
        else _int_param(query, "slippageBps", default_slippage, 0, 10_000),
        exact_out=mode == "ExactOut",
        dexes=_labels(query.get("dexes")),
        exclude_dexes=_labels(query.get("excludeDexes")) or frozenset(),
    )


def parse_pubkey(value: Any, name: str) -> Pubkey:
    """A base58 public key, or BadRequest naming the field."""
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a base58 public key string")
    try:
        return Pubkey.from_string(value)
    except ValueError:
        raise BadRequest(f"{name} is not a valid base58 public key: {value!r}") from None


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def route_pool(
    accounts: SimAccounts,
    params_in: str,
    params_out: str,
    preferred: int,
    dexes: frozenset[str] | None,
    exclude: frozenset[str],
    venue: bool = False,
) -> Pool | None:
    """The pool to route through: the preferred one unless the dex filters rule it out."""
    if params_in not in MINTS or params_out not in MINTS or params_in == params_out:
        return None
    pools = accounts.pools[(params_in, params_out)]
    allowed = [
        p
        for p in pools
        if (dexes is None or (p.venue if venue else p.label) in dexes)
        and (p.venue if venue else p.label) not in exclude
    ]
    if not allowed:
        return None
    return next((p for p in allowed if p.index == preferred), allowed[0])


def min_out(out_amount: int, slippage_bps: int) -> int:
    """``otherAmountThreshold`` of an ExactIn quote."""
    return out_amount * (10_000 - slippage_bps) // 10_000


def max_in(in_amount: int, slippage_bps: int) -> int:
    """``otherAmountThreshold`` of an ExactOut quote."""
    return math.ceil(in_amount * (10_000 + slippage_bps) / 10_000)


@dataclass(frozen=True)
class Priority:
    """What a swap request asked for: a compute-unit price, a Jito tip, or nothing."""

    micro_lamports: int = 0
    fee_lamports: int = 0
    jito_tip: int = 0

    def prioritization_type(self, estimated: int) -> dict[str, Any] | None:
        """The ``prioritizationType`` object of the response."""
        if self.jito_tip:
            return {"jito": {"lamports": self.jito_tip}}
        return {"computeBudget": {"microLamports": self.micro_lamports, "estimatedMicroLamports": estimated}}

    def tip_instructions(self, user: Pubkey, slot: int) -> list[Ix]:
        """A System transfer of the tip to one of the Jito tip accounts, if a tip was asked for."""
        if not self.jito_tip:
            return []
        tip_account = Pubkey.from_string(TIP_ACCOUNTS[slot % len(TIP_ACCOUNTS)])
        return [system_transfer(user, tip_account, self.jito_tip)]


_LEVELS = {"medium": 10_000, "high": 50_000, "veryHigh": 200_000}


def parse_priority(body: Mapping[str, Any], cu_limit: int) -> Priority:
    """Read ``computeUnitPriceMicroLamports`` / ``prioritizationFeeLamports`` (all documented forms)."""
    price = body.get("computeUnitPriceMicroLamports")
    if price is not None:
        if not isinstance(price, int) or price < 0:
            raise BadRequest("computeUnitPriceMicroLamports must be a non-negative integer")
        return Priority(price, price * cu_limit // 1_000_000)
    fee = body.get("prioritizationFeeLamports")
    if fee is None or fee in ("disabled", 0):
        return Priority()
    if fee == "auto":
        fee = _LEVELS["medium"]
    if isinstance(fee, dict):
        if isinstance(fee.get("jitoTipLamports"), int):
            return Priority(jito_tip=fee["jitoTipLamports"])
        if isinstance(fee.get("jitoTipLamportsWithPayer"), dict):
            return Priority(jito_tip=int(fee["jitoTipLamportsWithPayer"].get("lamports", 0)))
        level = fee.get("priorityLevelWithMaxLamports")
        if isinstance(level, dict):
            want = _LEVELS.get(str(level.get("priorityLevel")), _LEVELS["medium"])
            fee = min(want, int(level.get("maxLamports", want)))
        elif "autoMultiplier" in fee:
            fee = int(_LEVELS["medium"] * float(fee["autoMultiplier"]))
        else:
            raise BadRequest("prioritizationFeeLamports: unknown object form")
    if not isinstance(fee, int) or fee < 0:
        raise BadRequest("prioritizationFeeLamports must be a non-negative integer, 'auto' or a documented object")
    return Priority(fee * 1_000_000 // cu_limit, fee)


def compile_unsigned(
    payer: Pubkey, plan: SwapPlan, accounts: SimAccounts, blockhash: Hash, cu_limit: int, priority: Priority
) -> bytes:
    """An unsigned v0 transaction (all-zero signatures) of the whole swap, using the plan's ALTs."""
    ixs = [ix_solders(ix) for ix in plan.all_instructions(cu_limit, priority.micro_lamports)]
    alts = [accounts.alt_accounts[k] for k in plan.alts]
    msg = MessageV0.try_compile(payer, ixs, alts, blockhash)
    n = msg.header.num_required_signatures
    return bytes(VersionedTransaction.populate(msg, [Signature.default()] * n))


def b64(data: bytes) -> str:
    """Standard base64 with padding."""
    return base64.b64encode(data).decode()


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


def b58decode(text: str) -> bytes:
    """Decode base58 (Bitcoin alphabet); ValueError on a bad character."""
    n = 0
    for ch in text:
        digit = _B58_INDEX.get(ch)
        if digit is None:
            raise ValueError(f"invalid base58 character {ch!r}")
        n = n * 58 + digit
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return bytes(len(text) - len(text.lstrip("1"))) + body


def b58encode(data: bytes) -> str:
    """Encode base58 (Bitcoin alphabet)."""
    n, out = int.from_bytes(data, "big"), []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + "".join(reversed(out))


def decode_wire(data: Any, encoding: str) -> bytes:
    """A wire transaction from its ``base64`` or ``base58`` string; ValueError otherwise."""
    if not isinstance(data, str):
        raise ValueError("transaction must be a string")
    if encoding == "base64":
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"invalid base64: {exc}") from None
    if encoding in ("base58", "binary"):
        return b58decode(data)
    raise ValueError(f"unsupported encoding {encoding!r} (use base64 or base58)")


def decimal_str(x: float) -> str:
    """A float as a plain decimal string (``"0.000422"``, never ``"4.22e-04"``), as Jupiter writes them."""
    text = format(x, ".24f").rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"
