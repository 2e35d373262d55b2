"""Issue 9.2: the coordinator dies (SIGKILL): local workers follow it, remote workers wait for the next one.

Local workers watch the coordinator's pid (pidfd) and its heartbeats, and the fork server dies
with it (PDEATHSIG): no process of the farm outlives it. Workers joined from another host
(``galileo farm join``, CURVE over tcp) keep their process, reconnect with backoff, and
register with a coordinator that comes back on the same endpoint with the same keys.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import zmq.auth

from tests.fault.conftest import (
    Galileo,
    StartCli,
    descendants,
    free_port,
    ips,
    proc_state,
    running,
    wait_for,
    wait_stats,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow]

LOCAL = ips(2, start=60)
REMOTE = "127.0.9.70"


def curve_setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    keys.mkdir()
    allowed.mkdir()
    zmq.auth.create_certificates(keys, "coordinator")
    zmq.auth.create_certificates(keys, "remote")
    (allowed / "remote.key").write_bytes((keys / "remote.key").read_bytes())
    return keys, allowed, keys / "coordinator.key"


def remote_rows(snap: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in snap["workers"] if w["remote"] and w["state"] == "ready"]


@pytest.mark.fault
async def test_coordinator_sigkill_local_workers_exit_remote_workers_reconnect(
    tmp_path: Path, galileo_cli: StartCli
) -> None:
    keys, allowed, server_public = curve_setup(tmp_path)
    port = free_port()
    rt = tmp_path / "rt"
    listed = ", ".join(f'"{ip}"' for ip in LOCAL)
    cfg = tmp_path / "coordinator.yaml"
    cfg.write_text(
        f"bot: {{network: {{enable_multiple_ip: true, manual_ips: [{listed}]}}, prometheus: {{enable: false}}}}\n"
        f"farm: {{runtime_dir: '{rt}', listen: 'tcp://127.0.0.1:{port}', "
        f"server_secret_key_path: '{keys / 'coordinator.key_secret'}', authorized_keys_dir: '{allowed}'}}\n"
    )
    join_cfg = tmp_path / "join.yaml"
    join_cfg.write_text(
        f"bot: {{network: {{enable_multiple_ip: true, manual_ips: ['{REMOTE}']}}}}\n"
        f"farm: {{runtime_dir: '{tmp_path / 'j'}'}}\n"
    )

    first: Galileo = await galileo_cli("--log-level", "warning", "farm", "start", "-c", str(cfg), name="first")
    join: Galileo = await galileo_cli(
        "--log-level",
        "warning",
        "farm",
        "join",
        "--connect",
        f"tcp://127.0.0.1:{port}",
        "--key",
        str(keys / "remote.key_secret"),
        "--server-key",
        str(server_public),
        "-c",
        str(join_cfg),
        name="join",
    )
    snap = await wait_stats(rt, lambda s: s["farm"]["ready"] == 3, 30, "2 local + 1 remote workers")
    (remote,) = remote_rows(snap)
    assert remote["ip"] == REMOTE
    local_pids = [w["pid"] for w in snap["workers"] if not w["remote"]]
    family = descendants(first.pid)  # the fork server and the local workers
    assert set(local_pids) <= set(family) and len(family) >= 3

    await first.stop(signal.SIGKILL)
    await wait_for(lambda: not any(running(p) for p in family), 10, "the coordinator's processes to exit")
    assert all(proc_state(p) in (None, "Z") for p in family)  # gone, or exited and waiting for init to reap
    assert running(join.pid) and running(remote["pid"]), "the remote worker must outlive its coordinator"

    # Silent for 3 heartbeats: the remote worker opens a fresh socket, again and again, backing off.
    await wait_for(lambda: "reconnecting in 2s" in join.output(), 20, "a second, longer reconnect backoff")
    assert join.output().index("reconnecting in 1s") < join.output().index("reconnecting in 2s")
    assert running(remote["pid"])

    # A new coordinator on the same endpoint with the same keys: the remote worker registers
    # again, from the same process (a reconnect, not a restart).
    second: Galileo = await galileo_cli("--log-level", "warning", "farm", "start", "-c", str(cfg), name="second")
    snap = await wait_stats(rt, lambda s: len(remote_rows(s)) == 1 and s["farm"]["ready"] == 3, 45, "re-registration")
    (again,) = remote_rows(snap)
    assert again["pid"] == remote["pid"] and again["ip"] == REMOTE

    assert await join.stop(signal.SIGTERM) == 0
    assert await second.stop(signal.SIGTERM) == 0
    assert not running(remote["pid"])
