"""Benchmarks of the farm itself: dispatch overhead, saturation, and cost as IPs grow.

* ``overhead``: one job at a time against a zero-latency server; per job, submit -> outcome
  minus the upstream time the worker measured is what the farm adds (two ZeroMQ hops, the
  policy, encode/decode).
* ``saturation``: jobs/s through the farm with many in flight, next to a single-process aiohttp
  client making the same requests over the same bound addresses, in alternating rounds of
  the same run; with the CPU each spends per request.
* ``scale``: time until every worker is registered, PSS per worker, and the coordinator's CPU
  while 128 workers sit idle (heartbeats only).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psutil

from broker.jobs import HttpRequest
from broker.types import JobSpec
from galileo.bench._util import (
    child_server,
    farm_config,
    loopback_inventory,
    percentile,
    pss_of,
    target,
    temp_runtime,
)
from galileo.farm.coordinator import Farm

__all__ = ["overhead", "saturation", "scale"]


def _farm(runtime: Any, n: int, capacity: int = 256) -> Farm:
    return Farm(
        farm_config(runtime),
        runtime_dir=runtime,
        inventory=loopback_inventory(n),
        capacity=capacity,
        log_level="warning",
    )


async def overhead(quick: bool = False) -> dict[str, Any]:
    jobs = 500 if quick else 3000
    async with child_server("galileo.bench.echo") as (port, _):
        url = f"http://127.0.0.1:{port}/quote"
        with temp_runtime() as rt:
            async with _farm(rt, 2) as farm:
                await farm.wait_ready()
                for _ in range(200):  # warm the connections and the code paths
                    await farm.run(JobSpec(HttpRequest(url=url), upstream="echo"))
                added: list[float] = []
                upstream: list[float] = []
                for _ in range(jobs):
                    out = await farm.run(JobSpec(HttpRequest(url=url), upstream="echo"))
                    if out.ok:
                        added.append((out.total - out.latency) * 1e6)
                        upstream.append(out.latency * 1e6)
    return {
        "jobs": len(added),
        "overhead_p50_us": round(percentile(added, 0.5), 1),
        "overhead_p99_us": round(percentile(added, 0.99), 1),
        "upstream_p50_us": round(percentile(upstream, 0.5), 1),
        "targets": [
            target("overhead_p50_us", "<=", 300, "(2) overhead p50, µs"),
            target("overhead_p99_us", "<=", 2000, "(2) overhead p99, µs"),
        ],
    }


async def _drive(submit: Callable[[], Awaitable[bool]], seconds: float, concurrency: int) -> tuple[int, int]:
    """Keep ``concurrency`` requests in flight for ``seconds``; (ok, failed)."""
    stop = time.monotonic() + seconds
    ok = failed = 0

    async def lane() -> None:
        nonlocal ok, failed
        while time.monotonic() < stop:
            if await submit():
                ok += 1
            else:
                failed += 1

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return ok, failed


@dataclass
class _Side:
    """One side of the saturation comparison, summed over interleaved rounds."""

    submit: Callable[[], Awaitable[bool]]
    pids: list[int]  # its processes; the first is this one
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    own_cpu: float = 0.0
    echo_cpu: float = 0.0

    async def round(self, seconds: float, concurrency: int, echo_pid: int) -> None:
        cpu0, own0, echo0, t0 = _cpu_sum(self.pids), _cpu(self.pids[0]), _cpu(echo_pid), time.monotonic()
        ok, failed = await _drive(self.submit, seconds, concurrency)
        self.seconds += time.monotonic() - t0
        self.cpu += _cpu_sum(self.pids) - cpu0
        self.own_cpu += _cpu(self.pids[0]) - own0
        self.echo_cpu += _cpu(echo_pid) - echo0
        self.ok += ok
        self.failed += failed

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def _per(cpu_seconds: float, n: int) -> float:
    return round(cpu_seconds / n * 1e6, 1) if n else float("nan")


async def saturation(quick: bool = False, n_ips: int = 4) -> dict[str, Any]:
    """Farm and single-process client in alternating rounds, so a change in load hits both alike."""
    from workers.session import BoundSession

    rounds, seconds, warm = (1, 1.5, 0.5) if quick else (4, 2.0, 1.0)
    concurrency = 64 * n_ips
    async with child_server("galileo.bench.echo") as (port, echo_pid):
        url = f"http://127.0.0.1:{port}/quote"
        with temp_runtime() as rt:
            farm = _farm(rt, n_ips)
            ips = [r.ip for r in loopback_inventory(n_ips).usable]
            sessions = [BoundSession(ip) for ip in ips]
            turn = [0]
            spec = JobSpec(HttpRequest(url=url), upstream="echo")

            async def via_farm() -> bool:
                return (await farm.submit(spec)).ok

            async def direct() -> bool:
                turn[0] += 1
                async with sessions[turn[0] % len(sessions)].session.get(url) as resp:
                    await resp.read()
                    return resp.status == 200

            try:
                async with farm:
                    await farm.wait_ready()
                    pids = [os.getpid(), *_worker_processes(farm)]
                    farm_side, client = _Side(via_farm, pids), _Side(direct, [os.getpid()])
                    for side in (farm_side, client):
                        await _drive(side.submit, warm, concurrency)
                    for _ in range(rounds):
                        await farm_side.round(seconds, concurrency, echo_pid)
                        await client.round(seconds, concurrency, echo_pid)
            finally:
                for session in sessions:
                    await session.close()
    return {
        "ips": n_ips,
        "concurrency": concurrency,
        "rounds": rounds,
        "farm_jobs_per_s": round(farm_side.rate),
        "farm_failed": farm_side.failed,
        "single_process_req_per_s": round(client.rate),
        "ratio": round(farm_side.rate / client.rate, 3) if client.rate else None,
        # CPU per request: on a machine with few cores, throughput is CPU over this.
        "farm_cpu_us_per_job": _per(farm_side.cpu, farm_side.ok),
        "farm_coordinator_cpu_us_per_job": _per(farm_side.own_cpu, farm_side.ok),
        "single_process_cpu_us_per_req": _per(client.cpu, client.ok),
        "echo_server_cpu_us_per_req": {
            "farm": _per(farm_side.echo_cpu, farm_side.ok),
            "single_process": _per(client.echo_cpu, client.ok),
        },
        "targets": [target("ratio", ">=", 0.8, "(2) saturation: farm ÷ single-process client")],
    }


def _worker_processes(farm: Farm) -> list[int]:
    """The pids of the farm's worker processes, each once: workers may share one (farm.ips_per_process)."""
    return sorted({w.pid for w in farm.hub.workers.values()})


