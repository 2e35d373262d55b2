"""``galileo bench``: run benchmark scenarios against ``galileo sim`` on loopback addresses."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.table import Table

from galileo.cli._common import err_console, fail, state
from galileo.logs import setup_logging

__all__ = ["bench"]

_VERDICT_STYLE = {"PASS": "green", "MISS": "red", "N/A": "yellow"}


GROUPS = {"farm": ("overhead", "saturation", "scale")}
LONG = ("pipeline",)  # hours at full size: run only when named (always with --quick)


def bench(
    scenarios: list[str] | None = typer.Argument(
        None,
        metavar="SCENARIO",
        help="Which to run, in this order: ratelimit, overhead, saturation, scale, blind, landing, sim, titan, "
        "pipeline; farm means the three about the farm itself (overhead, saturation, scale). Default: all but "
        "pipeline (its full matrix takes hours), all with --quick.",
        show_default=False,
    ),
    json_path: Path = typer.Option(
        Path("bench-report.json"),
        "--json",
        metavar="FILE",
        help="Write the JSON report here (and a PNG plot beside it when matplotlib is installed).",
    ),
    quick: bool = typer.Option(False, "--quick", help="Fewer IPs, workers and seconds: all of it in about a minute."),
    cells: list[str] = typer.Option(
        [],
        "--cell",
        metavar="PATTERN",
        help="pipeline only: run just the matrix cells named so, shell-style, repeatable "
        "(e.g. --cell '*-150ms-n16' --cell 'keyed-*'). Cells are <limit>-<latency>ms-n<N>[-multi]; limits: "
        "bucket, fixed, sliding, penalty, concurrency, keyed; and sliding60, keyed60, stacked at 50 ms, "
        "rolling, fixed-noretry, penalty-noretry (no Retry-After) at 150 ms, N=16; concurrency-at-once (a "
        "gateway's cap, refusing without the latency) at 50 ms, N=4 and 300 ms, N=16; queue (a limit that "
        "queues before it refuses) at 300 ms, N=4 and 50 ms, N=16; onetoken-noretry (5/s, one token, no "
        "Retry-After) at 300 ms, N=4; bucket-deep (20/s, ten deep) and penalty10-noretry (a 10 s box, no "
        "Retry-After) at 150 ms, N=16.",
        show_default=False,
    ),
) -> None:
    """Measure the farm: rate-limited scaling, overhead, saturation, cost per worker, blind end to end, landing,
    the simulator's own capacity, and Titan's streams against its real limits.

    Everything runs on this machine: `galileo sim` in its own process, workers on loopback
    addresses (127.42.*, 127.43.*, 127.44.*, 127.0.8.*). A full run takes about 10 minutes;
    `galileo bench pipeline` (the engine under every limiter shape) takes hours. Each target is
    printed with its measured value and PASS or MISS; a miss never changes the exit code (1 only
    when a scenario could not run).
    """
    import uvloop

    from galileo.bench.plot import can_plot, write_plot
    from galileo.bench.report import SCENARIOS, run_bench
    from galileo.bench.tables import machine_line, tables

    default = [n for n in SCENARIOS if quick or n not in LONG]
    asked = [n for name in (scenarios or default) for n in GROUPS.get(name, (name,))]
    names = list(dict.fromkeys(asked))
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        known = ", ".join([*SCENARIOS, *GROUPS])
        raise typer.BadParameter(f"unknown scenario {', '.join(unknown)}; known: {known}")
    if cells and "pipeline" not in names:
        raise typer.BadParameter(
            "--cell selects cells of the pipeline scenario: name it (galileo bench pipeline --cell ...)"
        )
    if cells:
        from galileo.bench.pipeline import FULL, QUICK, select

        try:
            select(QUICK if quick else FULL, cells)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    if state.log_level == "info":  # the default: progress lines and tables; the report has the counts
        setup_logging("error", state.log_format)

    def progress(name: str, event: str, seconds: float) -> None:
        if event == "start":
            err_console.print(f"bench: {name}: {SCENARIOS[name][1]} ...", markup=False, soft_wrap=True)
        else:
            err_console.print(f"bench: {name}: {event} in {seconds:.1f} s", markup=False, soft_wrap=True)

    command = shlex.join(["galileo", *sys.argv[1:]])
    report = uvloop.run(
        run_bench(names, quick=quick, command=command, progress=progress, options={"pipeline": {"cells": cells}})
    )

    console = Console()
    if not console.is_terminal:  # a file or a pipe: keep the tables' rows whole
        console = Console(width=max(console.width, 160))
    console.print(f"machine: {machine_line(report)}", markup=False, soft_wrap=True)
    for data in tables(report):
        table = Table(title=data.title, title_justify="left")
        for col in data.columns:
            table.add_column(col, justify="left" if col in ("target", "metric", "scenario") else "right")
        for row in data.rows:
            styled = [f"[{_VERDICT_STYLE[c]}]{c}[/]" if c in _VERDICT_STYLE else c for c in row]
            table.add_row(*styled)
        console.print(table)
        if data.note:
            console.print(data.note, markup=False, soft_wrap=False)
    s = report["summary"]
    console.print(f"targets: {s['pass']} pass, {s['miss']} miss, {s['na']} n/a", markup=False)

    try:
        json_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    except OSError as exc:
        raise fail(f"cannot write the report to {json_path}: {exc.strerror or exc}") from None
    console.print(f"report: {json_path}", markup=False, soft_wrap=True)
    if can_plot():
        png = json_path.with_suffix(".png")
        if write_plot(report, png):
            console.print(f"plot: {png}", markup=False, soft_wrap=True)
    elif "ratelimit" in names:
        console.print("plot: skipped (matplotlib not installed: pip install -e '.[bench]')", markup=False)
    if s["errors"]:
        raise fail(f"scenario(s) failed to run: {', '.join(s['errors'])} (see the report's 'error' fields)")
