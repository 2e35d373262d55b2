"""The ``sim`` CLI command (registered by the lead as ``galileo sim``) and run_sim in a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from galileo.cli import _sim
from galileo.sim import SimConfig
from galileo.sim import app as sim_app

app = typer.Typer()
app.command("sim")(_sim.sim)


@app.callback()
def _root() -> None:
    """Keep ``sim`` a subcommand, as in the real CLI."""


def test_help() -> None:
    result = CliRunner().invoke(app, ["sim", "--help"])
    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--rate-limit",
        "--limiter",
        "--latency-ms",
        "--fault-rate",
        "--seed",
        "--pool-hold-slots",
    ):
        assert option in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--rate-limit", "0"],
        ["--rate-limit", "nan"],
        ["--latency-ms", "-5"],
        ["--fault-rate", "gremlins=0.1"],
        ["--fault-rate", "5xx=1.5"],
        ["--fault-rate", "5xx=0.7", "--fault-rate", "reset=0.7"],
        ["--port", "70000"],
        ["--seed", "x"],
        ["--limiter", "jupyter=sliding:50/10s"],
        ["--limiter", "jupiter=sliding:50"],
        ["--limiter", "jito=bucket:5/1s,burst=0.05,scope=ip+regoin"],
        ["--limiter", "jito:=fixed:1/1s"],
        ["--limiter", "dflow=bucket:20/1s &"],
        ["--limiter", "dflow=bucket:20/1s & fixed:600"],
        ["--latency-ms", "jupiter=-1"],
        ["--latency-ms", "150,spike=2:10"],
        ["--stats-seconds", "0"],
        ["--pool-hold-slots", "0"],
        ["--pool-hold-slots", "1001"],
    ],
)
def test_bad_values_exit_2(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim_app, "run_sim", lambda config: pytest.fail("must not start"))
    result = CliRunner().invoke(app, ["sim", *args])
    assert result.exit_code == 2, result.output


def test_options_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SimConfig] = []
    monkeypatch.setattr(sim_app, "run_sim", seen.append)
    args = [
        "sim",
        "--port",
        "0",
        "--rate-limit",
        "5",
        "--latency-ms",
        "3",
        "--fault-rate",
        "0.06",
        "--fault-rate",
        "reset=0.2",
        "--seed",
        "9",
        "--pool-hold-slots",
        "1",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.port, config.rate_limit, config.latency_ms, config.seed) == (0, 5.0, 3.0, 9)
    assert config.pool_hold_slots == 1
    assert config.faults["reset"] == 0.2 and config.faults["5xx"] == pytest.approx(0.01)
    assert (config.limiters, config.latency) == ({}, {})


def test_limiters_and_latency_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SimConfig] = []
    monkeypatch.setattr(sim_app, "run_sim", seen.append)
    args = [
        "sim",
        "--limiter",
        "jupiter=sliding:50/10s,scope=key",
        "--limiter",
        "jito=bucket:5/1s,burst=0.05,scope=ip+region",
        "--limiter",
        "jito:ny=penalty:10/1s,box=30s,retry_after=no",
        "--limiter",
        "concurrency:4",
        "--latency-ms",
        "jupiter=150,jitter=50,spike=0.01:2000",
        "--latency-ms",
        "25",
        "--latency-ms",
        "jito:tokyo=90",
        "--rate-limit",
        "20",
        "--stats-seconds",
        "30",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert config.limiters == {
        "jupiter": "sliding:50/10s,scope=key",
        "jito": "bucket:5/1s,burst=0.05,scope=ip+region",
        "jito:ny": "penalty:10/1s,box=30s,retry_after=no",
        "all": "concurrency:4",
    }
    assert config.latency == {"jupiter": "150,jitter=50,spike=0.01:2000", "jito:tokyo": "90"}
    assert (config.latency_ms, config.rate_limit, config.stats_seconds) == (25.0, 20.0, 30)
    assert config.pool_hold_slots == 6  # the default: gaps between pools last a few slots


def test_a_bad_pool_hold_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim_app, "run_sim", lambda config: pytest.fail("must not start"))
    result = CliRunner().invoke(app, ["sim", "--pool-hold-slots", "0"])
    assert result.exit_code == 2 and "pool_hold_slots: 0 is not in 1..1000" in result.output, result.output


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status


def test_run_sim_serves_until_sigterm() -> None:
    code = "from galileo.sim import SimConfig, run_sim; run_sim(SimConfig(port=0, seed=1))"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" on ", 1)[1].split()[0]
        assert _get(url + "/sim/health") == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
