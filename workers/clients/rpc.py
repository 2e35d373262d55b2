"""Solana JSON-RPC: latest blockhash, sendTransaction, signature statuses, accounts (reference §7).

The endpoint is ``url``, or ``url_env``: the name of an env var holding the whole URL, for
providers that put the API key in it (``https://mainnet.helius-rpc.com/?api-key=…``). Such a
URL is read by the worker, never sent over the wire, and scrubbed from every error line. A
header key (``x-api-key``) is a SecretRef. Errors follow :mod:`workers.clients.jsonrpc`:
-32429 / HTTP 429 → rate_limited, -32005 node unhealthy → http_error 503, -32002 preflight,
-32016 min context slot ... → http_error with the node's message.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import orjson

from broker.jobs import (
    RpcGetMultipleAccounts,
    RpcGetTransaction,
    RpcLatestBlockhash,
    RpcPrioritizationFees,
    RpcSendTransaction,
    RpcSignatureStatuses,
    RpcSimulateTransaction,
)
from broker.protocol import Outcome
from broker.results import (
    AccountInfo,
    Accounts,
    Blockhash,
    PrioritizationFees,
    SignatureStatus,
    SignatureStatuses,
    Simulation,
    TokenBalance,
    TransactionMeta,
    TxSent,
)
from workers.clients.jsonrpc import rpc_call, rpc_call_or_null
from workers.clients.transport import Call, upstream

__all__ = [
    "MAX_ACCOUNTS",
    "MAX_FEE_ACCOUNTS",
    "MAX_SIGNATURES",
    "rpc_get_multiple_accounts",
    "rpc_get_transaction",
    "rpc_latest_blockhash",
    "rpc_prioritization_fees",
    "rpc_send_transaction",
    "rpc_signature_statuses",
    "rpc_simulate_transaction",
]

MAX_ACCOUNTS = 100  # getMultipleAccounts' documented maximum
MAX_SIGNATURES = 256  # getSignatureStatuses'
MAX_FEE_ACCOUNTS = 128  # getRecentPrioritizationFees'
SIMULATION_LOG_LINES = 40  # the end of a failed simulation's logs says why; the rest is noise on the wire


class _Context(msgspec.Struct):
    slot: int


class _BlockhashValue(msgspec.Struct, rename="camel"):
    blockhash: str
    last_valid_block_height: int


class _BlockhashResult(msgspec.Struct):
    context: _Context
    value: _BlockhashValue


class _SigStatus(msgspec.Struct, rename="camel"):
    slot: int
    confirmations: int | None = None
    err: Any = None
    confirmation_status: str | None = None


class _SigStatuses(msgspec.Struct):
    context: _Context
    value: list[_SigStatus | None]


class _SimValue(msgspec.Struct, rename="camel"):
    err: Any = None
    logs: list[str] | None = None
    units_consumed: int | None = None


class _SimResult(msgspec.Struct):
    context: _Context
    value: _SimValue


class _Account(msgspec.Struct):
    data: tuple[bytes, str]  # [base64 data, "base64"]
    owner: str
    lamports: int = 0
    executable: bool = False


class _Accounts(msgspec.Struct):
    context: _Context
    value: list[_Account | None]


class _SlotFee(msgspec.Struct, rename="camel"):
    slot: int
    prioritization_fee: int


class _UiAmount(msgspec.Struct):
    amount: str


class _TokenBalance(msgspec.Struct, rename="camel"):
    account_index: int
    mint: str
    ui_token_amount: _UiAmount
    owner: str = ""


class _Meta(msgspec.Struct, rename="camel"):
    fee: int = 0
    err: Any = None
    pre_balances: list[int] = []
    post_balances: list[int] = []
    pre_token_balances: list[_TokenBalance] | None = None
    post_token_balances: list[_TokenBalance] | None = None


class _Transaction(msgspec.Struct):
    slot: int
    meta: _Meta | None = None


def _endpoint(call: Call, url: str | None, url_env: str | None) -> str | Outcome:
    if url_env:
        value = call.env_url(url_env)
        if value is None:
            return Outcome(result="decode_error", error=f"env var {url_env} (the RPC URL) is not set on this worker")
        return value
    if url:
        return url
    return Outcome(result="decode_error", error="an RPC job needs url or url_env")


def _config(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@upstream(RpcLatestBlockhash)
async def rpc_latest_blockhash(call: Call, job: RpcLatestBlockhash) -> Outcome:
    """getLatestBlockhash → Blockhash (slot = the answer's context slot)."""
    url = _endpoint(call, job.url, job.url_env)
    if isinstance(url, Outcome):
        return url
    config = _config(commitment=job.commitment, minContextSlot=job.min_context_slot)
    got = await rpc_call(
        call, url, "getLatestBlockhash", [config] if config else [], _BlockhashResult, headers=call.auth(job.secret)
    )
    if isinstance(got, Outcome):
        return got
    result, reply = got
    value = Blockhash(
        blockhash=result.value.blockhash,
        last_valid_block_height=result.value.last_valid_block_height,
        slot=result.context.slot,
    )
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)


