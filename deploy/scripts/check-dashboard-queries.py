#!/usr/bin/env python3
"""Run every query of the Grafana dashboard against a real Prometheus, and say which return data.

    check-dashboard-queries.py                          # a demo farm + Prometheus here, 120 s, live landing
    check-dashboard-queries.py --mode dry_run           # the same with lander.mode: dry_run
    check-dashboard-queries.py --prometheus http://127.0.0.1:9090   # query a Prometheus you run

Without --prometheus it starts, on this machine only: `galileo sim` (the simulator of every
upstream), `galileo farm start` with the demo's config (`galileo demo`: the blind strategy on
127.0.0.2.., landing in the simulator) serving /metrics on a free port, and `prometheus`
(the binary on PATH, or --prometheus-bin; Debian: `apt install prometheus`) scraping it
every 2 s into a temporary directory. After --seconds it runs each panel's expressions and
the template variables' label queries, prints one line per query (`data`, `NaN` or `EMPTY`),
stops everything it started, and exits 0 when every query returned data, 1 otherwise.
Before the queries it prints what `promtool check metrics` (when installed) says of /metrics.
Each query runs as a panel runs it, over a range (the last --seconds, 100 steps): it returns
data when some point of some series has a value.

Grafana's variables are replaced as the dashboard's "All" selection does: $ip and $task by
`.*`, $__rate_interval by --rate-interval (30s). Run it from galileo's virtualenv (it uses
`galileo` and imports galileo.demo).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[1] / "grafana" / "galileo-dashboard.json"
_LABEL_VALUES = re.compile(r"^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$")


def queries(dashboard: dict[str, Any], rate_interval: str = "30s") -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable, variables substituted."""
    out: list[tuple[str, str]] = []
    panels = [p for top in dashboard["panels"] for p in (top, *top.get("panels", []))]
    for panel in panels:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", rate_interval)
            expr = expr.replace('"$ip"', '".*"').replace('"$task"', '".*"')
            out.append((f"{panel['title']} [{target.get('refId', '?')}]", expr))
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            out.append((f"variable ${var['name']}", var["definition"]))
    return out


def run_query(prometheus: str, expr: str, start: float, end: float, step: float) -> str:
    """``data (N series)``, ``NaN`` (series, but never a number) or ``EMPTY``, over [start, end] as a panel would."""
    match = _LABEL_VALUES.match(expr)
    if match:
        metric, label = match.groups()
        params = {"match[]": metric, "start": str(start), "end": str(end)}
        url = f"{prometheus}/api/v1/label/{label}/values?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            values = json.load(resp)["data"]
        return f"data ({len(values)} values)" if values else "EMPTY"
    params = {"query": expr, "start": str(start), "end": str(end), "step": str(step)}
    url = f"{prometheus}/api/v1/query_range?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=30) as resp:
        result = json.load(resp)["data"]["result"]
    if not result:
        return "EMPTY"
    if all(math.isnan(float(v)) for series in result for _, v in series["values"]):
        return "NaN"
    return f"data ({len(result)} series)"


def check(prometheus: str, dashboard: dict[str, Any], rate_interval: str, seconds: float) -> int:
    """Run every query over the last ``seconds``; 0 when each returned data."""
    end = time.time()
    start, step = end - seconds, max(1.0, seconds / 100)
    failures = 0
    found = queries(dashboard, rate_interval)
    for where, expr in found:
        verdict = run_query(prometheus, expr, start, end, step)
        failures += not verdict.startswith("data")
        print(f"{verdict:<18} {where}: {expr}")
    print(f"{len(found) - failures} of {len(found)} queries returned data over the last {seconds:g} s")
    return 0 if failures == 0 else 1


# --- a demo farm and a Prometheus, when none is given -------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def farm_yaml(sim_url: str, ips: list[str], runtime: Path, keypair: Path, listen: str, mode: str) -> str:
    """The demo's config, with /metrics on ``listen`` and ``lander.mode: mode``, as YAML."""
    import msgspec
    import yaml

    from galileo.config.schema import PrometheusConfig
    from galileo.demo import demo_config

    cfg = demo_config(sim_url, ips, runtime, keypair)
    cfg = msgspec.structs.replace(
        cfg,
        bot=msgspec.structs.replace(cfg.bot, prometheus=PrometheusConfig(enable=True, listen=listen)),
        lander=msgspec.structs.replace(cfg.lander, mode=mode),
    )
    text: str = yaml.safe_dump(msgspec.to_builtins(cfg), sort_keys=False)
    return text


