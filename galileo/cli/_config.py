"""``galileo config check | init | schema``."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer

from galileo.cli._common import err_console, fail, print_config_error
from galileo.config import ConfigError, GalileoConfig, json_schema, load_config
from galileo.config.template import TEMPLATE

__all__ = ["app", "summary"]

app = typer.Typer(rich_markup_mode=None, help="Check, create and describe galileo.yaml.", no_args_is_help=True)


def summary(cfg: GalileoConfig) -> list[str]:
    """A few lines saying what the config will do."""
    net = cfg.bot.network
    if not net.enable_multiple_ip:
        ips = "multiple IPs: off (one worker on the default route)"
        if net.manual_ips:
            ips = f"multiple IPs: off (one worker on {net.manual_ips[0]}, the first of manual_ips)"
    elif net.manual_ips:
        ips = f"multiple IPs: on, manual list of {len(net.manual_ips)}: {', '.join(net.manual_ips)}"
    else:
        ips = "multiple IPs: on, auto-detected (see `galileo ips`)"
    prom = cfg.bot.prometheus
    lines = [ips, f"prometheus: {'on at ' + prom.listen if prom.enable else 'off'}"]
    if cfg.farm.listen:
        lines.append(f"remote workers: {cfg.farm.listen} (CURVE)")
    return lines


@app.command("check")
def check(file: Path = typer.Argument(..., help="The config file to check.")) -> None:
    """Validate FILE: exit 0 with a short summary, or exit 2 listing every problem with its key path."""
    try:
        cfg = load_config(file)
    except ConfigError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None
    typer.echo(f"{file}: ok")
    for line in summary(cfg):
        typer.echo(f"  {line}")


@app.command("init")
def init(
    path: Path = typer.Argument(Path("galileo.yaml"), help="Where to write the template."),
) -> None:
    """Write a commented config template to PATH (default ./galileo.yaml). Never overwrites a file."""
    if path.exists():
        raise fail(f"{path} already exists; not overwriting it (choose another PATH or remove it)", 2)
    try:
        with path.open("x", encoding="utf-8") as fh:
            fh.write(TEMPLATE)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror}", 1) from None
    err_console.print(f"wrote {path}; check it with `galileo config check {path}`", markup=False)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the config file (for editors such as yaml-language-server)."""
    typer.echo(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode())
