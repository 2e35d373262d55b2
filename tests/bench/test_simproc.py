"""The bench's simulator process is scheduled ahead of the clients as far as the OS allows, and says how."""

from __future__ import annotations

import os

import pytest

from galileo.bench import simproc
from galileo.bench.simproc import PRIORITY, sim_process


async def test_the_simulator_says_how_it_is_scheduled_and_the_os_agrees() -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    async with sim_process(seed=3) as sim:
        policy = os.sched_getscheduler(sim.pid)
        nice = os.getpriority(os.PRIO_PROCESS, sim.pid)
        assert (await sim.stats())["requests"]["total"] == 0  # it serves
    if sim.scheduling == "realtime":
        assert policy == os.SCHED_RR
    elif sim.scheduling == "nice":
        assert (policy, nice) == (os.SCHED_OTHER, ours - PRIORITY)
    else:
        assert (sim.scheduling, policy, nice) == ("shared", os.SCHED_OTHER, ours)


async def test_a_simulator_that_is_itself_measured_shares_the_cores() -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    async with sim_process(seed=3, prioritise=False) as sim:
        assert sim.scheduling == "shared"
        assert os.sched_getscheduler(sim.pid) == os.SCHED_OTHER
        assert os.getpriority(os.PRIO_PROCESS, sim.pid) == ours


def test_refused_real_time_falls_back_to_nice_then_to_sharing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []

    def refuse(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    def renice(which: int, pid: int, prio: int) -> None:
        calls.append(("nice", prio))

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    monkeypatch.setattr(os, "setpriority", renice)
    assert simproc._schedule_first(12345) == "nice"
    assert calls == [("nice", os.getpriority(os.PRIO_PROCESS, 0) - PRIORITY)]
    monkeypatch.setattr(os, "setpriority", refuse)
    assert simproc._schedule_first(12345) == "shared"
