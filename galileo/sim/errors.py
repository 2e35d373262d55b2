"""Each upstream's own error bodies (rate limit, outage, bad key, generic), per the wire reference."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

__all__ = ["error_body", "json_response", "rpc_fail", "rpc_ok", "service_of", "uses_jsonrpc"]

JITO_RATE_LIMITED = {
    "jsonrpc": "2.0",
    "error": {
        "code": -32097,
        "message": "Network congested. Endpoint is globally rate limited.",
        "data": None,
    },
    "id": None,
}


def service_of(bucket: str) -> str:
    """The service behind a rate-limit bucket (``jito:ny`` → ``jito``)."""
    return bucket.partition(":")[0]


def uses_jsonrpc(service: str) -> bool:
    """Whether the service answers errors in a JSON-RPC envelope."""
    return service in ("jito", "rpc", "staked")


def _rpc_error(code: int, message: str, rpc_id: Any, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "error": err, "id": rpc_id}


def error_body(service: str, status: int, rpc_id: Any = None, message: str | None = None) -> dict[str, Any]:
    """The body ``service`` sends with HTTP ``status`` (429, 401, 5xx or anything else)."""
    if service == "jito":
        if status == 429:
            return dict(JITO_RATE_LIMITED)
        if status == 401:
            return _rpc_error(-32600, message or "invalid or unauthorized uuid", rpc_id)
        return _rpc_error(-32603, message or f"Internal error (HTTP {status})", rpc_id)
    if service in ("rpc", "staked"):
        if status == 429:
            return _rpc_error(-32429, "max usage reached", rpc_id)
        if status == 401:
            return _rpc_error(-32401, message or "invalid api key provided", rpc_id)
        if status >= 500:
            return _rpc_error(-32005, message or "Node is unhealthy", rpc_id, {"numSlotsBehind": None})
        return _rpc_error(-32600, message or f"HTTP {status}", rpc_id)
    if service == "dflow":
        if status == 429:
            return {"code": "rate_limit_exceeded", "msg": message or "Rate limit exceeded, use an API key"}
        if status == 401:
            return {"code": "unauthorized", "msg": message or "Invalid API key"}
        if status >= 500:
            return {"code": "service_unavailable", "msg": message or "Service temporarily unavailable"}
        return {"code": "bad_request", "msg": message or f"HTTP {status}"}
    defaults = {429: "Too Many Requests", 401: "Unauthorized", 503: "Service Unavailable"}
    return {"error": message or defaults.get(status, f"HTTP {status}")}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response encoded with orjson."""
    return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type="application/json")


def rpc_ok(result: Any, rpc_id: Any, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON-RPC 2.0 success reply."""
    return json_response({"jsonrpc": "2.0", "result": result, "id": rpc_id}, headers=headers)


def rpc_fail(code: int, message: str, rpc_id: Any, status: int = 200, data: Any = None) -> web.Response:
    """A JSON-RPC 2.0 error reply with HTTP ``status``."""
    return json_response(_rpc_error(code, message, rpc_id, data), status)
