"""JSON-RPC 2.0 over HTTP, as Jito's block engine and Solana RPC nodes speak it (reference §6, §7).

The error object decides the outcome, whatever the HTTP status: providers answer rate limits
with 429 or with 200, and a node that is behind says so in ``error.code``.

=========================  ============================================================
``error.code``             outcome
=========================  ============================================================
-32097 (Jito), -32429      rate_limited (also any HTTP 429); Retry-After, else "Retry
                           after Xms" in the message
-32005 node unhealthy      http_error with status 503 (the HTTP status if already 5xx),
                           so the coordinator cools the pair like any 5xx
anything else              http_error with the HTTP status and ``code: message``
                           (HTTP 408/504: timeout)
=========================  ============================================================
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec
import orjson

from broker.protocol import Outcome
from workers.clients.transport import Call, Reply, failed_reply, parse_retry_header, retry_after_in

__all__ = ["NODE_UNHEALTHY", "RATE_LIMIT_CODES", "RpcErrorBody", "rpc_call", "rpc_call_or_null", "rpc_failure"]

T = TypeVar("T")

RATE_LIMIT_CODES = frozenset({-32097, -32429})  # Jito "rate limited / congested"; providers' "max usage"
NODE_UNHEALTHY = -32005


class RpcErrorBody(msgspec.Struct):
    """The ``error`` member of a JSON-RPC answer."""

    code: int
    message: str = ""
    data: Any = None


class _Envelope(msgspec.Struct, Generic[T]):
    result: T | None = None
    error: RpcErrorBody | None = None


_decoders: dict[Any, Any] = {}


def _decoder(result_type: type[T]) -> msgspec.json.Decoder[_Envelope[T]]:
    dec: msgspec.json.Decoder[_Envelope[T]] | None = _decoders.get(result_type)
    if dec is None:
        dec = msgspec.json.Decoder(_Envelope[result_type])  # type: ignore[valid-type]
        _decoders[result_type] = dec
    return dec


async def rpc_call(
    call: Call,
    url: str,
    method: str,
    params: list[Any],
    result_type: type[T],
    *,
    headers: dict[str, str] | None = None,
    params_query: dict[str, str] | None = None,
    what: str = "",
) -> tuple[T, Reply] | Outcome:
    """Call ``method`` and decode its ``result`` as ``result_type``; any failure is an Outcome."""
    got = await rpc_call_or_null(
        call, url, method, params, result_type, headers=headers, params_query=params_query, what=what
    )
    if isinstance(got, Outcome):
        return got
    result, reply = got
    if result is None:
        return Outcome(
            result="decode_error",
            status=reply.status,
            latency=reply.latency,
            error=f"{what or method}: the answer has neither result nor error",
        )
    return result, reply


async def rpc_call_or_null(
    call: Call,
    url: str,
    method: str,
    params: list[Any],
    result_type: type[T],
    *,
    headers: dict[str, str] | None = None,
    params_query: dict[str, str] | None = None,
    what: str = "",
) -> tuple[T | None, Reply] | Outcome:
    """:func:`rpc_call` for methods whose ``"result": null`` means "not found" (getTransaction)."""
    what = what or method
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    reply = await call.request("POST", url, body=body, headers=headers, params=params_query)
    if isinstance(reply, Outcome):
        return reply
    try:
        envelope = _decoder(result_type).decode(reply.body)
    except msgspec.DecodeError as exc:
        failed = failed_reply(reply)  # a non-JSON-RPC error page: the status says it
        if failed is not None:
            return failed
        return Outcome(result="decode_error", status=reply.status, latency=reply.latency, error=f"{what}: {exc}")
    if envelope.error is not None:
        return rpc_failure(reply, envelope.error, what)
    failed = failed_reply(reply)
    if failed is not None:
        return failed
    return envelope.result, reply


def rpc_failure(reply: Reply, err: RpcErrorBody, what: str) -> Outcome:
    """The outcome of a JSON-RPC error (see the module table)."""
    text = f"{what}: HTTP {reply.status}, JSON-RPC {err.code}: {err.message}"
    if isinstance(err.data, dict) and err.data.get("err") is not None:
        text += f" (err: {orjson.dumps(err.data['err']).decode()})"  # preflight failures say why here
    elif isinstance(err.data, dict) and "numSlotsBehind" in err.data:
        text += f" (numSlotsBehind: {err.data['numSlotsBehind']})"
    text = text[:400]
    if err.code in RATE_LIMIT_CODES or reply.status == 429:
        retry = parse_retry_header(reply)
        if retry is None:
            retry = retry_after_in(err.message)
        return Outcome(result="rate_limited", status=reply.status, latency=reply.latency, retry_after=retry, error=text)
    if reply.status in (408, 504):
        return Outcome(result="timeout", status=reply.status, latency=reply.latency, error=text)
    if err.code == NODE_UNHEALTHY:
        status = reply.status if reply.status >= 500 else 503
        return Outcome(result="http_error", status=status, latency=reply.latency, error=text)
    return Outcome(result="http_error", status=reply.status, latency=reply.latency, error=text)
