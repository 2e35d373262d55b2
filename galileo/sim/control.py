"""``/sim/health``, ``/sim/stats`` and ``/sim/control``: inspect and steer a running simulator."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiohttp import web

from galileo.sim.chainstats import chain_stats
from galileo.sim.common import BadRequest, read_json_object
from galileo.sim.config import SimConfig, validate_config
from galileo.sim.errors import json_response
from galileo.sim.faults import FaultPlan
from galileo.sim.limiter import IpOverride
from galileo.sim.state import SimState, state_of

__all__ = ["add_routes", "apply_control", "effective_config"]

_CONFIG_KEYS = frozenset(
    {
        "rate_limit",
        "burst_seconds",
        "latency_ms",
        "faults",
        "land_delay_slots",
        "titan_tokens",
        "api_keys",
        "limiters",
        "latency",
        "stats_seconds",
        "execution",
        "fund_lamports",
        "auction_contention",
        "titan_concurrent_streams",
        "titan_connections_per_jti",
        "titan_token_expiry",
    }
)
_MERGED_KEYS = ("limiters", "latency")  # target -> text, merged into what is set; null removes a target
_OTHER_KEYS = frozenset({"ip_overrides", "reset_stats", "reset_limiters", "advance_slots"})
_FIXED_KEYS = ("host", "port", "seed", "slot_ms", "blockhash_ttl_blocks", "pool_hold_slots")  # the chain and market


def effective_config(state: SimState) -> dict[str, Any]:
    """The config in force, the ip overrides and the chain position."""
    out: dict[str, Any] = msgspec.to_builtins(state.config)
    out["ip_overrides"] = {
        ip: {
            "status": o.status,
            "retry_after": o.retry_after,
            "services": sorted(o.services) if o.services else None,
        }
        for ip, o in state.overrides.items()
    }
    slot = state.slot()
    out["slot"] = slot
    out["block_height"] = state.ledger.block_height(slot)
    return out


def _override(ip: str, spec: Any) -> IpOverride | None:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise BadRequest(f"ip_overrides.{ip}: expected an object or null")
    status, retry_after, services = spec.get("status", 429), spec.get("retry_after", 1), spec.get("services")
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise BadRequest(f"ip_overrides.{ip}.status: expected an HTTP status code, got {status!r}")
    if not isinstance(retry_after, int) or retry_after < 0:
        raise BadRequest(f"ip_overrides.{ip}.retry_after: expected whole seconds >= 0, got {retry_after!r}")
    if services is not None and not (isinstance(services, list) and all(isinstance(s, str) for s in services)):
        raise BadRequest(f"ip_overrides.{ip}.services: expected a list of service names or null")
    return IpOverride(status, retry_after, frozenset(services) if services is not None else None)


def apply_control(state: SimState, body: dict[str, Any]) -> None:
    """Validate the whole request first, then apply it; BadRequest lists what is wrong."""
    fixed = [key for key in _FIXED_KEYS if key in body]
    if fixed:
        raise BadRequest("; ".join(f"{key}: fixed at start (restart the simulator to change it)" for key in fixed))
    unknown = set(body) - _CONFIG_KEYS - _OTHER_KEYS
    if unknown:
        raise BadRequest(f"unknown keys: {', '.join(sorted(unknown))}")
    changes = {k: v for k, v in body.items() if k in _CONFIG_KEYS}
    current = msgspec.to_builtins(state.config)
    for name in _MERGED_KEYS:
        if name in changes:
            if not isinstance(changes[name], dict):
                raise BadRequest(f"{name}: expected an object of target -> text (null removes a target)")
            table = {**current[name], **changes[name]}
            changes[name] = {k: v for k, v in table.items() if v is not None}
    try:
        merged = msgspec.convert({**current, **changes}, SimConfig)
    except msgspec.ValidationError as exc:
        raise BadRequest(str(exc)) from None
    problems = validate_config(merged)
    if problems:
        raise BadRequest("; ".join(problems))
    overrides = body.get("ip_overrides") or {}
    if not isinstance(overrides, dict):
        raise BadRequest("ip_overrides: expected an object of ip -> override or null")
    parsed = {ip: _override(ip, spec) for ip, spec in overrides.items()}
    advance = body.get("advance_slots", 0)
    if not isinstance(advance, int) or advance < 0:
        raise BadRequest("advance_slots: expected a whole number >= 0")
    for flag in ("reset_stats", "reset_limiters"):
        if not isinstance(body.get(flag, False), bool):
            raise BadRequest(f"{flag}: expected true or false")
    old, state.config = state.config, merged
    state.limits.configure(merged)
    if body.get("reset_limiters") is True:
        state.limits.reset()
    if "faults" in changes:
        state.faults = FaultPlan(merged.faults, merged.seed)
    state.ledger.land_delay_slots = merged.land_delay_slots
    for ip, override in parsed.items():
        if override is None:
            state.overrides.pop(ip, None)
        else:
            state.overrides[ip] = override
    state.ledger.advance(advance)
    if body.get("reset_stats") is True or merged.stats_seconds != old.stats_seconds:
        state.stats = state.stats.fresh(time.time(), merged.stats_seconds)


async def control(request: web.Request) -> web.Response:
    """POST /sim/control: change settings at run time; answers with the effective config."""
    state = state_of(request)
    try:
        apply_control(state, await read_json_object(request))
    except BadRequest as exc:
        return json_response({"error": str(exc)}, 400)
    return json_response(effective_config(state))


async def stats(request: web.Request) -> web.Response:
    """GET /sim/stats."""
    state = state_of(request)
    slot = state.settle()
    body = state.stats.snapshot(state.ledger.landed_counts(), time.time())
    body["limits"]["limiters"] = state.limits.describe()
    body.update({"slot": slot, "block_height": state.ledger.block_height(slot), "seed": state.config.seed})
    body["chain"] = chain_stats(state)
    return json_response(body)


async def health(request: web.Request) -> web.Response:
    """GET /sim/health."""
    state = state_of(request)
    slot = state.slot()
    return json_response({"status": "ok", "slot": slot, "block_height": state.ledger.block_height(slot)})


async def requests(request: web.Request) -> web.Response:
    """The most recent requests, oldest first: ``?service=jupiter&limit=1000`` to narrow."""
    state = state_of(request)
    service = request.query.get("service")
    try:
        limit = int(request.query.get("limit", "10000"))
    except ValueError:
        return json_response({"error": "limit must be an integer"}, 400)
    rows = [
        {"t": t, "ip": ip, "service": bucket, "path": path, "status": status}
        for t, ip, bucket, path, status in state.stats.requests
        if service is None or bucket == service
    ]
    return json_response({"requests": rows[-limit:] if limit > 0 else []}, 200)


def add_routes(app: web.Application) -> None:
    """Mount /sim/*."""
    app.router.add_get("/sim/health", health)
    app.router.add_get("/sim/stats", stats)
    app.router.add_get("/sim/requests", requests)
    app.router.add_post("/sim/control", control)
