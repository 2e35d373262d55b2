"""Solana JSON-RPC (``/rpc``, and ``/staked`` as a separately limited sender), reference §7.

Reads (balances, accounts, token balances, statuses) and ``simulateTransaction`` see the VM's
state at the current slot; ``sendTransaction`` runs the simulation first unless
``skipPreflight`` (a failing preflight is answered -32002 and costs nothing), then lands the
transaction, which pays its fee even if it fails on chain. ``requestAirdrop`` credits at once.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from solders.account import Account
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from galileo.sim.accounts import AccountData
from galileo.sim.common import b58encode, decode_wire
from galileo.sim.errors import json_response
from galileo.sim.ledger import MAX_TX_BYTES, DecodedTx, TxRejected, decode_tx
from galileo.sim.prices import MINTS, deterministic_gauss, deterministic_unit
from galileo.sim.state import SimState, state_of
from galileo.sim.txerrors import preflight_message
from galileo.sim.txmeta import TokenAmount, TxMeta
from galileo.sim.vm import Execution, WalletLimit

__all__ = ["RpcError", "add_routes"]

API_VERSION = "2.2.7"
_U64_MAX = 2**64 - 1
_PROGRAM_UNITS = {
    "ComputeBudget111111111111111111111111111111": 150,
    "11111111111111111111111111111111": 150,
    "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA": 2_900,
    "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL": 4_300,
}
_SIM_ERR = {
    "blockhash_not_found": "BlockhashNotFound",
    "expired": "BlockhashNotFound",
    "already_processed": "AlreadyProcessed",
}
_SIM_MSG = {
    "BlockhashNotFound": "Blockhash not found",
    "AlreadyProcessed": "This transaction has already been processed",
}
_MAX_AIRDROP = 1_000 * 10**9
_FEE_SLOTS = 150


class RpcError(Exception):
    """A JSON-RPC error to answer with."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _opts(params: list[Any], index: int) -> dict[str, Any]:
    opts = params[index] if len(params) > index else None
    return opts if isinstance(opts, dict) else {}


def _context(state: SimState, opts: dict[str, Any] | None = None) -> dict[str, Any]:
    slot = state.slot()
    min_slot = (opts or {}).get("minContextSlot")
    if isinstance(min_slot, int) and min_slot > slot:
        raise RpcError(-32016, "Minimum context slot has not been reached", {"contextSlot": slot})
    return {"slot": slot, "apiVersion": API_VERSION}


def _decode(state: SimState, params: list[Any], verify: bool) -> DecodedTx:
    if not params:
        raise RpcError(-32602, "Invalid params: missing transaction")
    encoding = str(_opts(params, 1).get("encoding", "base58"))
    try:
        raw = decode_wire(params[0], encoding)
        return decode_tx(raw, verify=verify)
    except ValueError as exc:
        raise RpcError(-32602, f"invalid transaction: {exc}") from None
    except TxRejected as exc:
        if exc.reason == "signature":
            raise RpcError(-32003, "Transaction signature verification failure") from None
        if exc.reason == "too_large":
            raise RpcError(-32602, f"transaction too large: {exc.detail} (max: raw {MAX_TX_BYTES})") from None
        raise RpcError(-32602, f"failed to deserialize VersionedTransaction: {exc.detail}") from None


def _fake_simulation(decoded: DecodedTx, err: Any) -> dict[str, Any]:
    """What simulateTransaction says with execution off: per-program unit estimates, no run."""
    logs: list[str] = []
    units = 0
    if err is None:
        keys = [str(k) for k in decoded.tx.message.account_keys]
        for ci in decoded.tx.message.instructions:
            program = keys[ci.program_id_index]
            used = _PROGRAM_UNITS.get(program, 60_000)
            units += used
            logs += [
                f"Program {program} invoke [1]",
                f"Program {program} consumed {used} of 1400000 compute units",
                f"Program {program} success",
            ]
    return _simulation_value(err, logs, units)


def _simulation_value(err: Any, logs: list[str], units: int) -> dict[str, Any]:
    return {
        "err": err,
        "logs": logs,
        "accounts": None,
        "unitsConsumed": units,
        "returnData": None,
        "innerInstructions": None,
        "replacementBlockhash": None,
    }


