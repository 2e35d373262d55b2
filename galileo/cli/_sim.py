"""``galileo sim``: serve every simulated upstream on one local port until Ctrl-C."""

from __future__ import annotations

import math

import typer

from galileo.cli._common import fail
from galileo.sim import FAULT_KINDS, SimConfig, parse_fault_spec, run_sim
from galileo.sim.config import validate_config

__all__ = ["sim"]


def sim(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(7900, "--port", help="TCP port to listen on; 0 picks a free one (printed at start)."),
    rate_limit: float | None = typer.Option(
        None,
        "--rate-limit",
        metavar="RPS",
        help="Requests per second allowed per source IP and per service (Jito: per region); "
        "burst = --burst-seconds worth. Over it: HTTP 429 with the service's own body. Default: unlimited.",
        show_default=False,
    ),
    burst_seconds: float = typer.Option(
        1.0, "--burst-seconds", metavar="S", help="Token bucket size, in seconds of --rate-limit (at least 1 token)."
    ),
    latency_ms: float = typer.Option(0.0, "--latency-ms", metavar="MS", help="Added service time per HTTP request."),
    fault_rate: list[str] | None = typer.Option(
        None,
        "--fault-rate",
        metavar="KIND=P",
        help=f"Inject a fault with probability P per request; KIND is one of {', '.join(FAULT_KINDS)}. "
        "Repeatable. A bare P is spread evenly over all kinds.",
        show_default=False,
    ),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Seed for prices, blockhashes and faults."),
) -> None:
    """Run the upstream simulator: Jupiter (swap v1 + Ultra), DFlow, Jito, Solana RPC and Titan on one port.

    URLs: /jupiter/swap/v1/*, /jupiter/ultra/v1/*, /dflow/*, /jito/{region}/api/v1/*, /rpc, /staked,
    /titan/api/v1/ws; inspect with GET /sim/stats and steer with POST /sim/control. Clients are
    told apart by source address, so bind them to 127.0.0.2, 127.0.0.3, ... to model many IPs.
    """
    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"{port} is not a TCP port (0..65535)", param_hint="--port")
    if rate_limit is not None and not (math.isfinite(rate_limit) and rate_limit > 0):
        raise typer.BadParameter(f"{rate_limit} must be a positive number of requests/s", param_hint="--rate-limit")
    if not (math.isfinite(burst_seconds) and burst_seconds > 0):
        raise typer.BadParameter(f"{burst_seconds} must be a positive number of seconds", param_hint="--burst-seconds")
    if not (math.isfinite(latency_ms) and latency_ms >= 0):
        raise typer.BadParameter(f"{latency_ms} must be >= 0", param_hint="--latency-ms")
    try:
        faults = parse_fault_spec(fault_rate or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--fault-rate") from None
    config = SimConfig(
        host=host,
        port=port,
        rate_limit=rate_limit,
        burst_seconds=burst_seconds,
        latency_ms=latency_ms,
        faults=faults,
        seed=seed,
    )
    problems = validate_config(config)
    if problems:
        raise typer.BadParameter("; ".join(problems))
    try:
        run_sim(config)
    except OSError as exc:
        raise fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}; pick another --port or --host") from None
