"""Jito block engine: bundles and transactions JSON-RPC per region, and the tip floor (reference §6).

An accepted bundle enters the auction (:mod:`galileo.sim.auction`): it wins or is outbid by a
seeded draw weighed by its tip against the published floor. A winner runs in the VM at its slot,
all or nothing; a loser, or a bundle whose transactions fail, is ``Failed`` and costs nothing.
``sendTransaction`` with ``bundleOnly=true`` is a one-transaction bundle; without it the
transaction goes to the network as a plain one (it pays its fee even when it fails).
"""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from galileo.sim import auction
from galileo.sim.accounts import SYSTEM_PROGRAM, TIP_ACCOUNTS
from galileo.sim.common import decode_wire
from galileo.sim.errors import json_response, rpc_fail, rpc_ok
from galileo.sim.ledger import DecodedTx, TxRejected, decode_tx
from galileo.sim.state import SimState, state_of

__all__ = ["MAX_BUNDLE_TXS", "MIN_TIP_LAMPORTS", "add_routes", "bundle_id_of", "tip_of"]

MAX_BUNDLE_TXS = 5
MIN_TIP_LAMPORTS = 1000
_TIPS = frozenset(TIP_ACCOUNTS)
_UNSIGNED = "bundles must not contain any duplicate transactions and every transaction must be signed"
_LEDGER_MESSAGES = {
    "blockhash_not_found": "bundle contains an invalid blockhash",
    "expired": "bundle contains an expired blockhash",
    "already_processed": "bundle contains an already processed transaction",
}


class _Reject(Exception):
    def __init__(self, reason: str, message: str, code: int = -32602) -> None:
        super().__init__(message)
        self.reason, self.message, self.code = reason, message, code


def bundle_id_of(first_signatures: list[str]) -> str:
    """Jito's bundle id: hex SHA-256 of the first signatures (base58) joined by ','."""
    return hashlib.sha256(",".join(first_signatures).encode()).hexdigest()


def tip_of(decoded: DecodedTx) -> tuple[bool, int]:
    """(write-locks a tip account as a static key, lamports sent to tip accounts by top-level transfers)."""
    msg = decoded.tx.message
    keys = [str(k) for k in msg.account_keys]
    h = msg.header
    n, signed, ro_signed, ro_unsigned = (
        len(keys),
        h.num_required_signatures,
        h.num_readonly_signed_accounts,
        h.num_readonly_unsigned_accounts,
    )

    def writable(i: int) -> bool:
        return i < signed - ro_signed if i < signed else i < n - ro_unsigned

    locks = any(k in _TIPS and writable(i) for i, k in enumerate(keys))
    lamports = 0
    system = str(SYSTEM_PROGRAM)
    for ci in msg.instructions:
        data, accts = bytes(ci.data), bytes(ci.accounts)
        if ci.program_id_index >= n or keys[ci.program_id_index] != system or len(data) < 12 or len(accts) < 2:
            continue
        (kind,) = struct.unpack_from("<I", data)
        if kind == 2 and accts[1] < n and keys[accts[1]] in _TIPS:
            lamports += struct.unpack_from("<Q", data, 4)[0]
    return locks, lamports


def _encoding(params: list[Any], index: int) -> str:
    opts = params[index] if len(params) > index and isinstance(params[index], dict) else {}
    return str(opts.get("encoding", "base58"))


def _decode_all(items: list[Any], encoding: str) -> list[DecodedTx]:
    decoded = []
    for i, item in enumerate(items):
        try:
            raw = decode_wire(item, encoding)
            decoded.append(decode_tx(raw, verify=True))
        except ValueError as exc:
            raise _Reject("malformed", f"transaction #{i} could not be decoded: {exc}") from None
        except TxRejected as exc:
            if exc.reason == "signature":
                raise _Reject("signature", _UNSIGNED) from None
            if exc.reason == "too_large":
                raise _Reject(
                    "too_large", f"transaction #{i} exceeds the maximum transaction size of 1232 bytes"
                ) from None
            raise _Reject("malformed", f"transaction #{i} could not be decoded: {exc.detail}") from None
    return decoded