def _simulate(state: SimState, decoded: DecodedTx, err: Any) -> dict[str, Any]:
    if err is not None or not state.config.execution:
        return _fake_simulation(decoded, err)
    run: Execution = state.vm.simulate(decoded.tx)
    return _simulation_value(run.err, list(run.logs), run.units)


def send_transaction(state: SimState, params: list[Any], source: str) -> str:
    """sendTransaction: checks and preflight (unless skipPreflight), then lands at its slot.

    With skipPreflight a transaction that fails a ledger check is silently dropped.
    """
    opts = _opts(params, 1)
    _context(state, opts)
    try:
        decoded = _decode(state, params, verify=True)
    except RpcError as exc:
        state.stats.send(source, False, "signature" if exc.code == -32003 else "malformed")
        raise
    now = state.now()
    if state.ledger.pending_landing(decoded.signature) is not None and not state.ledger.is_landed(
        decoded.signature, now
    ):
        return decoded.signature  # a re-send of a pending transaction is deduplicated
    skip = opts.get("skipPreflight") is True
    try:
        state.ledger.check_tx(decoded, now)
    except TxRejected as exc:
        if skip:
            state.stats.send(source, False, f"dropped:{exc.reason}")
            return decoded.signature
        state.stats.send(source, False, exc.reason)
        err = _SIM_ERR[exc.reason]
        raise RpcError(
            -32002, f"Transaction simulation failed: {_SIM_MSG[err]}", _fake_simulation(decoded, err)
        ) from None
    state.seen(decoded.tx.message.account_keys[0])
    if not skip and state.config.execution:
        preflight = _simulate(state, decoded, None)
        if preflight["err"] is not None:
            state.stats.send(source, False, "preflight")
            raise RpcError(-32002, preflight_message(preflight["err"]), preflight)
    state.ledger.accept(decoded.signatures, source, now, txs=(decoded.tx,))
    state.stats.send(source, True)
    return decoded.signature


def simulate_transaction(state: SimState, params: list[Any]) -> dict[str, Any]:
    """simulateTransaction: sigVerify and replaceRecentBlockhash as documented; runs in the VM."""
    opts = _opts(params, 1)
    context = _context(state, opts)
    replace = opts.get("replaceRecentBlockhash") is True
    if replace and opts.get("sigVerify") is True:
        raise RpcError(-32602, "sigVerify may not be used with replaceRecentBlockhash")
    decoded = _decode(state, params, verify=opts.get("sigVerify") is True)
    err: Any = None
    replacement = None
    now = state.now()
    if replace:
        bh, last_valid, _ = state.ledger.issue_blockhash(now)
        replacement = {"blockhash": str(bh), "lastValidBlockHeight": last_valid}
    else:
        try:
            state.ledger.check_tx(decoded, now)
        except TxRejected as exc:
            err = _SIM_ERR[exc.reason]
    value = _simulate(state, decoded, err)
    value["replacementBlockhash"] = replacement
    return {"context": context, "value": value}


def _account_json(account: AccountData | Account | None, encoding: str) -> dict[str, Any] | None:
    if account is None:
        return None
    data_bytes = bytes(account.data)
    if encoding in ("base58", "binary"):
        if len(data_bytes) > 128:
            raise RpcError(
                -32600,
                "Encoded binary (base 58) data should be less than 128 bytes, please use Base64 encoding.",
            )
        data: Any = [b58encode(data_bytes), "base58"]
    elif encoding in ("base64", "jsonParsed"):
        data = [base64.b64encode(data_bytes).decode(), "base64"]
    else:
        raise RpcError(-32602, f"Invalid params: unsupported encoding {encoding!r}")
    return {
        "data": data,
        "executable": account.executable,
        "lamports": account.lamports,
        "owner": str(account.owner),
        "rentEpoch": _U64_MAX,
        "space": len(data_bytes),
    }


def _lookup(state: SimState, key: str) -> AccountData | Account | None:
    if state.config.execution:
        return state.vm.account(Pubkey.from_string(key))
    return state.accounts.account(key)


