"""The farm as operators run it: `galileo farm start/stats/join` processes, signals, CURVE."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq.auth

from broker.jobs import HttpRequest
from broker.types import JobSpec
from galileo.farm.control import ControlError, control_request
from galileo.farm.coordinator import Farm
from galileo.inventory import AddressRecord, Inventory
from tests.farm.conftest import Recorder, farm_config
from tests.fault.conftest import farm_yaml

Make = Callable[..., Any]


def write_cfg(path: Path, ips: list[str], runtime: Path, extra: str = "") -> Path:
    """``farm_yaml`` written to ``path``; ``extra``: more keys of the ``farm`` mapping."""
    path.write_text(farm_yaml(ips, runtime, farm=extra))
    return path


async def galileo(*args: str, out: Path | None = None) -> asyncio.subprocess.Process:
    """``galileo *args``; its output piped, or to the file ``out`` (a pipe nobody reads could fill and
    stall a farm that runs on)."""
    sink = out.open("wb") if out is not None else None
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "galileo", "--log-level", "warning", *args,
            stdout=sink or asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if sink else asyncio.subprocess.PIPE,
        )  # fmt: skip
    finally:
        if sink is not None:
            sink.close()  # (the process has its own copy)


async def farm_start(cfg: Path, log: Path) -> asyncio.subprocess.Process:
    """`galileo farm start`, its output to ``log``."""
    return await galileo("farm", "start", "-c", str(cfg), out=log)


async def wait_stats(sock: Path, want_ready: int, log: Path | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """The farm's stats once ``want_ready`` workers are ready; on a timeout, their states and ``log``'s tail."""
    deadline = time.monotonic() + timeout
    snap: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            snap = await asyncio.to_thread(control_request, sock, {"cmd": "stats"}, 1.0)
            if snap["farm"]["ready"] >= want_ready:
                return snap
        except ControlError:
            pass
        await asyncio.sleep(0.1)
    rows = [(w["ip"], w["state"]) for w in snap.get("workers", [])]
    said = log.read_text(errors="replace")[-3000:] if log is not None else "(not kept)"
    raise AssertionError(f"farm at {sock} not ready with {want_ready} workers: {rows}; it printed:\n{said}")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "\nState:\tZ" not in fh.read()  # a zombie has exited
    except FileNotFoundError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_stats_json_reflects_live_counts(make_farm: Make, recorder: Recorder, tmp_path: Path) -> None:
    farm: Farm = await make_farm(["127.0.0.80", "127.0.0.81"])
    outs = await asyncio.gather(
        *(farm.submit(JobSpec(HttpRequest(url=f"{recorder.url}/s"), upstream="t")) for _ in range(50))
    )
    assert all(o.ok for o in outs)
    cfg = write_cfg(tmp_path / "c.yaml", ["127.0.0.80", "127.0.0.81"], farm.runtime_dir)
    proc = await galileo("farm", "stats", "--json", "-c", str(cfg))
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    snap = json.loads(out)
    by_ip = {w["ip"]: w for w in snap["workers"]}
    for ip in ("127.0.0.80", "127.0.0.81"):
        assert by_ip[ip]["ok"] == farm.counters.by_result(ip)["ok"] > 0
        assert by_ip[ip]["state"] == "ready" and by_ip[ip]["pid"] > 0
    assert sum(w["ok"] for w in snap["workers"]) == 50
    table = await galileo("farm", "stats", "-c", str(cfg))
    text, _ = await table.communicate()
    assert table.returncode == 0 and b"127.0.0.80" in text


async def test_stats_without_a_farm_exits_1(tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path / "c.yaml", ["127.0.0.2"], tmp_path / "nothing")
    proc = await galileo("farm", "stats", "-c", str(cfg))
    _, err = await proc.communicate()
    assert proc.returncode == 1 and b"no coordinator" in err


async def test_sigterm_drains_and_exits_0_and_sighup_rescans(tmp_path: Path) -> None:
    rt, log = tmp_path / "rt", tmp_path / "farm.log"
    cfg = write_cfg(tmp_path / "c.yaml", ["127.0.0.90"], rt)
    proc = await farm_start(cfg, log)
    try:
        snap = await wait_stats(rt / "control.sock", 1, log)
        write_cfg(cfg, ["127.0.0.90", "127.0.0.91"], rt)  # an address appears
        proc.send_signal(signal.SIGHUP)
        snap = await wait_stats(rt / "control.sock", 2, log)
        assert {w["ip"] for w in snap["workers"]} == {"127.0.0.90", "127.0.0.91"}
        pids = [w["pid"] for w in snap["workers"]]
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert not any(alive(p) for p in pids)


async def test_no_orphans_when_the_coordinator_is_killed(tmp_path: Path) -> None:
    rt, log = tmp_path / "rt", tmp_path / "farm.log"
    cfg = write_cfg(tmp_path / "c.yaml", ["127.0.0.95", "127.0.0.96"], rt)
    proc = await farm_start(cfg, log)
    try:
        snap = await wait_stats(rt / "control.sock", 2, log)
        pids = [w["pid"] for w in snap["workers"]]
    finally:
        proc.kill()
        await proc.wait()
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not any(alive(p) for p in pids), "workers outlived their coordinator"


async def test_repeated_boot_failure_marks_the_slot_failed(tmp_path: Path) -> None:
    inv = Inventory(
        (
            AddressRecord("127.0.0.98", "lo", "ipv4", "manual", True),
            AddressRecord("300.0.0.1", None, "ipv4", "manual", True),
        )
    )  # a worker that cannot start
    rt = tmp_path / "rt"
    async with Farm(farm_config([], rt), runtime_dir=rt, inventory=inv, log_level="critical") as farm:
        assert await farm.wait_ready(count=1)
        slot = farm.supervisor.slots["local/300.0.0.1"]
        deadline = time.monotonic() + 10
        while slot.state != "failed" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert slot.state == "failed" and slot.boot_failures == 5
        await asyncio.sleep(0.5)
        assert slot.pid is None  # and it stays down: no restart loop
        row = next(w for w in farm.snapshot()["workers"] if w["ip"] == "300.0.0.1")
        assert row["state"] == "dead"


async def test_curve_worker_from_another_host(tmp_path: Path, recorder: Recorder) -> None:
    keys, other = tmp_path / "keys", tmp_path / "other"
    allowed = tmp_path / "allowed"
    for d in (keys, other, allowed):
        d.mkdir()
    zmq.auth.create_certificates(keys, "coordinator")
    zmq.auth.create_certificates(keys, "good")
    zmq.auth.create_certificates(other, "bad")
    (allowed / "good.key").write_bytes((keys / "good.key").read_bytes())
    port = free_port()
    rt = tmp_path / "rt"
    extra = (
        f", listen: 'tcp://127.0.0.1:{port}', server_secret_key_path: '{keys / 'coordinator.key_secret'}', "
        f"authorized_keys_dir: '{allowed}'"
    )
    cfg = write_cfg(tmp_path / "c.yaml", ["127.0.0.100"], rt, extra)
    from galileo.config import load_config

    farm = Farm(load_config(cfg), runtime_dir=rt, log_level="warning")
    await farm.start()
    procs = []
    try:
        assert await farm.wait_ready(count=1)
        for name, keydir, ip in (("good", keys, "127.0.0.101"), ("bad", other, "127.0.0.102")):
            join_cfg = write_cfg(tmp_path / f"{name}.yaml", [ip], tmp_path / f"rt-{name}")
            procs.append(
                await galileo(
                    "farm",
                    "join",
                    "--connect",
                    f"tcp://127.0.0.1:{port}",
                    "--key",
                    str(keydir / f"{name}.key_secret"),
                    "--server-key",
                    str(keys / "coordinator.key"),
                    "-c",
                    str(join_cfg),
                )
            )
        assert await farm.wait_ready(count=2, timeout=15)
        remote = {w.ip: w for w in farm.hub.workers.values()}
        assert "127.0.0.101" in remote and remote["127.0.0.101"].worker_id.endswith("/127.0.0.101")
        out = await farm.submit(
            JobSpec(HttpRequest(url=f"{recorder.url}/remote"), upstream="t", require_ip="127.0.0.101")
        )
        assert out.ok and json.loads(out.value.body)["remote"] == "127.0.0.101"  # type: ignore[union-attr]
        # The unknown key is refused: that host says so and exits 1 by itself (tests/broker/test_auth.py).
        _, err = await asyncio.wait_for(procs[1].communicate(), 30)
        assert procs[1].returncode == 1 and b"refused this host's key" in err
        assert "127.0.0.102" not in {w.ip for w in farm.hub.workers.values()}
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            await asyncio.wait_for(p.wait(), 15)
        await farm.stop()
    assert procs[0].returncode == 0
    os.sync()