def _check_ledger(state: SimState, txs: list[DecodedTx], bundle_id: str, now: float) -> None:
    existing = state.ledger.bundles.get(bundle_id)
    for tx in txs:
        try:
            state.ledger.check_tx(tx, now)
        except TxRejected as exc:
            raise _Reject(exc.reason, _LEDGER_MESSAGES[exc.reason]) from None
        landing = state.ledger.pending_landing(tx.signature)
        if landing is not None and landing is not existing:
            raise _Reject("already_processed", _LEDGER_MESSAGES["already_processed"])


def _send_bundle(state: SimState, params: list[Any]) -> str:
    if not params or not isinstance(params[0], list):
        raise _Reject("malformed", 'params must be [[transactions...], {"encoding": "base64"}]')
    items = params[0]
    if not items:
        raise _Reject("empty", "bundle must contain at least one transaction")
    if len(items) > MAX_BUNDLE_TXS:
        raise _Reject("too_many_transactions", "bundle exceeds max transaction length")
    txs = _decode_all(items, _encoding(params, 1))
    firsts = [t.signature for t in txs]
    if len(set(firsts)) != len(firsts):
        raise _Reject("duplicate", _UNSIGNED)
    tips = [tip_of(t) for t in txs]
    if not any(lock for lock, _ in tips):
        raise _Reject("no_tip", "bundle does not lock any of the tip PDAs")
    if sum(lamports for _, lamports in tips) < MIN_TIP_LAMPORTS:
        raise _Reject("tip_too_low", f"bundle tip is below the minimum of {MIN_TIP_LAMPORTS} lamports")
    bundle_id = bundle_id_of(firsts)
    now = state.now()
    slot = state.settle()
    _check_ledger(state, txs, bundle_id, now)
    _accept_bundle(state, txs, sum(lamports for _, lamports in tips), bundle_id, "jito_bundle", slot)
    return bundle_id


def _accept_bundle(state: SimState, txs: list[DecodedTx], tip: int, bundle_id: str, source: str, slot: int) -> None:
    for tx in txs:
        state.seen(tx.tx.message.account_keys[0])
    chance = auction.land_probability(tip, auction.tip_floor(state.config.seed, slot), state.config.auction_contention)
    sigs = tuple(s for t in txs for s in t.signatures[:1])
    wins = auction.wins_auction(state.config.seed, bundle_id, chance)
    state.ledger.accept(
        sigs, source, state.now(), bundle_id, txs=tuple(t.tx for t in txs), atomic=True, wins_auction=wins
    )


def _bundle_ids(params: list[Any]) -> list[str]:
    if not params or not isinstance(params[0], list) or not all(isinstance(x, str) for x in params[0]):
        raise _Reject("malformed", "params must be [[bundle ids...]]")
    if len(params[0]) > MAX_BUNDLE_TXS:
        raise _Reject("malformed", f"a maximum of {MAX_BUNDLE_TXS} bundle ids may be requested")
    return list(params[0])


_INFLIGHT = {"pending": "Pending", "landed": "Landed", "failed": "Failed"}


def _statuses(state: SimState, params: list[Any], inflight: bool) -> dict[str, Any]:
    ids = _bundle_ids(params)
    slot = state.settle()
    value: list[Any] = []
    for bundle_id in ids:
        landing = state.ledger.bundles.get(bundle_id)
        if inflight:
            status = "Invalid" if landing is None else _INFLIGHT[landing.status]
            value.append(
                {
                    "bundle_id": bundle_id,
                    "status": status,
                    "landed_slot": landing.land_slot if landing and status == "Landed" else None,
                }
            )
            continue
        conf = state.ledger.confirmation(landing, slot) if landing is not None else None
        if landing is None or conf is None or landing.status != "landed":
            value.append(None)
            continue
        value.append(
            {
                "bundle_id": bundle_id,
                "transactions": list(landing.signatures),
                "slot": landing.land_slot,
                "confirmation_status": conf[0],
                "err": {"Ok": None},
            }
        )
    return {"context": {"slot": slot}, "value": value}


