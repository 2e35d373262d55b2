"""The simulator's settings: one msgspec Struct, validated once, changed at run time by /sim/control."""

from __future__ import annotations

import math
import re

import msgspec

from galileo.sim.latency import parse_latency
from galileo.sim.limitspec import SHAPES, parse_limiters
from galileo.sim.prices import MAX_HOLD_SLOTS

__all__ = [
    "ALL",
    "FAULT_KINDS",
    "NO_LIMIT",
    "SERVICES",
    "SimConfig",
    "parse_fault_spec",
    "split_target",
    "target_problem",
    "validate_config",
]

FAULT_KINDS: tuple[str, ...] = ("latency_spike", "timeout", "reset", "5xx", "malformed", "slow_body")
"""Every fault kind, in the order a draw walks them (part of the determinism contract)."""

SERVICES: tuple[str, ...] = ("jupiter", "ultra", "dflow", "jito", "rpc", "staked", "titan", "tip_floor")
"""Service names as used by ``api_keys`` and ip override ``services`` (``jito`` covers every region)."""

ALL = "all"
"""The target that stands for every service without a setting of its own."""
NO_LIMIT = "none"
"""The limiter text that exempts a target from ``all`` and ``rate_limit``."""
_REGION = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NAME = re.compile(r"[A-Za-z_]+(:[A-Za-z0-9_.-]+)?")


class SimConfig(msgspec.Struct, kw_only=True):
    """Everything the simulator can be told at start; /sim/control changes all but host, port,
    seed, slot_ms, blockhash_ttl_blocks and pool_hold_slots at run time.

    ``limiters``: target -> limiter text (see ``galileo.sim.limitspec``; ``none`` = unlimited). A
    target is a service of SERVICES, ``jito:REGION`` or ``all``; a request takes the first of
    ``jito:REGION``, its service and ``all`` that is set. ``rate_limit`` (requests/s, None =
    unlimited) with ``burst_seconds`` is the shorthand for ``all=bucket:RATE/1s,burst=SECONDS``,
    used where no target is set. ``latency``: target -> latency text (see
    ``galileo.sim.latency``), resolved the same way; ``latency_ms`` is the shorthand for every
    service's base. ``faults``: kind (see FAULT_KINDS) -> probability per HTTP request.
    ``slot_ms``: one slot and one block per this many ms. Accepted transactions land
    ``land_delay_slots`` later. ``titan_tokens``: accepted bearer tokens (empty = any
    non-empty). ``api_keys``: service (see SERVICES) -> required key; absent = keyless.
    ``stats_seconds``: how many seconds the per-second series of /sim/stats keep.

    The chain: with ``execution`` on, every landed send runs in the VM (see galileo.sim.vm);
    off, accepted sends land as they are (the baseline the bench compares with).
    ``fund_lamports``: a wallet first seen asking for a route or paying for a send, with no
    lamports, is credited this much (0 = only requestAirdrop funds, as on mainnet).
    ``auction_contention`` (0..1): how often an accepted bundle is outbid (see galileo.sim.auction).
    ``pool_hold_slots``: a pool's price (and a service's choice of pool) stands still this many
    slots, each pool from its own seeded phase (see galileo.sim.prices); 1 = a new price every slot.

    Titan's limits, as the real service states them (reference §4.2, §4.5):
    ``titan_concurrent_streams``: streams one connection may hold (GetInfo says it; one more is
    refused with an Error); ``titan_connections_per_jti``: connections one token (its JWT
    ``jti``, or the whole token when it is not a JWT) may hold at once, 0 = any number (one more
    is refused with 409); ``titan_token_expiry``: a JWT past its ``exp`` is refused (401) and an
    open connection is closed (1008) when its token expires.
    """

    host: str = "127.0.0.1"
    port: int = 7900
    rate_limit: float | None = None
    burst_seconds: float = 1.0
    latency_ms: float = 0.0
    faults: dict[str, float] = {}
    seed: int = 0
    slot_ms: int = 400
    blockhash_ttl_blocks: int = 150
    land_delay_slots: int = 2
    titan_tokens: list[str] = []
    api_keys: dict[str, str] = {}
    limiters: dict[str, str] = {}
    latency: dict[str, str] = {}
    stats_seconds: int = 120
    execution: bool = True
    fund_lamports: int = 10 * 10**9
    auction_contention: float = 0.5
    pool_hold_slots: int = 6  # a gap between pools outlives the 2 slots a bundle waits, most of the time
    titan_concurrent_streams: int = 4
    titan_connections_per_jti: int = 1
    titan_token_expiry: bool = True


def target_problem(target: str) -> str | None:
    """Why ``target`` names no service (None when it does): ``all``, a service, ``jito:REGION``."""
    service, colon, region = target.partition(":")
    if target == ALL or (not colon and service in SERVICES):
        return None
    if colon and service == "jito" and _REGION.fullmatch(region):
        return None
    return f"unknown target (known: {ALL}, {', '.join(SERVICES)}, jito:REGION)"


