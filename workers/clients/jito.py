"""Jito block engine JSON-RPC: bundles, bundle statuses, tip accounts, sendTransaction (reference §6).

``base_url`` is a region's root (``https://ny.mainnet.block-engine.jito.wtf``); bundle methods
go to ``/api/v1/bundles``, sendTransaction to ``/api/v1/transactions``. Auth is optional: a
SecretRef for ``x-jito-auth: <uuid>``. Errors follow :mod:`workers.clients.jsonrpc`; -32097
("Network congested ...", HTTP 429) is rate_limited. Limits Jito states (5 transactions per
bundle, 5 ids per status query) are checked before sending: a job over them ends as
``decode_error`` and nothing leaves the worker.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import orjson

from broker.jobs import (
    JitoBundleStatuses,
    JitoInflightStatuses,
    JitoSendBundle,
    JitoSendTransaction,
    JitoTipAccounts,
    JitoTipFloor,
)
from broker.protocol import Outcome
from broker.results import BundleAccepted, BundleStatus, BundleStatuses, TipAccounts, TipFloor, TxSent
from workers.clients.jsonrpc import rpc_call
from workers.clients.swap import get_json
from workers.clients.transport import Call, upstream

__all__ = [
    "MAX_BUNDLE",
    "jito_bundle_statuses",
    "jito_inflight_statuses",
    "jito_send_bundle",
    "jito_tip_accounts",
    "jito_tip_floor",
]

MAX_BUNDLE = 5  # transactions per bundle, and bundle ids per status query
_B64 = {"encoding": "base64"}


class _Context(msgspec.Struct):
    slot: int


class _Status(msgspec.Struct):
    bundle_id: str
    transactions: list[str] = []
    slot: int | None = None
    confirmation_status: str = ""
    err: Any = None


class _Statuses(msgspec.Struct):
    context: _Context
    value: list[_Status | None]


class _Inflight(msgspec.Struct):
    bundle_id: str
    status: str
    landed_slot: int | None = None


class _InflightStatuses(msgspec.Struct):
    context: _Context
    value: list[_Inflight | None]


class _FloorEntry(msgspec.Struct):
    landed_tips_25th_percentile: float
    landed_tips_50th_percentile: float
    landed_tips_75th_percentile: float
    landed_tips_95th_percentile: float
    landed_tips_99th_percentile: float
    ema_landed_tips_50th_percentile: float = 0.0


_floor_decoder = msgspec.json.Decoder(list[_FloorEntry])


def _lamports(sol: float) -> int:
    return round(sol * 1_000_000_000)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _too_many(what: str, n: int, noun: str) -> Outcome | None:
    if n == 0:
        return Outcome(result="decode_error", error=f"{what}: no {noun} given; nothing was sent")
    if n > MAX_BUNDLE:
        return Outcome(
            result="decode_error",
            error=f"{what}: Jito takes at most {MAX_BUNDLE} {noun}, this job has {n}; nothing was sent",
        )
    return None


def _err_text(err: Any) -> str:
    if err is None or err == {"Ok": None}:
        return ""
    return orjson.dumps(err).decode()


@upstream(JitoSendBundle)
async def jito_send_bundle(call: Call, job: JitoSendBundle) -> Outcome:
    """sendBundle (base64) → BundleAccepted."""
    what = "jito sendBundle"
    refused = _too_many(what, len(job.transactions), "transactions")
    if refused is not None:
        return refused
    params = [[_b64(tx) for tx in job.transactions], _B64]
    got = await rpc_call(
        call, job.base_url + "/api/v1/bundles", "sendBundle", params, str, headers=call.auth(job.secret), what=what
    )
    if isinstance(got, Outcome):
        return got
    bundle_id, reply = got
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=BundleAccepted(bundle_id=bundle_id))


@upstream(JitoBundleStatuses)
async def jito_bundle_statuses(call: Call, job: JitoBundleStatuses) -> Outcome:
    """getBundleStatuses → BundleStatuses (status = confirmation_status; None for unknown bundles)."""
    what = "jito getBundleStatuses"
    refused = _too_many(what, len(job.bundle_ids), "bundle ids")
    if refused is not None:
        return refused
    got = await rpc_call(
        call,
        job.base_url + "/api/v1/bundles",
        "getBundleStatuses",
        [job.bundle_ids],
        _Statuses,
        headers=call.auth(job.secret),
        what=what,
    )
    if isinstance(got, Outcome):
        return got
    result, reply = got
    statuses = [
        None
        if s is None
        else BundleStatus(
            bundle_id=s.bundle_id,
            status=s.confirmation_status,
            slot=s.slot,
            transactions=s.transactions,
            err=_err_text(s.err),
        )
        for s in result.value
    ]
    value = BundleStatuses(slot=result.context.slot, statuses=statuses)
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)


@upstream(JitoInflightStatuses)
async def jito_inflight_statuses(call: Call, job: JitoInflightStatuses) -> Outcome:
    """getInflightBundleStatuses → BundleStatuses (status Invalid/Pending/Failed/Landed)."""
    what = "jito getInflightBundleStatuses"
    refused = _too_many(what, len(job.bundle_ids), "bundle ids")
    if refused is not None:
        return refused
    got = await rpc_call(
        call,
        job.base_url + "/api/v1/bundles",
        "getInflightBundleStatuses",
        [job.bundle_ids],
        _InflightStatuses,
        headers=call.auth(job.secret),
        what=what,
    )
    if isinstance(got, Outcome):
        return got
    result, reply = got
    statuses = [
        None if s is None else BundleStatus(bundle_id=s.bundle_id, status=s.status, slot=s.landed_slot)
        for s in result.value
    ]
    value = BundleStatuses(slot=result.context.slot, statuses=statuses)
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)


@upstream(JitoTipAccounts)
async def jito_tip_accounts(call: Call, job: JitoTipAccounts) -> Outcome:
    """getTipAccounts → TipAccounts."""
    got = await rpc_call(
        call,
        job.base_url + "/api/v1/bundles",
        "getTipAccounts",
        [],
        list[str],
        headers=call.auth(job.secret),
        what="jito getTipAccounts",
    )
    if isinstance(got, Outcome):
        return got
    accounts, reply = got
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=TipAccounts(accounts=accounts))


@upstream(JitoSendTransaction)
async def jito_send_transaction(call: Call, job: JitoSendTransaction) -> Outcome:
    """sendTransaction on /api/v1/transactions (``?bundleOnly=true`` if asked) → TxSent with x-bundle-id."""
    got = await rpc_call(
        call,
        job.base_url + "/api/v1/transactions",
        "sendTransaction",
        [_b64(job.transaction), _B64],
        str,
        headers=call.auth(job.secret),
        params_query={"bundleOnly": "true"} if job.bundle_only else None,
        what="jito sendTransaction",
    )
    if isinstance(got, Outcome):
        return got
    signature, reply = got
    value = TxSent(signature=signature, bundle_id=reply.headers.get("x-bundle-id", ""))
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)


@upstream(JitoTipFloor)
async def jito_tip_floor(call: Call, job: JitoTipFloor) -> Outcome:
    """GET the tip floor (percentiles in SOL) → TipFloor in lamports."""
    got = await get_json(call, job.url, {}, None, _floor_decoder, "jito tip_floor")
    if isinstance(got, Outcome):
        return got
    entries, reply = got
    if not entries:
        return Outcome(result="decode_error", status=reply.status, latency=reply.latency, error="tip_floor: empty list")
    e = entries[0]
    value = TipFloor(
        p25=_lamports(e.landed_tips_25th_percentile),
        p50=_lamports(e.landed_tips_50th_percentile),
        p75=_lamports(e.landed_tips_75th_percentile),
        p95=_lamports(e.landed_tips_95th_percentile),
        p99=_lamports(e.landed_tips_99th_percentile),
        ema50=_lamports(e.ema_landed_tips_50th_percentile),
    )
    return Outcome(result="ok", status=reply.status, latency=reply.latency, value=value)