async def _rpc_body(request: web.Request) -> tuple[str, list[Any], Any] | web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return rpc_fail(-32700, "Parse error", None, 400)
    if not isinstance(body, dict) or not isinstance(body.get("method"), str):
        return rpc_fail(-32600, "Invalid request", None, 400)
    params = body.get("params", [])
    return body["method"], params if isinstance(params, list) else [params], body.get("id")


async def bundles(request: web.Request) -> web.Response:
    """POST /jito/{region}/api/v1/bundles."""
    state = state_of(request)
    parsed = await _rpc_body(request)
    if isinstance(parsed, web.Response):
        return parsed
    method, params, rpc_id = parsed
    try:
        if method == "sendBundle":
            try:
                result: Any = _send_bundle(state, params)
            except _Reject as exc:
                state.stats.send("jito_bundle", False, exc.reason)
                raise
            state.stats.send("jito_bundle", True)
        elif method == "getBundleStatuses":
            result = _statuses(state, params, inflight=False)
        elif method == "getInflightBundleStatuses":
            result = _statuses(state, params, inflight=True)
        elif method == "getTipAccounts":
            result = list(TIP_ACCOUNTS)
        else:
            return rpc_fail(-32601, "Method not found", rpc_id, 400)
    except _Reject as exc:
        return rpc_fail(exc.code, exc.message, rpc_id, 400)
    return rpc_ok(result, rpc_id)


async def transactions(request: web.Request) -> web.Response:
    """POST /jito/{region}/api/v1/transactions: sendTransaction, answered with an ``x-bundle-id`` header."""
    state = state_of(request)
    parsed = await _rpc_body(request)
    if isinstance(parsed, web.Response):
        return parsed
    method, params, rpc_id = parsed
    if method != "sendTransaction":
        return rpc_fail(-32601, "Method not found", rpc_id, 400)
    bundle_only = request.query.get("bundleOnly", "").lower() == "true"
    try:
        if not params:
            raise _Reject("malformed", 'params must be [transaction, {"encoding": "base64"}]')
        (tx,) = _decode_all([params[0]], _encoding(params, 1))
        lock, lamports = tip_of(tx)
        if bundle_only:
            if not lock:
                raise _Reject("no_tip", "bundle does not lock any of the tip PDAs")
            if lamports < MIN_TIP_LAMPORTS:
                raise _Reject("tip_too_low", f"bundle tip is below the minimum of {MIN_TIP_LAMPORTS} lamports")
        bundle_id = bundle_id_of([tx.signature])
        now = state.now()
        slot = state.settle()
        _check_ledger(state, [tx], bundle_id, now)
        if bundle_only:
            _accept_bundle(state, [tx], lamports, bundle_id, "jito_transaction", slot)
        else:
            state.seen(tx.tx.message.account_keys[0])
            state.ledger.accept(tx.signatures[:1], "jito_transaction", now, bundle_id, txs=(tx.tx,))
    except _Reject as exc:
        state.stats.send("jito_transaction", False, exc.reason)
        return rpc_fail(exc.code, exc.message, rpc_id, 400)
    state.stats.send("jito_transaction", True)
    return rpc_ok(tx.signature, rpc_id, headers={"x-bundle-id": bundle_id})


async def tip_floor(request: web.Request) -> web.Response:
    """GET /jito/api/v1/bundles/tip_floor: percentiles in SOL, varying a little per slot."""
    state = state_of(request)
    floor = auction.tip_floor(state.config.seed, state.slot())
    entry: dict[str, Any] = {"time": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
    for pct, sol in floor.items():
        entry[f"landed_tips_{pct}_percentile"] = sol
    entry["ema_landed_tips_50th_percentile"] = (
        auction.PERCENTILES["50th"] + floor["50th"]
    ) / 2  # an EMA lags the floor
    return json_response([entry])


def add_routes(app: web.Application) -> None:
    """Mount the block engine under /jito/{region} and the tip floor under /jito/api."""
    app.router.add_get("/jito/api/v1/bundles/tip_floor", tip_floor)
    app.router.add_post("/jito/{region}/api/v1/bundles", bundles)
    app.router.add_post("/jito/{region}/api/v1/transactions", transactions)
