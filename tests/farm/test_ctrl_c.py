"""Ctrl-C in a terminal: SIGINT to the whole process group (coordinator, fork server, workers,
the demo's simulator). The coordinator drains and stops everything in order: no worker drains
on its own and gets restarted as if it had crashed, and the demo's upstreams outlive its farm."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from galileo.config import parse_config
from galileo.farm.coordinator import Farm
from galileo.farm.runner import run_farm
from tests.fault.conftest import farm_stats, farm_yaml

pytestmark = pytest.mark.slow

CRASH_SIGNS = ("level=warning", "level=error", "restarting in", "Traceback", "refresh failed")


async def ctrl_c(args: list[str], tmp_path: Path, ready: object, timeout: float = 60) -> tuple[int, str]:
    """Run ``python -m galileo ARGS`` in its own process group; once ``ready()`` is true, SIGINT the group."""
    out = (tmp_path / "out").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "galileo", *args, stdout=out, stderr=out, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while not await ready():  # type: ignore[operator]
            assert proc.returncode is None, (tmp_path / "out").read_text()[-3000:]
            assert time.monotonic() < deadline, "never got ready: " + (tmp_path / "out").read_text()[-3000:]
            await asyncio.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        out.close()
    return code, (tmp_path / "out").read_text(errors="replace")


async def test_ctrl_c_stops_the_farm_in_order(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    cfg = tmp_path / "galileo.yaml"
    cfg.write_text(farm_yaml(["127.0.11.1", "127.0.11.2", "127.0.11.3"], rt))

    async def ready() -> bool:
        snap = await farm_stats(rt, 1.0)
        return snap is not None and snap["farm"]["ready"] == 3

    code, output = await ctrl_c(["farm", "start", "-c", str(cfg)], tmp_path, ready)
    assert code == 0, output[-3000:]
    assert not [sign for sign in CRASH_SIGNS if sign in output], output[-3000:]
    assert "draining: SIGINT" not in output  # the workers left it to the coordinator
    assert output.count('msg="worker exiting: drained"') == 3, output[-3000:]


async def test_ctrl_c_stops_the_demo_before_its_simulator(tmp_path: Path) -> None:
    started: list[float] = []

    async def ready() -> bool:  # the live table only reaches a terminal: give it time to trade
        if not started and "Ctrl-C to stop" in (tmp_path / "out").read_text(errors="replace"):
            started.append(time.monotonic())
        return bool(started) and time.monotonic() - started[0] > 8

    code, output = await ctrl_c(["demo", "--ips", "2"], tmp_path, ready)
    assert code == 0, output[-3000:]
    assert "demo done" in output
    assert not [sign for sign in CRASH_SIGNS if sign in output], output[-3000:]


async def test_ctrl_c_while_workers_boot_is_a_clean_stop_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, with workers that never report ready: SIGINT must still end run_farm cleanly."""

    async def never_ready(self: Farm, timeout: float = 0.0) -> bool:
        await asyncio.sleep(3600)
        return False

    monkeypatch.setattr(Farm, "wait_ready", never_ready)
    rt = tmp_path / "rt"
    cfg = parse_config(farm_yaml(["127.0.11.4", "127.0.11.5"], rt))
    interrupted: list[int] = []
    previous_handler = [lambda *_: interrupted.append(1)]  # if run_farm has no handler of its own
    previous = signal.signal(signal.SIGINT, previous_handler[0])
    try:
        run = asyncio.create_task(run_farm(cfg, runtime_dir=rt, log_level="warning"))
        while not (rt / "workers.sock").exists():  # the farm is starting: its workers are booting
            assert not run.done(), run
            await asyncio.sleep(0.05)
        for _ in range(100):  # up to 5 s for run_farm to take SIGINT over, as it should before waiting
            if signal.getsignal(signal.SIGINT) is not previous_handler[0]:
                break
            await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait_for(run, 30)  # returns, neither hanging nor raising
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not interrupted, "the SIGINT reached no handler of run_farm"