def _pubkey(value: Any) -> str:
    try:
        return str(Pubkey.from_string(value))
    except (TypeError, ValueError):
        raise RpcError(-32602, f"Invalid param: {value!r} is not a valid pubkey") from None


def _accounts(state: SimState, params: list[Any], many: bool) -> dict[str, Any]:
    opts = _opts(params, 1)
    context = _context(state, opts)
    encoding = str(opts.get("encoding", "base58"))
    if many:
        if not params or not isinstance(params[0], list):
            raise RpcError(-32602, "Invalid params: expected [[pubkeys...], config]")
        if len(params[0]) > 100:
            raise RpcError(-32602, "Too many inputs provided; max 100")
        keys = [_pubkey(k) for k in params[0]]
        return {
            "context": context,
            "value": [_account_json(_lookup(state, k), encoding) for k in keys],
        }
    if not params:
        raise RpcError(-32602, "Invalid params: expected [pubkey, config]")
    return {"context": context, "value": _account_json(_lookup(state, _pubkey(params[0])), encoding)}


def _statuses(state: SimState, params: list[Any]) -> dict[str, Any]:
    if not params or not isinstance(params[0], list):
        raise RpcError(-32602, "Invalid params: expected [[signatures...]]")
    if len(params[0]) > 256:
        raise RpcError(-32602, "Too many inputs provided; max 256")
    slot = state.slot()
    value: list[Any] = []
    for sig in params[0]:
        landing = state.ledger.pending_landing(sig) if isinstance(sig, str) else None
        conf = state.ledger.confirmation(landing, slot) if landing is not None else None
        if landing is None or conf is None:
            value.append(None)
            continue
        err = landing.err_of(sig)
        value.append(
            {
                "slot": landing.land_slot,
                "confirmations": conf[1],
                "err": err,
                "status": {"Ok": None} if err is None else {"Err": err},
                "confirmationStatus": conf[0],
            }
        )
    return {"context": {"slot": slot, "apiVersion": API_VERSION}, "value": value}


def _wallet(params: list[Any]) -> Pubkey:
    if not params:
        raise RpcError(-32602, "Invalid params: expected [pubkey, config]")
    return Pubkey.from_string(_pubkey(params[0]))


def _execution_on(state: SimState) -> None:
    if not state.config.execution:
        raise RpcError(-32601, "Method not found (the simulator runs with execution off)")


def _airdrop(state: SimState, params: list[Any]) -> str:
    _execution_on(state)
    wallet = _wallet(params)
    lamports = params[1] if len(params) > 1 else None
    if not isinstance(lamports, int) or isinstance(lamports, bool) or not 0 < lamports <= _MAX_AIRDROP:
        raise RpcError(-32602, f"Invalid params: lamports must be an integer in 1..{_MAX_AIRDROP}")
    try:
        signature = state.vm.airdrop(wallet, lamports)
    except WalletLimit as exc:
        raise RpcError(-32603, f"Internal error: airdrop refused: {exc}") from None
    state.ledger.record_landed(signature, "airdrop", state.now())
    return signature


def _balance(state: SimState, params: list[Any]) -> dict[str, Any]:
    _execution_on(state)
    context = _context(state, _opts(params, 1))
    return {"context": context, "value": state.vm.balance(_wallet(params))}


def _token_balance(state: SimState, params: list[Any]) -> dict[str, Any]:
    _execution_on(state)
    context = _context(state, _opts(params, 1))
    found = state.vm.token_amount(_wallet(params))
    if found is None:
        raise RpcError(-32602, "Invalid param: could not find account or not a Token account")
    amount, decimals = found
    ui = amount / 10**decimals
    return {
        "context": context,
        "value": {
            "amount": str(amount),
            "decimals": decimals,
            "uiAmount": ui,
            "uiAmountString": format(ui, f".{decimals}f").rstrip("0").rstrip(".") or "0",
        },
    }


