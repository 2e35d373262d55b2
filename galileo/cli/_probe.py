"""``galileo probe URL``."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.table import Table

from galileo.cli._common import ConfigOption, fail, load_or_exit

__all__ = ["probe_cmd"]


def probe_cmd(
    url: str = typer.Argument(..., help="The URL to GET from every IP, e.g. https://api.jup.ag/swap/v1/quote?..."),
    count: int = typer.Option(3, "--count", "-n", min=1, max=1000, help="Requests per IP."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, help="Seconds allowed per request."),
    config: Path | None = ConfigOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Send COUNT GETs of URL from every IP the farm would use; print each IP's status and latency.

    Starts a temporary farm from the config's bot.network section (it does not disturb a
    running farm), so it answers "which of my addresses are rate-limited or banned?".
    """
    from galileo.farm.coordinator import FarmError
    from galileo.farm.lock import LockHeld
    from galileo.farm.probe import probe

    if not url.startswith(("http://", "https://")):
        raise fail(f"{url!r} is not an http(s) URL", 2)
    cfg, _ = load_or_exit(config)
    import uvloop

    try:
        rows = uvloop.run(probe(cfg, url, count, timeout))
    except (LockHeld, FarmError) as exc:
        raise fail(str(exc), 1) from None
    if as_json:
        typer.echo(orjson.dumps([r.to_json() for r in rows], option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(title=f"galileo probe {url}", title_justify="left")
    for col in ("ip", "ok", "statuses", "p50 ms", "max ms", "verdict", "errors"):
        table.add_column(col)
    for r in rows:
        j = r.to_json()
        statuses = " ".join(f"{k}×{v}" for k, v in sorted(r.statuses.items())) or "-"
        table.add_row(
            r.ip,
            f"{r.ok}/{r.sent}",
            statuses,
            str(j["p50_ms"] or "-"),
            str(j["max_ms"] or "-"),
            r.verdict(),
            "; ".join(f"{k} ×{v}" for k, v in r.errors.items()) or "-",
        )
    Console().print(table)
