"""Several IPs per worker process (``farm.ips_per_process``): each IP is still its own worker.

Real farms, real worker processes, a real HTTP server that sees each request's source address.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from broker.jobs import HttpRequest
from broker.types import JobSpec
from galileo.farm.coordinator import Farm
from galileo.farm.supervisor import per_process, usable_cpus
from tests.farm.conftest import Recorder, loopback

Make = Callable[..., Any]


def job(recorder: Recorder, path: str, require_ip: str | None = None) -> JobSpec:
    return JobSpec(HttpRequest(url=f"{recorder.url}{path}"), upstream="t", require_ip=require_ip)


def pids(farm: Farm) -> dict[str, int]:
    return {w.ip: w.pid for w in farm.hub.workers.values()}


async def until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def one_each(farm: Farm, recorder: Recorder, ips: list[str], path: str) -> None:
    """A job pinned to each IP: each succeeds, and the server saw it come from that IP."""
    before = recorder.by_remote(path)
    outs = await asyncio.gather(*(farm.submit(job(recorder, path, require_ip=ip)) for ip in ips))
    assert all(o.ok for o in outs), outs
    after = recorder.by_remote(path)
    assert {ip: after.get(ip, 0) - before.get(ip, 0) for ip in ips} == dict.fromkeys(ips, 1)


def test_auto_keeps_about_four_processes_per_cpu() -> None:
    assert [per_process("auto", n, cpus=2) for n in (1, 8, 9, 16, 64)] == [1, 1, 2, 2, 8]
    assert [per_process("auto", n, cpus=16) for n in (8, 64, 65)] == [1, 1, 2]
    assert per_process(3, 64, cpus=2) == 3 and per_process(1, 64, cpus=1) == 1


def test_auto_counts_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host of 64 CPUs that runs the farm under ``taskset -c 0,1`` (or a cpuset of 2) has 2."""
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert usable_cpus() == 2
    assert per_process("auto", 64) == 8