def _prioritization_fees(state: SimState, params: list[Any]) -> list[dict[str, int]]:
    """The last 150 slots' minimum landed priority fee (micro-lamports/CU), seeded per slot:
    zero a third of the time, else lognormal around 5,000."""
    if params and not (isinstance(params[0], list) and len(params[0]) <= 128):
        raise RpcError(-32602, "Invalid params: expected [[pubkeys...]] (at most 128)")
    for key in params[0] if params else ():
        _pubkey(key)
    slot, seed = state.slot(), state.config.seed
    out = []
    for s in range(slot - _FEE_SLOTS + 1, slot + 1):
        if deterministic_unit(seed, "priority", s) < 1 / 3:
            fee = 0
        else:
            fee = int(5_000 * math.exp(deterministic_gauss(seed, "priority_fee", s)))
        out.append({"slot": s, "prioritizationFee": fee})
    return out


def _ui_amount(t: TokenAmount) -> dict[str, Any]:
    decimals = MINTS[t.mint].decimals if t.mint in MINTS else 0
    ui = t.amount / 10**decimals
    return {
        "accountIndex": t.account_index,
        "mint": t.mint,
        "owner": t.owner,
        "programId": t.program,
        "uiTokenAmount": {
            "amount": str(t.amount),
            "decimals": decimals,
            "uiAmount": ui,
            "uiAmountString": format(ui, f".{decimals}f").rstrip("0").rstrip(".") or "0",
        },
    }


def _tx_json(tx: VersionedTransaction) -> dict[str, Any]:
    """The ``json`` encoding of a transaction (what a client not asking for base64 gets)."""
    msg = tx.message
    h = msg.header
    message: dict[str, Any] = {
        "accountKeys": [str(k) for k in msg.account_keys],
        "header": {
            "numRequiredSignatures": h.num_required_signatures,
            "numReadonlySignedAccounts": h.num_readonly_signed_accounts,
            "numReadonlyUnsignedAccounts": h.num_readonly_unsigned_accounts,
        },
        "recentBlockhash": str(msg.recent_blockhash),
        "instructions": [
            {
                "programIdIndex": ix.program_id_index,
                "accounts": list(bytes(ix.accounts)),
                "data": b58encode(bytes(ix.data)),
                "stackHeight": None,
            }
            for ix in msg.instructions
        ],
    }
    if isinstance(msg, MessageV0):
        message["addressTableLookups"] = [
            {
                "accountKey": str(lookup.account_key),
                "writableIndexes": list(bytes(lookup.writable_indexes)),
                "readonlyIndexes": list(bytes(lookup.readonly_indexes)),
            }
            for lookup in msg.address_table_lookups
        ]
    return {"signatures": [str(sig) for sig in tx.signatures], "message": message}


