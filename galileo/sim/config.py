"""The simulator's settings: one msgspec Struct, validated once, changed at run time by /sim/control."""

from __future__ import annotations

import math

import msgspec

__all__ = ["FAULT_KINDS", "SERVICES", "SimConfig", "parse_fault_spec", "validate_config"]

FAULT_KINDS: tuple[str, ...] = ("latency_spike", "timeout", "reset", "5xx", "malformed", "slow_body")
"""Every fault kind, in the order a draw walks them (part of the determinism contract)."""

SERVICES: tuple[str, ...] = ("jupiter", "ultra", "dflow", "jito", "rpc", "staked", "titan", "tip_floor")
"""Service names as used by ``api_keys`` and ip override ``services`` (``jito`` covers every region)."""


class SimConfig(msgspec.Struct, kw_only=True):
    """Everything the simulator can be told at start (rate, latency and faults also at run time).

    ``rate_limit``: requests/s per (source IP, service bucket), None = unlimited; bucket capacity is
    ``max(1, rate_limit * burst_seconds)``. ``faults``: kind (see FAULT_KINDS) -> probability per
    HTTP request. ``slot_ms``: one slot and one block per this many ms. Accepted transactions land
    ``land_delay_slots`` later. ``titan_tokens``: accepted bearer tokens (empty = any non-empty).
    ``api_keys``: service (see SERVICES) -> required key; absent = keyless.

    The chain: with ``execution`` on, every landed send runs in the VM (see galileo.sim.vm);
    off, accepted sends land as they are (the baseline the bench compares with).
    ``fund_lamports``: a wallet first seen asking for a route or paying for a send, with no
    lamports, is credited this much (0 = only requestAirdrop funds, as on mainnet).
    ``auction_contention`` (0..1): how often an accepted bundle is outbid (see galileo.sim.auction).
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
    execution: bool = True
    fund_lamports: int = 10 * 10**9
    auction_contention: float = 0.5


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
    for service in config.api_keys:
        if service not in SERVICES:
            problems.append(f"api_keys.{service}: unknown service (known: {', '.join(SERVICES)})")
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
