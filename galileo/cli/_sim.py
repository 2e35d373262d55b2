"""``galileo sim``: serve every simulated upstream on one local port until Ctrl-C."""

from __future__ import annotations

import math

import typer

from galileo.cli._common import fail
from galileo.sim.config import ALL, FAULT_KINDS, NO_LIMIT, SimConfig, parse_fault_spec, split_target, validate_config
from galileo.sim.latency import parse_latency
from galileo.sim.limitspec import parse_limiters

__all__ = ["sim"]

_TARGETS = "jupiter, ultra, dflow, titan, jito, jito:REGION, rpc, staked, tip_floor or all"


def _limiters(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        target, text = split_target(item)
        if text != NO_LIMIT:
            parse_limiters(text, target)
        out[target] = text
    return out


def _latency(items: list[str]) -> tuple[float, dict[str, str]]:
    """(latency_ms, latency): a bare number is the ``latency_ms`` shorthand, the rest per target."""
    base, out = 0.0, {}
    for item in items:
        target, text = split_target(item)
        spec = parse_latency(text)
        if target == ALL and "," not in text:
            base = spec.base_ms
        else:
            out[target] = text
    return base, out


def sim(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(7900, "--port", help="TCP port to listen on; 0 picks a free one (printed at start)."),
    rate_limit: float | None = typer.Option(
        None,
        "--rate-limit",
        metavar="RPS",
        help="Shorthand for --limiter all=bucket:RPS/1s,burst=S: per source IP and per service (Jito: per "
        "region), for every service without a --limiter of its own. Default: unlimited.",
        show_default=False,
    ),
    burst_seconds: float = typer.Option(
        1.0, "--burst-seconds", metavar="S", help="Token bucket size, in seconds of --rate-limit (at least 1 token)."
    ),
    limiter: list[str] | None = typer.Option(
        None,
        "--limiter",
        metavar="TARGET=SPEC",
        help=f"A limiter for TARGET ({_TARGETS}); repeatable. SPEC: bucket:RATE/PERIOD[,burst=S], "
        "fixed:N/W, sliding:N/W, rolling:N/W, penalty:N/W,box=P, concurrency:K, queue:RATE/PERIOD[,burst=S] "
        "(each request waits its turn at RATE, up to S seconds, then 429), shed:P (refuses a share P at random, "
        "whatever the rate) or none; options "
        "scope=ip|ip+region|key|global, retry_after=yes|no|reset|one (reset: RateLimit-Reset instead of "
        "Retry-After; one: Retry-After: 1 whatever the limit, as many gateways say) and "
        "refuse=delayed|at_once (at_once: a gateway's limit, whose 429s skip the latency); "
        "stack limits with & "
        "(every one must admit). E.g. jupiter=sliding:50/10s,scope=key; "
        "jito=bucket:5/1s,burst=0.05; dflow='bucket:20/1s & fixed:600/60s'.",
        show_default=False,
    ),
    latency_ms: list[str] | None = typer.Option(
        None,
        "--latency-ms",
        metavar="[TARGET=]MS[,jitter=MS][,spike=P:MS]",
        help="Added time per answer: a base, lognormal jitter (its mean and std) and spikes with probability P. "
        "Repeatable; without TARGET, every service. E.g. 150, or jupiter=150,jitter=50,spike=0.01:2000.",
        show_default=False,
    ),
    fault_rate: list[str] | None = typer.Option(
        None,
        "--fault-rate",
        metavar="KIND=P",
        help=f"Inject a fault with probability P per request; KIND is one of {', '.join(FAULT_KINDS)}. "
        "Repeatable. A bare P is spread evenly over all kinds.",
        show_default=False,
    ),
    stats_seconds: int = typer.Option(
        120, "--stats-seconds", metavar="N", help="Seconds of per-second series /sim/stats keeps."
    ),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Seed for prices, blockhashes, faults and latency."),
    pool_hold_slots: int = typer.Option(
        SimConfig().pool_hold_slots,
        "--pool-hold-slots",
        metavar="N",
        help="A pool's price (and each service's choice of pool) stands still N slots, each pool from its own "
        "phase, so a gap between pools can outlive the slots a bundle waits to land. 1: a new price every slot.",
    ),
) -> None:
    """Run the upstream simulator: Jupiter (swap v1 + Ultra), DFlow, Jito, Solana RPC and Titan on one port.

    URLs: /jupiter/swap/v1/*, /jupiter/ultra/v1/*, /dflow/*, /jito/{region}/api/v1/*, /rpc, /staked,
    /titan/api/v1/ws; inspect with GET /sim/stats and steer with POST /sim/control. Clients are
    told apart by source address, so bind them to 127.0.0.2, 127.0.0.3, ... to model many IPs.
    Limiters, latency and everything else: docs/simulator.md.
    """
    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"{port} is not a TCP port (0..65535)", param_hint="--port")
    if rate_limit is not None and not (math.isfinite(rate_limit) and rate_limit > 0):
        raise typer.BadParameter(f"{rate_limit} must be a positive number of requests/s", param_hint="--rate-limit")
    if not (math.isfinite(burst_seconds) and burst_seconds > 0):
        raise typer.BadParameter(f"{burst_seconds} must be a positive number of seconds", param_hint="--burst-seconds")
    try:
        limiters = _limiters(limiter or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--limiter") from None
    try:
        base_ms, latency = _latency(latency_ms or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--latency-ms") from None
    try:
        faults = parse_fault_spec(fault_rate or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--fault-rate") from None
    config = SimConfig(
        host=host,
        port=port,
        rate_limit=rate_limit,
        burst_seconds=burst_seconds,
        latency_ms=base_ms,
        faults=faults,
        seed=seed,
        limiters=limiters,
        latency=latency,
        stats_seconds=stats_seconds,
        pool_hold_slots=pool_hold_slots,
    )
    problems = validate_config(config)
    if problems:
        raise typer.BadParameter("; ".join(problems))
    from galileo.sim.app import run_sim  # aiohttp and the server: only when serving

    try:
        run_sim(config)
    except OSError as exc:
        raise fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}; pick another --port or --host") from None
