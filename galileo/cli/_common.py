"""Helpers shared by the CLI commands: the config option, loading with exit 2, printing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

from galileo.config import DEFAULT_CONFIG_PATH, ConfigError, GalileoConfig, load_config
from galileo.farm.rundir import RuntimeDir, locate
from galileo.logs import LogFormat

__all__ = ["ConfigOption", "err_console", "fail", "load_or_exit", "resolve_config_path", "runtime_dir", "state"]

err_console = Console(stderr=True, highlight=False)


@dataclass
class _State:
    log_level: str = "info"
    log_format: LogFormat = "kv"


state = _State()

ConfigOption = typer.Option(
    None,
    "--config",
    "-c",
    envvar="GALILEO_CONFIG",
    help=f"Config file. Default: ./{DEFAULT_CONFIG_PATH} if it exists, else built-in defaults.",
    show_default=False,
)


def resolve_config_path(path: Path | None) -> Path | None:
    if path is not None:
        return path
    default = Path(DEFAULT_CONFIG_PATH)
    return default if default.is_file() else None


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` on stderr and return the Exit to raise."""
    err_console.print(f"[red]error:[/red] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def print_config_error(exc: ConfigError) -> None:
    err_console.print(f"{exc.source}: {len(exc.issues)} problem(s)", markup=False, soft_wrap=True)
    for issue in exc.issues:
        err_console.print(f"  {issue.located()}", markup=False, soft_wrap=True)


def load_or_exit(path: Path | None) -> tuple[GalileoConfig, Path | None]:
    """Load the config or exit 2 with every problem listed."""
    resolved = resolve_config_path(path)
    try:
        return load_config(resolved), resolved
    except ConfigError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None


def runtime_dir(cfg: GalileoConfig, config_path: Path | None) -> RuntimeDir:
    """Where the farm's lock and sockets live (see :mod:`galileo.farm.rundir` for the rules)."""
    return locate(cfg.farm.runtime_dir, config_path)
