"""Issue 16.6 (liveness): one long stall of the coordinator's event loop drops no worker.

The coordinator runs in this process; its loop is kept busy for 5 s (CPU, holding the GIL, as
parsing a huge config on the loop did). Meanwhile its local workers and a worker joined over
CURVE from "another host" keep running, and jobs dispatched just before the stall are answered
by an upstream in another process, their results waiting unread in the coordinator's socket.

Afterwards: every worker is the same process (none decided its coordinator was lost, none was
declared dead by the hub), the remote one never reconnected, and every job is ``ok`` (none
expired while its result sat unread). The same holds when the whole coordinator process is
stopped (SIGSTOP) for as long, libzmq's threads included.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import zmq.auth

from broker.jobs import HttpRequest
from broker.types import JobSpec
from galileo.bench._util import child_server
from galileo.config import parse_config
from galileo.farm.coordinator import Farm
from tests.fault.conftest import StartCli, free_port, ips, running, wait_for, wait_stats

pytestmark = [pytest.mark.fault, pytest.mark.slow]

STALL = 5.0
LOCAL = ips(2, start=124)
REMOTE = ips(1, start=126)[0]


def busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.mark.fault
async def test_a_five_second_stall_of_the_coordinator_drops_no_worker(tmp_path: Path, galileo_cli: StartCli) -> None:
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    keys.mkdir()
    allowed.mkdir()
    zmq.auth.create_certificates(keys, "coordinator")
    zmq.auth.create_certificates(keys, "remote")
    (allowed / "remote.key").write_bytes((keys / "remote.key").read_bytes())
    port = free_port()
    rt = tmp_path / "rt"
    listed = ", ".join(f"'{ip}'" for ip in LOCAL)
    cfg = parse_config(
        f"bot: {{network: {{enable_multiple_ip: true, manual_ips: [{listed}]}}, prometheus: {{enable: false}}}}\n"
        f"farm: {{runtime_dir: '{rt}', listen: 'tcp://127.0.0.1:{port}', "
        f"server_secret_key_path: '{keys / 'coordinator.key_secret'}', authorized_keys_dir: '{allowed}'}}\n"
    )
    join_cfg = tmp_path / "join.yaml"
    join_cfg.write_text(
        f"bot: {{network: {{enable_multiple_ip: true, manual_ips: ['{REMOTE}']}}}}\n"
        f"farm: {{runtime_dir: '{tmp_path / 'j'}'}}\n"
    )
    farm = Farm(cfg, runtime_dir=rt, log_level="warning")
    async with child_server("galileo.bench.echo") as (echo_port, _):
        url = f"http://127.0.0.1:{echo_port}/quote"
        try:
            await farm.start()
            join = await galileo_cli(
                "--log-level",
                "info",
                "farm",
                "join",
                "--connect",
                f"tcp://127.0.0.1:{port}",
                "--key",
                str(keys / "remote.key_secret"),
                "--server-key",
                str(keys / "coordinator.key"),
                "-c",
                str(join_cfg),
                name="join",
            )
            assert await farm.wait_ready(count=3, timeout=30)
            before = {w.worker_id: w.pid for w in farm.hub.workers.values()}
            warm = await asyncio.gather(
                *(farm.submit(JobSpec(HttpRequest(url=url), upstream="echo")) for _ in range(30))
            )
            assert all(o.ok for o in warm)

            pending = [
                farm.submit(JobSpec(HttpRequest(url=url), upstream=f"echo{i % 3}", timeout=1.0, idempotent=False))
                for i in range(12)
            ]
            await asyncio.sleep(0.1)  # dispatched; answered while the loop below holds the coordinator
            busy(STALL)
            outs = await asyncio.gather(*pending)
            assert Counter(o.result for o in outs) == {"ok": 12}, [o.error for o in outs if not o.ok]

            # Well past the workers' 3 s of patience and the hub's 3 s liveness, with traffic flowing.
            for _ in range(8):
                again = await asyncio.gather(
                    *(farm.submit(JobSpec(HttpRequest(url=url), upstream="echo")) for _ in range(10))
                )
                assert all(o.ok for o in again), [o.error for o in again if not o.ok]
                await asyncio.sleep(0.5)
            after = {w.worker_id: w.pid for w in farm.hub.workers.values()}
            assert after == before, "a worker was replaced"
            assert all(running(pid) for pid in before.values())
            assert all(s.restarts == 0 for s in farm.supervisor.slots.values())
            assert "worker_lost" not in farm.hub.counts and "expired" not in farm.hub.counts
            assert farm.hub.lag_total >= STALL * 0.8
            await wait_for(lambda: "coordinator silent" in join.output(), 5, "the remote worker's note that it waited")
            assert "reconnecting" not in join.output() and "coordinator lost" not in join.output()
            assert await join.stop() == 0
        finally:
            await farm.stop(grace=2.0)


@pytest.mark.fault
async def test_a_stopped_coordinator_process_keeps_its_workers(tmp_path: Path, galileo_cli: StartCli) -> None:
    """SIGSTOP stops the coordinator's libzmq threads too: its local workers wait while its process exists."""
    rt = tmp_path / "rt"
    cfg = tmp_path / "c.yaml"
    listed = ", ".join(f"'{ip}'" for ip in ips(2, start=127))
    cfg.write_text(
        f"bot: {{network: {{enable_multiple_ip: true, manual_ips: [{listed}]}}, prometheus: {{enable: false}}}}\n"
        f"farm: {{runtime_dir: '{rt}'}}\n"
    )
    coordinator = await galileo_cli("--log-level", "warning", "farm", "start", "-c", str(cfg), name="coordinator")
    snap = await wait_stats(rt, lambda s: s["farm"]["ready"] == 2, 30, "the farm")
    pids = sorted(w["pid"] for w in snap["workers"])
    coordinator.proc.send_signal(signal.SIGSTOP)
    await asyncio.sleep(STALL)
    coordinator.proc.send_signal(signal.SIGCONT)
    await asyncio.sleep(4.0)  # past the hub's 3 s liveness, had it counted its own stop
    snap = await wait_stats(rt, lambda s: s["farm"]["ready"] == 2, 10, "the farm after SIGCONT")
    assert sorted(w["pid"] for w in snap["workers"]) == pids and all(w["restarts"] == 0 for w in snap["workers"])
    assert all(running(pid) for pid in pids)
    assert await coordinator.stop() == 0
