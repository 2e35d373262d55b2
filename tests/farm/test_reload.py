"""SIGHUP reads the config in a child process, bounded in time and memory: a config that is slow
to parse never stalls the coordinator's loop, so no worker decides its coordinator is gone."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

from galileo.config import ConfigError, load_config
from galileo.farm.control import ControlError, control_request
from galileo.farm.reload import ReloadError, load_config_isolated
from tests.farm.test_farm_processes import wait_stats, write_cfg

SLOW_LINES = 100_000  # ~1.4 MB of YAML list: about 6 s of parsing on the test machine


async def test_a_slow_config_on_sighup_keeps_every_worker(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    cfg = write_cfg(tmp_path / "c.yaml", ["127.0.0.160", "127.0.0.161"], rt)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "galileo", "--log-level", "warning", "farm", "start", "-c", str(cfg),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    log: list[str] = []

    async def collect() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            log.append(line.decode())

    reader = asyncio.create_task(collect())
    try:
        sock = rt / "control.sock"
        before = await wait_stats(sock, 2, timeout=30)
        pids = {w["ip"]: w["pid"] for w in before["workers"]}
        filler = "".join(f"  - item{i}\n" for i in range(SLOW_LINES))
        cfg.write_text(cfg.read_text() + f"filler:\n{filler}")
        proc.send_signal(signal.SIGHUP)
        unanswered, answered = 0, 0
        deadline = time.monotonic() + 40
        while not any("config reload failed" in line for line in log):
            assert time.monotonic() < deadline, "the reload never finished"
            try:
                await asyncio.to_thread(control_request, sock, {"cmd": "stats"}, 2.0)
                answered += 1
            except ControlError:
                unanswered += 1
            await asyncio.sleep(0.2)
        assert unanswered == 0 and answered >= 1, (unanswered, answered)
        failed = next(line for line in log if "config reload failed" in line)
        assert "keeping the old one" in failed  # too big, too slow or not a config: the old one stays
        after = await asyncio.to_thread(control_request, sock, {"cmd": "stats"}, 2.0)
        assert {w["ip"]: w["pid"] for w in after["workers"]} == pids
        assert all(w["restarts"] == 0 and w["state"] == "ready" for w in after["workers"])
        assert not any("coordinator lost" in line or "killing" in line for line in log), log
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
        await reader
    assert proc.returncode == 0


async def test_the_child_reads_what_farm_start_reads(tmp_path: Path) -> None:
    good = write_cfg(tmp_path / "good.yaml", ["127.0.0.162"], tmp_path / "rt")
    assert await load_config_isolated(good) == load_config(good)
    bad = tmp_path / "bad.yaml"
    bad.write_text("bot: {network: {manual_ips: [not-an-ip]}}\n")
    with pytest.raises(ConfigError) as exc:
        await load_config_isolated(bad)
    assert [i.path for i in exc.value.issues] == ["bot.network.manual_ips[0]"] and exc.value.source == str(bad)


async def test_a_reader_that_does_not_answer_in_time_is_killed(tmp_path: Path) -> None:
    good = write_cfg(tmp_path / "good.yaml", ["127.0.0.162"], tmp_path / "rt")
    with pytest.raises(ReloadError, match=r"reading it took more than 0.05s; keeping the config in use"):
        await load_config_isolated(good, timeout=0.05)  # less than an interpreter takes to start


async def test_a_config_that_never_finishes_is_given_up_on(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"  # a YAML alias bomb: 9^9 addresses from 10 short lines
    lines = ['a0: &a0 ["127.0.0.1","127.0.0.1","127.0.0.1","127.0.0.1","127.0.0.1","127.0.0.1"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\nbot: {network: {manual_ips: *a8}}\n")
    with pytest.raises((ReloadError, ConfigError)) as exc:  # ConfigError once the loader limits aliases
        await load_config_isolated(bomb, timeout=3.0)
    if isinstance(exc.value, ReloadError):
        assert "took more than 3s" in str(exc.value) or "MiB of memory" in str(exc.value)