@upstream(RpcSendTransaction)
async def rpc_send_transaction(call: Call, job: RpcSendTransaction) -> Outcome:
    """sendTransaction (base64) → TxSent. Sent is not landed: poll RpcSignatureStatuses."""
    url = _endpoint(call, job.url, job.url_env)
    if isinstance(url, Outcome):
        return url
    config = _config(
        encoding="base64",
        skipPreflight=job.skip_preflight,
        preflightCommitment=job.preflight_commitment,
        maxRetries=job.max_retries,
        minContextSlot=job.min_context_slot,
    )
    tx = base64.b64encode(job.transaction).decode()
    got = await rpc_call(call, url, "sendTransaction", [tx, config], str, headers=call.auth(job.secret))
    if isinstance(got, Outcome):
        return got
    signature, reply = got
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=TxSent(signature=signature))


@upstream(RpcSimulateTransaction)
async def rpc_simulate_transaction(call: Call, job: RpcSimulateTransaction) -> Outcome:
    """simulateTransaction (base64, sigVerify off) → Simulation; a transaction that fails is still ``ok``."""
    url = _endpoint(call, job.url, job.url_env)
    if isinstance(url, Outcome):
        return url
    config = _config(
        encoding="base64",
        sigVerify=False,
        replaceRecentBlockhash=job.replace_recent_blockhash,
        commitment=job.commitment,
    )
    tx = base64.b64encode(job.transaction).decode()
    got = await rpc_call(call, url, "simulateTransaction", [tx, config], _SimResult, headers=call.auth(job.secret))
    if isinstance(got, Outcome):
        return got
    result, reply = got
    v = result.value
    value = Simulation(
        slot=result.context.slot,
        units_consumed=v.units_consumed or 0,
        err="" if v.err is None else orjson.dumps(v.err).decode(),
        logs=(v.logs or [])[-SIMULATION_LOG_LINES:],
    )
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)


@upstream(RpcSignatureStatuses)
async def rpc_signature_statuses(call: Call, job: RpcSignatureStatuses) -> Outcome:
    """getSignatureStatuses → SignatureStatuses (None for unknown signatures)."""
    if len(job.signatures) > MAX_SIGNATURES:
        return Outcome(
            result="decode_error",
            error=f"getSignatureStatuses takes at most {MAX_SIGNATURES} signatures, got {len(job.signatures)}",
        )
    url = _endpoint(call, job.url, job.url_env)
    if isinstance(url, Outcome):
        return url
    params: list[Any] = [job.signatures]
    if job.search_transaction_history is not None:
        params.append({"searchTransactionHistory": job.search_transaction_history})
    got = await rpc_call(call, url, "getSignatureStatuses", params, _SigStatuses, headers=call.auth(job.secret))
    if isinstance(got, Outcome):
        return got
    result, reply = got
    statuses = [
        None
        if s is None
        else SignatureStatus(
            slot=s.slot,
            confirmations=s.confirmations,
            confirmation_status=s.confirmation_status or "",
            err="" if s.err is None else orjson.dumps(s.err).decode(),
        )
        for s in result.value
    ]
    value = SignatureStatuses(slot=result.context.slot, statuses=statuses)
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)