def _cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def _cpu_sum(pids: list[int]) -> float:
    return sum(_cpu(pid) for pid in pids)


async def scale(quick: bool = False) -> dict[str, Any]:
    counts = (4, 16) if quick else (8, 32, 64, 128)
    rows: dict[str, Any] = {}
    for n in counts:
        with temp_runtime() as rt:
            t0 = time.perf_counter()
            farm = _farm(rt, n)
            await farm.start()
            try:
                ready = await farm.wait_ready(timeout=60)
                elapsed = time.perf_counter() - t0
                await asyncio.sleep(0.5 if quick else 1.0)  # let every worker settle into its steady state
                worker_pids = _worker_processes(farm)
                fs_pid = farm.supervisor.forkserver.proc.pid if farm.supervisor.forkserver.proc else None
                row: dict[str, Any] = {
                    "workers": n,
                    "ready": ready,
                    "ready_s": round(elapsed, 3),
                    "processes": len(worker_pids),
                    "pss_per_worker_mb": round(pss_of(worker_pids) / max(1, len(farm.hub.workers)) / 2**20, 2),
                    "pss_coordinator_mb": round(pss_of([os.getpid()]) / 2**20, 1),
                    "pss_forkserver_mb": round(pss_of([fs_pid]) / 2**20, 1) if fs_pid else None,
                }
                if n == max(counts):
                    # Idle means steady state: past the first heartbeats, pacing state and log lines of startup.
                    await asyncio.sleep(1.0 if quick else 3.0)
                    c0, w0 = _cpu(os.getpid()), time.monotonic()
                    await asyncio.sleep(2.0 if quick else 10.0)
                    row["idle_coordinator_cpu_pct"] = round(100 * (_cpu(os.getpid()) - c0) / (time.monotonic() - w0), 2)
                rows[str(n)] = row
            finally:
                await farm.stop()
    targets = []
    if "64" in rows:
        targets += [
            target("by_workers.64.pss_per_worker_mb", "<=", 8.0, "(3) PSS per worker at 64 workers, MB"),
            target("by_workers.64.ready_s", "<=", 2.0, "(3) 64 workers ready, s"),
        ]
    if "128" in rows:
        targets += [
            target("by_workers.128.ready_s", "<=", 4.0, "(3) 128 workers ready, s"),
            target("by_workers.128.idle_coordinator_cpu_pct", "<=", 2.0, "(3) idle coordinator, 128 workers, % CPU"),
        ]
    return {"by_workers": rows, "targets": targets}
