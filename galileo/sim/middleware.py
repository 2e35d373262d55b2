"""The per-request pipeline in front of every upstream handler.

Order: latency draw → ip override → API key → limiter → fault draw → handler. The limiter judges
each request when it arrives; the drawn delay is then spent before the answer, refusals included
(a 429 crosses the same network) unless the refusing limit is a gateway's (``refuse=at_once``); an
admitted request waits its turn in a queue's line (the ``queue`` shape) before it, and holds its
concurrency slot until its answer is written or its client goes away.
Each HTTP request is counted once in /sim/stats with its final status; /sim/* is neither limited,
delayed, faulted nor counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import orjson
from aiohttp import web

from galileo.sim.errors import error_body, json_response, uses_jsonrpc
from galileo.sim.faults import SLOW_BODY_SECONDS, TIMEOUT_HOLD_SECONDS, Fault, reset_connection
from galileo.sim.limiter import Limiter, refusal_header
from galileo.sim.limits import api_key_of, budget_key
from galileo.sim.state import COUNTED, SimState, state_of

__all__ = ["bucket_of", "sim_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_WS_FAULTS = frozenset({"latency_spike", "timeout", "reset", "5xx"})


def bucket_of(path: str) -> str | None:
    """The rate-limit bucket of a path; None for /sim/* (exempt from everything)."""
    if path.startswith("/sim/"):
        return None
    if path.startswith("/jupiter/swap/"):
        return "jupiter"
    if path.startswith("/jupiter/ultra/"):
        return "ultra"
    if path.startswith("/dflow/"):
        return "dflow"
    if path.startswith("/jito/"):
        if path.startswith("/jito/api/v1/bundles/tip_floor"):
            return "tip_floor"
        return "jito:" + path.split("/", 3)[2]
    if path in ("/rpc", "/staked"):
        return path[1:]
    if path.startswith("/titan/"):
        return "titan"
    return "other"


async def _rpc_id(request: web.Request, service: str) -> Any:
    if not uses_jsonrpc(service) or service == "jito":
        return None  # Jito's observed 429 body carries "id": null
    try:
        body = orjson.loads(await request.read())
    except (orjson.JSONDecodeError, ValueError):
        return None
    return body.get("id") if isinstance(body, dict) else None


def _api_key_ok(state: SimState, request: web.Request, service: str) -> bool:
    want = state.config.api_keys.get(service)
    return want is None or api_key_of(request, service) == want


async def _faulted(request: web.Request, handler: Handler, fault: Fault, service: str) -> web.StreamResponse:
    """Serve ``request`` through ``fault`` (timeout and reset are counted by the caller)."""
    if fault.kind == "latency_spike":
        await asyncio.sleep(fault.spike_seconds)
        return await handler(request)
    if fault.kind == "5xx":
        return json_response(error_body(service, 503, await _rpc_id(request, service)), 503)
    if fault.kind == "timeout":
        await asyncio.sleep(TIMEOUT_HOLD_SECONDS)
        return json_response(error_body(service, 504), 504)
    resp = await handler(request)
    if not isinstance(resp, web.Response) or resp.body is None:
        return resp
    body = bytes(resp.body)  # type: ignore[arg-type]
    if fault.kind == "malformed":
        return web.Response(body=body[: max(1, len(body) // 2)], status=200, content_type="application/json")
    slow = web.StreamResponse(status=resp.status, headers=resp.headers)
    slow.content_length = len(body)
    await slow.prepare(request)
    chunks = 8
    step = max(1, -(-len(body) // chunks))
    for i in range(0, len(body), step):
        await asyncio.sleep(SLOW_BODY_SECONDS / chunks)
        await slow.write(body[i : i + step])
    await slow.write_eof()
    return slow


async def _serve(request: web.Request, handler: Handler, state: SimState, ip: str, bucket: str) -> web.StreamResponse:
    if bucket == "other":
        return await handler(request)  # unknown paths: counted (404s), never limited or faulted
    route = state.limits.route(bucket)
    service = route.service
    delay = route.latency.sample() if route.latency is not None else 0.0
    override = state.overrides.get(ip)
    if override is not None and override.applies(service):
        body = error_body(service, override.status, await _rpc_id(request, service))
        await _sleep(delay)
        return json_response(body, override.status, {"Retry-After": str(override.retry_after)})
    if not _api_key_ok(state, request, service):
        body = error_body(service, 401, await _rpc_id(request, service))
        await _sleep(delay)
        return json_response(body, 401)
    if not route.limiters:
        return await _admitted(request, handler, state, ip, bucket, delay)
    admitted = state.limits.now()
    taken: list[tuple[Limiter, Hashable]] = []
    wait = 0.0  # in a queue's line, before the upstream serves it
    for limiter in route.limiters:  # a stack: every limit must admit; a refused request still spent the
        key = budget_key(limiter, route, ip, request)  # rate budgets before it (only slots are given back)
        decision = limiter.admit(key, admitted)
        if not decision.ok:
            for held, held_key in taken:
                held.release(held_key, admitted)
            state.stats.refusal(ip, bucket, decision.reason)
            body = error_body(service, 429, await _rpc_id(request, service))
            if not limiter.spec.at_once:  # a gateway's limit says no before the upstream's latency
                await _sleep(delay)
            said = refusal_header(limiter.spec, decision)
            return json_response(body, 429, None if said is None else {said[0]: said[1]})
        taken.append((limiter, key))
        wait = max(wait, decision.wait)
    try:
        return await _admitted(request, handler, state, ip, bucket, delay + wait)
    finally:
        now = state.limits.now()
        for limiter, key in taken:
            limiter.release(key, now)  # answered, failed, or cancelled by a client that left
        state.stats.served(bucket, now - admitted)


async def _sleep(delay: float) -> None:
    if delay > 0:
        await asyncio.sleep(delay)


async def _admitted(
    request: web.Request, handler: Handler, state: SimState, ip: str, bucket: str, delay: float
) -> web.StreamResponse:
    service = bucket.partition(":")[0]
    fault = state.faults.draw()
    if fault is not None and service == "titan" and fault.kind not in _WS_FAULTS:
        fault = None
    if fault is not None:
        state.stats.faults[fault.kind] += 1
    if fault is not None and fault.kind in ("timeout", "reset"):
        state.stats.record(ip, bucket, fault.kind, time.time(), request.path_qs)
        request[COUNTED] = True
        if fault.kind == "reset":
            reset_connection(request)
            return web.Response(status=500)  # never written: the transport is gone
    await _sleep(delay)
    if fault is not None:
        return await _faulted(request, handler, fault, service)
    return await handler(request)


@web.middleware
async def sim_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Limit, fault, delay and count every upstream request."""
    bucket = bucket_of(request.path)
    if bucket is None:
        return await handler(request)
    state = state_of(request)
    ip = request.remote or ""
    status = "500"
    try:
        resp = await _serve(request, handler, state, ip, bucket)
        status = str(resp.status)
        return resp
    except web.HTTPException as exc:
        status = str(exc.status)
        raise
    except asyncio.CancelledError:
        status = "cancelled"  # the client went away before an answer was ready
        raise
    finally:
        if not request.get(COUNTED, False):
            state.stats.record(ip, bucket, status, time.time(), request.path_qs)
