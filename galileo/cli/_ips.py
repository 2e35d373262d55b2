"""``galileo ips``: which addresses the farm will use, and why not the others."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.table import Table

from galileo.cli._common import ConfigOption, load_or_exit
from galileo.inventory import scan

__all__ = ["ips", "table_console"]

# Wide enough for any row: a table is only as wide as its cells, never padded out to this.
UNLIMITED_WIDTH = 100_000


def table_console() -> Console:
    """A console for tables on stdout: the terminal's width, or full rows when piped (as ls and git do)."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=UNLIMITED_WIDTH)


def ips(
    config: Path | None = ConfigOption,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of objects instead of a table."),
) -> None:
    """List every local address seen: ip, interface, family, source, usable, and why not when not.

    Auto mode drops loopback, link-local, unspecified, multicast, broadcast and documentation
    addresses, addresses on interfaces that are down, and duplicates; every remaining address
    is bind-probed. A non-empty bot.network.manual_ips is used instead of detection.
    """
    cfg, _ = load_or_exit(config)
    inventory = scan(cfg.bot.network)
    if as_json:
        typer.echo(orjson.dumps([r.to_json() for r in inventory.records], option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(title="galileo ips", title_justify="left")
    for col in ("ip", "interface", "family", "source", "usable", "reason"):
        table.add_column(col)
    for r in inventory.records:
        usable = "[green]yes[/green]" if r.usable else "[red]no[/red]"
        table.add_row(r.ip, r.interface or "-", r.family, r.source, usable, r.reason or "")
    table_console().print(table)
    n = len(inventory.usable)
    note = " (fallback: default route)" if inventory.fallback else ""
    typer.echo(f"{n} worker(s) would start{note}.")
