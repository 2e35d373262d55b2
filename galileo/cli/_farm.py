"""``galileo farm start | stats | scale | join``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table

from galileo.cli._common import ConfigOption, err_console, fail, load_or_exit, runtime_dir, state
from galileo.cli._config import wallet_or_exit
from galileo.farm.control import ControlError, control_request

__all__ = ["app"]

app = typer.Typer(
    rich_markup_mode=None,
    help="Run and inspect the farm: one worker per local IP, fed by this coordinator.",
    no_args_is_help=True,
)


@app.command("start")
def start(
    config: Path | None = ConfigOption,
    duration: float | None = typer.Option(
        None, "--duration", min=0.1, help="Stop after this many seconds (default: run until SIGTERM/Ctrl-C)."
    ),
    summary_every: float = typer.Option(
        60.0, "--summary-every", min=0.0, help="Seconds between strategy summary lines (0: none)."
    ),
) -> None:
    """Start the coordinator and one worker per usable IP; run until stopped.

    With blind_strategy.enable (or multi_leg.enable) the strategy runs on the farm and a
    summary line is logged every minute. Metrics are served on bot.prometheus.listen. SIGTERM
    or Ctrl-C drains in-flight jobs and stops every worker; SIGHUP re-reads the config and
    rescans the interfaces (a new address gets a worker, a vanished one's worker retires).
    Inspect it with `galileo farm stats`.
    """
    cfg, path = load_or_exit(config)
    wallet_or_exit(cfg, str(path or "config"))  # a bad keypair is a bad config: exit 2, naming its key
    import uvloop

    from galileo.farm.coordinator import FarmError
    from galileo.farm.lock import LockHeld
    from galileo.farm.rundir import RuntimeDirError
    from galileo.farm.runner import run_farm
    from galileo.metrics import MetricsError
    from galileo.tx import WalletError

    rd = runtime_dir(cfg, path)
    try:
        uvloop.run(
            run_farm(
                cfg,
                runtime_dir=rd.path,
                runtime_source=rd.source,
                config_path=path,
                duration=duration,
                log_level=state.log_level,
                log_format=state.log_format,
                summary_every=summary_every,
            )
        )
    except RuntimeDirError as exc:
        raise fail(str(exc), 2) from None
    except WalletError as exc:  # the file changed since it was checked above
        raise fail(f"wallet.keypair_path: {exc.path}: {exc.problem}", 2) from None
    except (LockHeld, FarmError, MetricsError) as exc:
        raise fail(str(exc), 1) from None


def _control(config: Path | None) -> tuple[Path, int]:
    """The control socket of the farm this config describes, and the uid it must belong to.

    Exits 1 when no farm runs there, 2 when its runtime dir could have been prepared by another user.
    """
    from galileo.farm.rundir import RuntimeDirError, check_client_dir

    cfg, path = load_or_exit(config)
    rd = runtime_dir(cfg, path)
    try:
        owner = check_client_dir(rd)
    except RuntimeDirError as exc:
        raise fail(str(exc), 2) from None
    if owner is None:
        raise fail(f"no coordinator is running (no runtime dir {rd.path}, from {rd.source})", 1)
    return rd.path / "control.sock", owner


def _stats_table(snapshot: dict[str, Any]) -> Table:
    farm = snapshot["farm"]
    held = [
        f"{h['ip']} held out since {time.strftime('%H:%M:%S', time.localtime(h['since']))}: {h['reason']} "
        f"(`galileo farm scale --add {h['ip']}` brings it back)"
        for h in farm.get("held_out", [])
    ]
    table = Table(
        title=(
            f"galileo farm: {farm['ready']}/{farm['workers']} ready, {farm['queued']} queued, "
            f"up {farm['uptime_s']:.0f}s"
        ),
        title_justify="left",
        caption="\n".join(held) or None,
        caption_justify="left",
    )
    left = ("ip", "host", "state", "cooldowns", "pacing")
    for col in (
        "ip",
        "host",
        "pid",
        "state",
        "inflight",
        "jobs/s",
        "ok",
        "429",
        "timeout",
        "errors",
        "p50 ms",
        "p99 ms",
        "cooldowns",
        "pacing",
        "uptime",
        "restarts",
    ):
        table.add_column(col, justify="left" if col in left else "right", no_wrap=col not in ("cooldowns", "pacing"))
    for w in snapshot["workers"]:
        cools = ", ".join(f"{c['upstream']} {c['reason']} {c['left_s']:.1f}s" for c in w["cooldowns"])
        table.add_row(
            w["ip"],
            w["host"],
            str(w["pid"] or "-"),
            w["state"],
            f"{w['inflight']}/{w['capacity']}",
            f"{w['jobs_per_s']:.1f}",
            str(w["ok"]),
            str(w["rate_limited"]),
            str(w["timeouts"]),
            str(w["errors"]),
            f"{w['p50_ms']:.1f}",
            f"{w['p99_ms']:.1f}",
            cools or "-",
            _pacing_text(w.get("pacing", [])),
            f"{w['uptime_s']:.0f}s",
            str(w["restarts"]),
        )
    return table


def _pacing_text(pairs: list[dict[str, Any]]) -> str:
    """One IP's pacing, upstream by upstream: ``jupiter 19.6/s``, ``dflow 4.9/s told``, ``titan cap 3
    of 26`` (a cap trimmed where the upstream queues), ``ultra learning``, ``rpc shared``, ``quotes
    19.4/s (1.2 % shed)`` (429s whatever the pace, found for noise); an upstream that has met no limit is
    left out."""
    parts = []
    for p in pairs:
        if p["shared"]:
            text = "shared"
        elif p["phase"] == "learn":
            text = "learning"
        elif p["rate_per_s"] is not None:
            text = f"{p['rate_per_s']:.1f}/s" + (" told" if p["told"] else "")
        elif p["cap"] is None:
            continue  # open: no limit met
        else:
            text = ""
        if p["cap"] is not None:
            found = p["cap_found"]
            text += (" " if text else "") + f"cap {p['cap']}" + (f" of {found}" if found != p["cap"] else "")
        if p.get("noise_share"):
            text += f" ({100 * p['noise_share']:.1f} % shed)"  # 429s whatever the pace, not followed down
        parts.append(f"{p['upstream']} {text}")
    return ", ".join(parts) or "-"


def _pnl_table(snapshot: dict[str, Any]) -> Table | None:
    """Round trips on chain per strategy and base mint: what their quotes promised, what the chain says."""
    rows = snapshot.get("round_trips") or []
    if not rows:
        return None
    table = Table(title="round trips on chain (SOL)", title_justify="left")
    for col in ("strategy", "mint", "on chain", "expected", "realised"):
        table.add_column(col, justify="left" if col in ("strategy", "mint") else "right")
    for r in rows:
        table.add_row(
            r["strategy"],
            r["mint"],
            str(r["on_chain"]),
            f"{r['expected_sol']:+.9f}",
            f"{r['realised_sol']:+.9f}",
        )
    return table


def _stats_view(snapshot: dict[str, Any]) -> RenderableType:
    pnl = _pnl_table(snapshot)
    workers = _stats_table(snapshot)
    return workers if pnl is None else Group(workers, pnl)


def _console() -> Console:
    """A terminal gets its own width; a pipe or file gets room for every column."""
    import sys

    return Console() if sys.stdout.isatty() else Console(width=220)


@app.command("stats")
def stats(
    config: Path | None = ConfigOption,
    as_json: bool = typer.Option(False, "--json", help="Print the full snapshot as JSON."),
    watch: bool = typer.Option(False, "--watch", help="Refresh every second until Ctrl-C."),
) -> None:
    """Per-worker stats of the running farm: state, load, results, latency, cooldowns, pacing, restarts."""
    path, owner = _control(config)
    try:
        snap = control_request(path, {"cmd": "stats"}, owner=owner)
        if as_json and not watch:
            typer.echo(orjson.dumps(snap, option=orjson.OPT_INDENT_2).decode())
            return
        if not watch:
            _console().print(_stats_view(snap))
            return
        with Live(_stats_view(snap), console=_console(), refresh_per_second=2) as live:
            while True:
                time.sleep(1.0)
                snap = control_request(path, {"cmd": "stats"}, owner=owner)
                if as_json:
                    live.console.print_json(orjson.dumps(snap).decode())
                else:
                    live.update(_stats_view(snap))
    except ControlError as exc:
        raise fail(str(exc), 1) from None
    except KeyboardInterrupt:
        return


@app.command("scale")
def scale(
    add: list[str] = typer.Option([], "--add", help="Start a worker on this local address (repeatable)."),
    remove: list[str] = typer.Option([], "--remove", help="Drain and stop this address's worker (repeatable)."),
    config: Path | None = ConfigOption,
) -> None:
    """Add or remove workers of the running farm without restarting it."""
    import ipaddress

    if not add and not remove:
        raise fail("nothing to do: give --add IP and/or --remove IP", 2)
    for ip in (*add, *remove):
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise fail(f"{ip!r} is not an IP address", 2) from None
    path, owner = _control(config)
    try:
        reply = control_request(path, {"cmd": "scale", "add": add, "remove": remove}, owner=owner)
    except ControlError as exc:
        raise fail(str(exc), 1) from None
    failed = 0
    for r in reply.get("results") or [{"ok": True, "message": m} for m in reply["messages"]]:
        if r["ok"]:
            typer.echo(r["message"])
        else:
            failed += 1
            err_console.print(f"[red]error:[/red] {r['message']}", markup=True, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command("join")
def join(
    connect: str = typer.Option(..., "--connect", help="The coordinator's tcp://HOST:PORT (its farm.listen)."),
    key: Path = typer.Option(..., "--key", help="This host's secret key file (from `galileo keys gen`)."),
    server_key: Path = typer.Option(..., "--server-key", help="The coordinator's public key file."),
    config: Path | None = ConfigOption,
    duration: float | None = typer.Option(None, "--duration", min=0.1, help="Stop after this many seconds."),
) -> None:
    """Run one worker per usable IP of this host for a coordinator on another host.

    Uses this host's bot.network settings to find its addresses. The connection is CURVE
    encrypted and authenticated: the coordinator must list this host's public key in its
    farm.authorized_keys_dir. Workers reconnect with backoff when the coordinator restarts.
    """
    import zmq.auth

    from broker.link import CurveSettings
    from galileo.farm.join import run_join
    from galileo.farm.secrets import worker_secrets
    from galileo.inventory import scan

    if not connect.startswith("tcp://"):
        raise fail(f"--connect {connect!r}: expected tcp://HOST:PORT", 2)
    for p in (key, server_key):
        if not p.is_file():
            raise fail(f"{p}: no such key file (create keys with `galileo keys gen`)", 2)
    try:
        server_public, _ = zmq.auth.load_certificate(str(server_key))
    except (OSError, ValueError) as exc:
        raise fail(f"--server-key {server_key}: {exc}", 2) from None
    cfg, _ = load_or_exit(config)
    inventory = scan(cfg.bot.network)

    import uvloop

    code = uvloop.run(
        run_join(
            inventory,
            connect,
            CurveSettings(secret_key_path=str(key), server_public_key=server_public),
            log_level=state.log_level,
            log_format=state.log_format,
            duration=duration,
            secrets=worker_secrets(cfg),
        )
    )
    raise typer.Exit(code)