def split_target(item: str) -> tuple[str, str]:
    """``TARGET=SPEC`` -> (target, spec); a bare ``SPEC`` -> (``all``, spec).

    ValueError when the text before ``=`` looks like a name but is no target (``jupyter=...``).
    """
    head, eq, rest = item.partition("=")
    head = head.strip()
    if not eq or not _NAME.fullmatch(head) or head.partition(":")[0] in SHAPES:
        return ALL, item.strip()
    problem = target_problem(head)
    if problem is not None:
        raise ValueError(f"{item!r}: {head!r} is an {problem}")
    return head, rest.strip()


def validate_config(config: SimConfig) -> list[str]:
    """Every problem with ``config`` as ``key: what is wrong``; empty when it is usable."""
    problems: list[str] = []
    if not 0 <= config.port <= 65535:
        problems.append(f"port: {config.port} is not in 0..65535")
    if config.rate_limit is not None and not (math.isfinite(config.rate_limit) and config.rate_limit > 0):
        problems.append(f"rate_limit: {config.rate_limit} must be a positive number of requests/s or null")
    if not (math.isfinite(config.burst_seconds) and config.burst_seconds > 0):
        problems.append(f"burst_seconds: {config.burst_seconds} must be > 0")
    if not (math.isfinite(config.latency_ms) and config.latency_ms >= 0):
        problems.append(f"latency_ms: {config.latency_ms} must be >= 0")
    for kind, p in config.faults.items():
        if kind not in FAULT_KINDS:
            problems.append(f"faults.{kind}: unknown fault kind (known: {', '.join(FAULT_KINDS)})")
        elif not (math.isfinite(p) and 0.0 <= p <= 1.0):
            problems.append(f"faults.{kind}: probability {p} is not in 0..1")
    if sum(config.faults.values()) > 1.0 + 1e-9:
        problems.append("faults: probabilities add up to more than 1")
    if config.slot_ms < 1:
        problems.append(f"slot_ms: {config.slot_ms} must be >= 1")
    if config.blockhash_ttl_blocks < 1:
        problems.append(f"blockhash_ttl_blocks: {config.blockhash_ttl_blocks} must be >= 1")
    if config.land_delay_slots < 0:
        problems.append(f"land_delay_slots: {config.land_delay_slots} must be >= 0")
    if config.fund_lamports < 0:
        problems.append(f"fund_lamports: {config.fund_lamports} must be >= 0")
    if not (math.isfinite(config.auction_contention) and 0.0 <= config.auction_contention <= 1.0):
        problems.append(f"auction_contention: {config.auction_contention} must be in 0..1")
    if not 1 <= config.pool_hold_slots <= MAX_HOLD_SLOTS:
        problems.append(f"pool_hold_slots: {config.pool_hold_slots} is not in 1..{MAX_HOLD_SLOTS}")
    for service in config.api_keys:
        if service not in SERVICES:
            problems.append(f"api_keys.{service}: unknown service (known: {', '.join(SERVICES)})")
    for target, text in config.limiters.items():
        problem = target_problem(target)
        if problem is None and text.strip() != NO_LIMIT:
            try:
                parse_limiters(text, target)
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            problems.append(f"limiters.{target}: {problem}")
    for target, text in config.latency.items():
        problem = target_problem(target)
        if problem is None:
            try:
                parse_latency(text)
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            problems.append(f"latency.{target}: {problem}")
    if not 1 <= config.titan_concurrent_streams <= 1000:
        problems.append(f"titan_concurrent_streams: {config.titan_concurrent_streams} is not in 1..1000")
    if config.titan_connections_per_jti < 0:
        problems.append(f"titan_connections_per_jti: {config.titan_connections_per_jti} must be >= 0 (0: no limit)")
    if not 1 <= config.stats_seconds <= 3600:
        problems.append(f"stats_seconds: {config.stats_seconds} is not in 1..3600")
    return problems


def parse_fault_spec(specs: list[str]) -> dict[str, float]:
    """Turn ``KIND=P`` items (or one bare ``P`` spread evenly over every kind) into a faults dict.

    Raises ValueError with a message a person can act on.
    """
    faults: dict[str, float] = {}
    for spec in specs:
        kind, sep, value = spec.partition("=")
        try:
            p = float(value if sep else kind)
        except ValueError:
            raise ValueError(f"{spec!r}: expected KIND=P or P, with P a number in 0..1") from None
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"{spec!r}: probability {p} is not in 0..1")
        if not sep:
            for k in FAULT_KINDS:
                faults[k] = faults.get(k, 0.0) + p / len(FAULT_KINDS)
            continue
        kind = kind.strip()
        if kind not in FAULT_KINDS:
            raise ValueError(f"{spec!r}: unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
        faults[kind] = p
    if sum(faults.values()) > 1.0 + 1e-9:
        raise ValueError("fault probabilities add up to more than 1")
    return faults