async def test_by_default_a_host_past_four_addresses_per_cpu_shares_processes(
    make_farm: Make, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # one CPU: about 4 processes
    ips = loopback(6, start=200)
    farm: Farm = await make_farm(ips)  # farm.ips_per_process not set
    by_ip = pids(farm)
    assert sorted(by_ip) == ips
    assert len(set(by_ip.values())) == 3  # 2 addresses to a process
    await one_each(farm, recorder, ips, "/default")


async def test_six_ips_in_two_processes_each_sends_from_its_own_address(make_farm: Make, recorder: Recorder) -> None:
    ips = loopback(6, start=170)
    farm: Farm = await make_farm(ips, farm_keys=", ips_per_process: 3")
    by_ip = pids(farm)
    assert sorted(by_ip) == ips
    assert by_ip[ips[0]] == by_ip[ips[1]] == by_ip[ips[2]] != by_ip[ips[3]] == by_ip[ips[4]] == by_ip[ips[5]]
    outs = await asyncio.gather(*(farm.submit(job(recorder, "/any")) for _ in range(120)))
    assert all(o.ok for o in outs) and len(outs) == 120
    seen = recorder.by_remote("/any")
    assert set(seen) == set(ips) and sum(seen.values()) == 120
    assert {o.ip for o in outs} == set(ips)
    await one_each(farm, recorder, ips, "/pinned")


async def test_a_shared_process_killed_under_load_comes_back_whole_and_loses_no_job(
    make_farm: Make, recorder: Recorder
) -> None:
    ips = loopback(4, start=176)
    farm: Farm = await make_farm(ips, farm_keys=", ips_per_process: 2")
    before = pids(farm)
    victim, bystander = before[ips[0]], before[ips[2]]
    assert before[ips[1]] == victim and before[ips[3]] == bystander != victim
    recorder.delay = 0.5
    futures = [farm.submit(job(recorder, "/load")) for _ in range(80)]
    on_victim = [w for w in farm.hub.workers.values() if w.pid == victim]
    await until(lambda: all(w.inflight for w in on_victim), 10, "jobs in flight on both of the victim's IPs")
    os.kill(victim, signal.SIGKILL)
    outs = await asyncio.wait_for(asyncio.gather(*futures), 30)
    assert len({o.job_id for o in outs}) == 80 and all(o.ok for o in outs), [o for o in outs if not o.ok]
    assert any(o.attempts == 2 for o in outs), "no job was on the killed process"

    # Both of its IPs come back, in one new process; the other process was not touched.
    await until(lambda: {ip for ip, pid in pids(farm).items() if pid != victim} == set(ips), 15, "replacements")
    after = pids(farm)
    assert after[ips[0]] == after[ips[1]] not in (victim, bystander)
    assert after[ips[2]] == after[ips[3]] == bystander
    slots = farm.supervisor.slots
    assert [slots[f"local/{ip}"].restarts for ip in ips] == [1, 1, 0, 0]
    recorder.delay = 0.0
    await one_each(farm, recorder, ips, "/after")


async def test_removing_one_ip_of_a_shared_process_leaves_the_others_serving(
    make_farm: Make, recorder: Recorder
) -> None:
    ips = loopback(3, start=182)
    farm: Farm = await make_farm(ips, farm_keys=", ips_per_process: 3")
    shared = pids(farm)[ips[0]]
    out_ip, kept = ips[1], [ips[0], ips[2]]
    result = await farm.scale_remove(out_ip)
    assert result.ok, result
    await until(lambda: f"local/{out_ip}" not in farm.supervisor.slots, 15, "the slot to be retired")
    assert out_ip not in pids(farm)
    assert {ip: pids(farm)[ip] for ip in kept} == dict.fromkeys(kept, shared)  # the same process serves on
    assert all(farm.supervisor.slots[f"local/{ip}"].state == "ready" for ip in kept)
    assert farm.hub.expected_workers == 2
    await one_each(farm, recorder, kept, "/kept")
    outs = await asyncio.gather(*(farm.submit(job(recorder, "/rest")) for _ in range(40)))
    assert all(o.ok for o in outs) and out_ip not in recorder.by_remote("/rest")

    # Added back, it gets a process of its own.
    assert (await farm.scale_add(out_ip)).ok
    assert await farm.wait_ready(count=3, timeout=15)
    assert pids(farm)[out_ip] != shared
    await one_each(farm, recorder, ips, "/back")


async def test_stopping_a_farm_of_shared_processes_ends_every_process(make_farm: Make) -> None:
    ips = loopback(4, start=186)
    farm: Farm = await make_farm(ips, farm_keys=", ips_per_process: auto")
    procs = set(pids(farm).values())
    assert len(procs) == len(ips) // per_process("auto", len(ips))
    await farm.stop()
    await until(lambda: all(_gone(pid) for pid in procs), 5, f"processes {sorted(procs)} to exit")
    assert not farm.supervisor._by_pid


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "\nState:\tZ" in fh.read()  # a zombie has exited
    except FileNotFoundError:
        return True


async def test_an_ip_retired_while_its_process_was_starting_never_serves(make_farm: Make, recorder: Recorder) -> None:
    ips = loopback(2, start=190)
    late, alone = "127.0.0.192", "127.0.0.193"
    farm: Farm = await make_farm(ips, farm_keys=", ips_per_process: 2")
    spawn = farm.supervisor.forkserver.spawn
    release = asyncio.Event()
    started: list[int] = []

    async def answered_late(args: Any, wait: float = 30.0) -> int:  # the retire comes before the answer
        pid = await spawn(args, wait)
        started.append(pid)
        await release.wait()
        return pid

    farm.supervisor.forkserver.spawn = answered_late  # type: ignore[method-assign]
    adding = [asyncio.create_task(farm.scale_add(ip)) for ip in (late, alone)]
    await until(lambda: len(started) == 2, 15, "both processes forked")
    for ip in (late, alone):
        assert await farm.supervisor.retire(ip, "address gone")
    release.set()
    await asyncio.gather(*adding)
    # Each registers, is told to drain, says Bye; its process exits; nothing was sent from it.
    await until(lambda: all(_gone(pid) for pid in started), 15, "the late processes to exit")
    await until(lambda: not {late, alone} & set(pids(farm)), 5, "the late workers to leave the hub")
    assert not {f"local/{late}", f"local/{alone}"} & set(farm.supervisor.slots)
    assert farm.hub.expected_workers == 2
    outs = await asyncio.gather(*(farm.submit(job(recorder, "/after")) for _ in range(30)))
    assert all(o.ok for o in outs) and set(recorder.by_remote("/after")) == set(ips)
