"""``galileo demo``."""

from __future__ import annotations

import typer
from rich.console import Console

from galileo.cli._common import fail, state
from galileo.logs import setup_logging

__all__ = ["demo"]


def demo(
    ips: int = typer.Option(8, "--ips", min=1, max=200, help="How many loopback addresses (127.0.0.2 ...) to farm."),
    duration: float | None = typer.Option(None, "--duration", min=1, help="Stop after this many seconds."),
    rate_limit: float = typer.Option(20.0, "--rate-limit", min=0.1, help="The simulator's limit per IP and service."),
    seed: int = typer.Option(7, "--seed", help="The simulator's seed (prices, blockhashes)."),
) -> None:
    """Run the simulator and a farm on loopback addresses, with a live table. Nothing leaves this machine.

    `galileo sim` plays Jupiter, Solana RPC and Jito with per-IP rate limits; the farm runs the
    blind strategy against it and lands bundles there (live mode against the simulator, with a
    throwaway wallet). The table shows each IP's jobs/s, 429s and cooldowns, and the totals of
    batches, opportunities, bundles sent and landed.
    """
    import uvloop

    from galileo.demo import run_demo
    from galileo.farm.coordinator import FarmError
    from galileo.farm.lock import LockHeld

    if state.log_level == "info":  # the default: keep the live table readable
        setup_logging("warning", state.log_format)
    console = Console()
    try:
        totals = uvloop.run(run_demo(ips, duration, rate_limit, seed, console))
    except (LockHeld, FarmError, RuntimeError) as exc:
        raise fail(str(exc), 1) from None
    if totals:
        opp = sum(totals.get("opportunities", {}).values())
        console.print(
            f"demo done: {totals.get('batches_completed', 0)} batches, {opp} opportunities, "
            f"{totals.get('accepted', 0)} bundles sent, {totals.get('landed', 0)} landed"
        )