def _get_transaction(state: SimState, params: list[Any]) -> dict[str, Any] | None:
    """getTransaction: what an executed transaction did (meta with balances), as a node answers.

    ``confirmed`` (default) or ``finalized``; ``processed`` is refused as real nodes refuse it.
    A v0 transaction needs ``maxSupportedTransactionVersion: 0``. Unknown, not yet confirmed,
    part of a failed bundle, or older than the last ``MAX_RECORDS`` transactions: null.
    """
    _execution_on(state)
    if not params or not isinstance(params[0], str):
        raise RpcError(-32602, "Invalid params: expected [signature, config]")
    opts = _opts(params, 1)
    commitment = opts.get("commitment", "confirmed")
    if commitment not in ("confirmed", "finalized"):
        raise RpcError(-32602, "Method does not support commitment below `confirmed`")
    encoding = str(opts.get("encoding", "json"))
    if encoding not in ("json", "jsonParsed", "base64", "base58"):
        raise RpcError(-32602, f"Invalid params: unsupported encoding {encoding!r}")
    slot = state.slot()
    landing = state.ledger.pending_landing(params[0])
    conf = state.ledger.confirmation(landing, slot) if landing is not None else None
    if conf is None or conf[0] == "processed" or (commitment == "finalized" and conf[0] != "finalized"):
        return None
    meta: TxMeta | None = state.vm.metas.get(params[0])
    if meta is None:
        return None
    tx = VersionedTransaction.from_bytes(meta.wire)
    v0 = isinstance(tx.message, MessageV0)
    if v0 and opts.get("maxSupportedTransactionVersion") is None:
        raise RpcError(
            -32015,
            "Transaction version (0) is not supported by the requesting client. Please try the request again "
            'with the following configuration parameter: "maxSupportedTransactionVersion": 0',
        )
    if encoding == "base64":
        transaction: Any = [base64.b64encode(meta.wire).decode(), "base64"]
    elif encoding == "base58":
        transaction = [b58encode(meta.wire), "base58"]
    else:
        transaction = _tx_json(tx)
    block_time = int(time.time() - (slot - meta.slot) * state.config.slot_ms / 1000)
    return {
        "slot": meta.slot,
        "blockTime": block_time,
        "version": 0 if v0 else "legacy",
        "transaction": transaction,
        "meta": {
            "err": meta.err,
            "status": {"Ok": None} if meta.err is None else {"Err": meta.err},
            "fee": meta.fee,
            "preBalances": list(meta.pre),
            "postBalances": list(meta.post),
            "innerInstructions": [],
            "logMessages": list(meta.logs),  # kept for failures only, as the VM keeps them
            "preTokenBalances": [_ui_amount(t) for t in meta.pre_tokens],
            "postTokenBalances": [_ui_amount(t) for t in meta.post_tokens],
            "rewards": [],
            "loadedAddresses": {"writable": list(meta.loaded_writable), "readonly": list(meta.loaded_readonly)},
            "computeUnitsConsumed": meta.units,
        },
    }


def _latest_blockhash(state: SimState, params: list[Any]) -> dict[str, Any]:
    context = _context(state, _opts(params, 0))
    bh, last_valid, slot = state.ledger.issue_blockhash(state.now())
    context["slot"] = slot
    return {"context": context, "value": {"blockhash": str(bh), "lastValidBlockHeight": last_valid}}


def _methods(source: str) -> dict[str, Callable[[SimState, list[Any]], Any]]:
    return {
        "getLatestBlockhash": _latest_blockhash,
        "getBlockHeight": lambda s, p: s.ledger.block_height(s.slot()),
        "getSlot": lambda s, p: s.slot(),
        "getHealth": lambda s, p: "ok",
        "getVersion": lambda s, p: {"solana-core": API_VERSION, "feature-set": 3294202862},
        "sendTransaction": lambda s, p: send_transaction(s, p, source),
        "simulateTransaction": simulate_transaction,
        "getSignatureStatuses": _statuses,
        "getAccountInfo": lambda s, p: _accounts(s, p, many=False),
        "getMultipleAccounts": lambda s, p: _accounts(s, p, many=True),
        "requestAirdrop": _airdrop,
        "getBalance": _balance,
        "getTokenAccountBalance": _token_balance,
        "getRecentPrioritizationFees": _prioritization_fees,
        "getTransaction": _get_transaction,
    }


def _call(state: SimState, methods: dict[str, Callable[[SimState, list[Any]], Any]], req: Any) -> dict[str, Any]:
    if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
        return {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid request"}, "id": None}
    rpc_id = req.get("id")
    fn = methods.get(req["method"])
    if fn is None:
        return {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": rpc_id}
    params = req.get("params", [])
    try:
        result = fn(state, params if isinstance(params, list) else [params])
    except RpcError as exc:
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.data is not None:
            error["data"] = exc.data
        return {"jsonrpc": "2.0", "error": error, "id": rpc_id}
    return {"jsonrpc": "2.0", "result": result, "id": rpc_id}


def _handler(source: str) -> Callable[[web.Request], Any]:
    methods = _methods(source)

    async def handle(request: web.Request) -> web.Response:
        state = state_of(request)
        state.settle()
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return json_response({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None})
        if isinstance(body, list):
            return json_response([_call(state, methods, r) for r in body])
        return json_response(_call(state, methods, body))

    return handle


def add_routes(app: web.Application) -> None:
    """Mount the JSON-RPC at /rpc and the staked sender at /staked."""
    app.router.add_post("/rpc", _handler("rpc"))
    app.router.add_post("/staked", _handler("staked"))
