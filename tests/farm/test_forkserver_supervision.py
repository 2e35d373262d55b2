"""The fork server is supervised: killed, it comes back; a worker killed meanwhile is replaced, and
no slot says ``ready`` for a process it no longer has."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from broker.jobs import HttpRequest
from broker.types import JobSpec
from galileo.farm.coordinator import Farm
from tests.farm.conftest import Recorder, loopback
from tests.farm.test_farm_processes import alive

Make = Callable[..., Any]


async def until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def row(farm: Farm, ip: str) -> dict[str, Any]:
    return next(w for w in farm.snapshot()["workers"] if w["ip"] == ip)


async def test_kill_the_fork_server_then_a_worker_and_the_worker_is_replaced(
    make_farm: Make, recorder: Recorder
) -> None:
    victim_ip, bystander_ip = loopback(2, start=150)
    farm: Farm = await make_farm([victim_ip, bystander_ip])
    fs = farm.supervisor.forkserver
    assert fs.proc is not None
    server_pid = fs.proc.pid
    victim, bystander = (farm.supervisor.slots[f"local/{ip}"] for ip in (victim_ip, bystander_ip))
    victim_pid, bystander_pid = victim.pid, bystander.pid
    assert victim_pid and bystander_pid

    os.kill(server_pid, signal.SIGKILL)
    await until(lambda: not alive(server_pid), 5, "the fork server did not die")
    os.kill(victim_pid, signal.SIGKILL)
    # Seen at once, without the fork server to report it: never `ready` with a dead pid.
    await until(lambda: victim.pid != victim_pid, 2, "the slot still claims its dead worker")
    assert row(farm, victim_ip)["state"] != "ready" or row(farm, victim_ip)["pid"] != victim_pid

    await until(lambda: fs.proc is not None and fs.proc.pid != server_pid and fs.running, 20, "no new fork server")
    await until(
        lambda: (w := farm.hub.workers.get(f"local/{victim_ip}")) is not None and w.pid not in (victim_pid, None),
        20,
        "the killed worker was not replaced",
    )
    assert victim.state == "ready" and victim.pid == farm.hub.workers[f"local/{victim_ip}"].pid
    assert bystander.pid == bystander_pid and alive(bystander_pid)  # the others kept serving meanwhile
    assert fs.restarts == 1
    outs = await asyncio.gather(*(farm.submit(JobSpec(HttpRequest(url=recorder.url), upstream="t")) for _ in range(40)))
    assert all(o.ok for o in outs) and {o.ip for o in outs} == {victim_ip, bystander_ip}

    # And a worker that dies while there is no fork server at all is picked up once there is one.
    os.kill(fs.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
    os.kill(bystander_pid, signal.SIGKILL)
    await until(lambda: bystander.pid != bystander_pid, 2, "the slot still claims its dead worker")
    await until(
        lambda: (w := farm.hub.workers.get(f"local/{bystander_ip}")) is not None and w.pid != bystander_pid,
        30,
        "the worker killed with no fork server was not replaced",
    )
    assert fs.restarts == 2 and row(farm, bystander_ip)["state"] == "ready"