@contextlib.contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(url: str, seconds: float, what: str, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not come up at {url}")
        time.sleep(0.5)


def promtool_check(url: str) -> None:
    """Print what `promtool check metrics` says of the farm's /metrics (the kept design names, and only them)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        print("promtool not found: skipping `promtool check metrics`")
        return
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read()
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30, check=False)
    said = (proc.stdout + proc.stderr).decode().strip()
    print(f"promtool check metrics (exit {proc.returncode}):")
    for line in said.splitlines() or ["(nothing)"]:
        print(f"  {line}")


def run_demo_and_check(args: argparse.Namespace, dashboard: dict[str, Any]) -> int:
    prometheus_bin = args.prometheus_bin or shutil.which("prometheus")
    if not prometheus_bin:
        raise SystemExit("no prometheus binary: install it (Debian: apt install prometheus) or pass --prometheus-bin")
    from galileo.tx import ephemeral_keypair, write_keypair

    galileo = [sys.executable, "-m", "galileo"]
    with tempfile.TemporaryDirectory(prefix="galileo-dashcheck-") as tmp:
        work = Path(tmp)
        print(f"logs in {work} (kept while running)")
        with process([*galileo, "sim", "--port", "0", "--rate-limit", "20"], work / "sim.log") as sim:
            deadline = time.monotonic() + 30
            sim_url = None
            while sim_url is None:
                found = re.search(r"listening on (http://\S+)", (work / "sim.log").read_text(errors="replace"))
                sim_url = found.group(1) if found else None
                if sim_url is None and (sim.poll() is not None or time.monotonic() > deadline):
                    raise SystemExit("galileo sim did not start: see sim.log")
                time.sleep(0.2)
            keypair = work / "wallet.json"
            write_keypair(keypair, ephemeral_keypair())
            metrics = f"127.0.0.1:{free_port()}"
            ips = [f"127.0.0.{i}" for i in range(2, 2 + args.ips)]
            config = work / "galileo.yaml"
            config.write_text(farm_yaml(sim_url, ips, work / "rt", keypair, metrics, args.mode))
            prom_port = free_port()
            (work / "prometheus.yml").write_text(
                "global: {scrape_interval: 2s, scrape_timeout: 2s}\n"
                f"scrape_configs: [{{job_name: galileo, static_configs: [{{targets: ['{metrics}']}}]}}]\n"
            )
            farm_args = [*galileo, "--log-level", "warning", "farm", "start", "-c", str(config)]
            prom_args = [
                prometheus_bin,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ]
            with process(farm_args, work / "farm.log") as farm, process(prom_args, work / "prometheus.log") as prom:
                wait_for(f"http://{metrics}/metrics", 60, "the farm's /metrics", [farm])
                prometheus = f"http://127.0.0.1:{prom_port}"
                wait_for(f"{prometheus}/-/ready", 60, "prometheus", [prom])
                print(f"farm ({args.mode}, {len(ips)} IPs) on {metrics}, prometheus on {prometheus}: {args.seconds} s")
                time.sleep(args.seconds)
                promtool_check(f"http://{metrics}/metrics")
                return check(prometheus, dashboard, args.rate_interval, args.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", help="query this Prometheus (http://HOST:PORT) instead of starting one")
    parser.add_argument("--prometheus-bin", help="the prometheus binary (default: from PATH)")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD, help="the dashboard JSON")
    parser.add_argument(
        "--seconds", type=float, default=120.0, help="how long the demo runs; the queries cover this span"
    )
    parser.add_argument("--mode", choices=("live", "dry_run"), default="live", help="lander.mode of the demo farm")
    parser.add_argument("--ips", type=int, default=4, help="loopback addresses of the demo farm")
    parser.add_argument("--rate-interval", default="30s", help="what $__rate_interval stands for")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows as it comes
    dashboard = json.loads(args.dashboard.read_text())
    if args.prometheus:
        return check(args.prometheus.rstrip("/"), dashboard, args.rate_interval, args.seconds)
    os.environ.pop("GALILEO_CONFIG", None)
    return run_demo_and_check(args, dashboard)


if __name__ == "__main__":
    sys.exit(main())
