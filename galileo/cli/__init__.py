"""The ``galileo`` command. It parses, calls and prints; the work lives elsewhere.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config.
"""

from __future__ import annotations

import sys

import typer

from galileo import __version__
from galileo.cli import _bench, _config, _demo, _farm, _ips, _keys, _probe, _sim
from galileo.cli._common import state
from galileo.logs import setup_logging

__all__ = ["app", "main"]

app = typer.Typer(
    rich_markup_mode=None,
    name="galileo",
    help=(
        "galileo: a multi-IP execution farm for Solana trading bots.\n\n"
        "One uvloop worker per local IP address, each sending from its own address; a coordinator "
        "feeds them quote, swap-instruction and lander jobs over ZeroMQ and cools down an IP only "
        "for the upstream that rate-limited it."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(_config.app, name="config")
app.add_typer(_farm.app, name="farm")
app.add_typer(_keys.app, name="keys")
app.command("ips")(_ips.ips)
app.command("probe")(_probe.probe_cmd)
app.command("sim")(_sim.sim)
app.command("demo")(_demo.demo)
app.command("bench")(_bench.bench)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"galileo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    log_level: str = typer.Option(
        "info", "--log-level", envvar="GALILEO_LOG_LEVEL", help="debug, info, warning or error."
    ),
    log_format: str = typer.Option(
        "kv", "--log-format", envvar="GALILEO_LOG_FORMAT", help="kv (key=value lines) or json."
    ),
) -> None:
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("must be debug, info, warning or error", param_hint="--log-level")
    if log_format not in ("kv", "json"):
        raise typer.BadParameter("must be kv or json", param_hint="--log-format")
    state.log_level = log_level.lower()
    state.log_format = "json" if log_format == "json" else "kv"
    setup_logging(state.log_level, state.log_format)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