@upstream(RpcGetMultipleAccounts)
async def rpc_get_multiple_accounts(call: Call, job: RpcGetMultipleAccounts) -> Outcome:
    """getMultipleAccounts (base64) → Accounts, in the order asked (data None for missing accounts)."""
    if len(job.addresses) > MAX_ACCOUNTS:
        return Outcome(
            result="decode_error",
            error=f"getMultipleAccounts takes at most {MAX_ACCOUNTS} addresses, got {len(job.addresses)}",
        )
    url = _endpoint(call, job.url, job.url_env)
    if isinstance(url, Outcome):
        return url
    config = _config(encoding="base64", commitment=job.commitment, minContextSlot=job.min_context_slot)
    got = await rpc_call(
        call, url, "getMultipleAccounts", [job.addresses, config], _Accounts, headers=call.auth(job.secret)
    )
    if isinstance(got, Outcome):
        return got
    result, reply = got
    if len(result.value) != len(job.addresses):
        return Outcome(
            result="decode_error",
            status=reply.status,
            latency=reply.latency,
            error=f"getMultipleAccounts: asked for {len(job.addresses)} accounts, got {len(result.value)}",
        )
    accounts = [
        AccountInfo(address=address)
        if a is None
        else AccountInfo(address=address, data=a.data[0], owner=a.owner, lamports=a.lamports, executable=a.executable)
        for address, a in zip(job.addresses, result.value, strict=True)
    ]
    value = Accounts(slot=result.context.slot, accounts=accounts)
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)


@upstream(RpcPrioritizationFees)
async def rpc_prioritization_fees(call: Call, job: RpcPrioritizationFees) -> Outcome:
    """getRecentPrioritizationFees → PrioritizationFees, oldest slot first."""
    if len(job.accounts) > MAX_FEE_ACCOUNTS:
        return Outcome(
            result="decode_error",
            error=f"getRecentPrioritizationFees takes at most {MAX_FEE_ACCOUNTS} accounts, got {len(job.accounts)}",
        )
    url = _endpoint(call, job.url, job.url_env)
    if isinstance(url, Outcome):
        return url
    params: list[Any] = [job.accounts] if job.accounts else []
    got = await rpc_call(
        call, url, "getRecentPrioritizationFees", params, list[_SlotFee], headers=call.auth(job.secret)
    )
    if isinstance(got, Outcome):
        return got
    result, reply = got
    ordered = sorted(result, key=lambda f: f.slot)
    value = PrioritizationFees(slot=ordered[-1].slot if ordered else 0, fees=[f.prioritization_fee for f in ordered])
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)


def _token_balances(balances: list[_TokenBalance] | None) -> list[TokenBalance]:
    return [TokenBalance(b.account_index, b.mint, b.owner, int(b.ui_token_amount.amount)) for b in balances or ()]


@upstream(RpcGetTransaction)
async def rpc_get_transaction(call: Call, job: RpcGetTransaction) -> Outcome:
    """getTransaction → TransactionMeta (``found`` False when the node does not know it yet)."""
    url = _endpoint(call, job.url, job.url_env)
    if isinstance(url, Outcome):
        return url
    config = _config(encoding="base64", maxSupportedTransactionVersion=0, commitment=job.commitment)
    got = await rpc_call_or_null(
        call, url, "getTransaction", [job.signature, config], _Transaction, headers=call.auth(job.secret)
    )
    if isinstance(got, Outcome):
        return got
    tx, reply = got
    if tx is None:
        return Outcome(result="ok", status=reply.status, latency=reply.latency, value=TransactionMeta(found=False))
    if tx.meta is None:
        return Outcome(
            result="decode_error", status=reply.status, latency=reply.latency, error="getTransaction: no meta"
        )
    m = tx.meta
    try:
        value = TransactionMeta(
            slot=tx.slot,
            err="" if m.err is None else orjson.dumps(m.err).decode(),
            fee=m.fee,
            pre_balances=m.pre_balances,
            post_balances=m.post_balances,
            pre_token_balances=_token_balances(m.pre_token_balances),
            post_token_balances=_token_balances(m.post_token_balances),
        )
    except ValueError as exc:  # an amount that is not a number
        return Outcome(
            result="decode_error", status=reply.status, latency=reply.latency, error=f"getTransaction: {exc}"
        )
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)
