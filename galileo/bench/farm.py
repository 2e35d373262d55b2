"""Benchmarks of the farm itself: dispatch overhead, saturation, and cost as IPs grow.

* ``overhead``: one job at a time against a zero-latency server; per job, submit -> outcome
  minus the upstream time the worker measured is what the farm adds (two ZeroMQ hops, the
  policy, encode/decode).
* ``saturation``: jobs/s through the farm with many in flight, next to a single-process aiohttp
  client making the same requests over the same bound addresses, in the same run.
* ``scale``: time until every worker is registered, PSS per worker, and the coordinator's CPU
  while 128 workers sit idle (heartbeats only).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import psutil

from broker.jobs import HttpRequest
from broker.types import JobSpec
from galileo.bench._util import child_server, farm_config, loopback_inventory, percentile, pss_of, temp_runtime
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
        "targets": {"overhead_p50_us": ["<=", 300], "overhead_p99_us": ["<=", 2000]},
    }


async def _drive(submit: Any, seconds: float, concurrency: int) -> tuple[int, int]:
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


async def _baseline(url: str, ips: list[str], seconds: float, concurrency: int) -> float:
    from workers.session import BoundSession

    sessions = [BoundSession(ip) for ip in ips]
    turn = [0]

    async def one() -> bool:
        turn[0] += 1
        s = sessions[turn[0] % len(sessions)].session
        async with s.get(url) as resp:
            await resp.read()
            return resp.status == 200

    try:
        await _drive(one, 1.0, concurrency)  # warm-up
        ok, _ = await _drive(one, seconds, concurrency)
    finally:
        for s in sessions:
            await s.close()
    return ok / seconds


async def saturation(quick: bool = False, n_ips: int = 4) -> dict[str, Any]:
    seconds = 3.0 if quick else 8.0
    concurrency = 64 * n_ips
    async with child_server("galileo.bench.echo") as (port, _):
        url = f"http://127.0.0.1:{port}/quote"
        with temp_runtime() as rt:
            farm = _farm(rt, n_ips)
            ips = [r.ip for r in loopback_inventory(n_ips).usable]
            async with farm:
                await farm.wait_ready()
                spec = JobSpec(HttpRequest(url=url), upstream="echo")

                async def one() -> bool:
                    return (await farm.submit(spec)).ok

                await _drive(one, 1.0, concurrency)
                ok, failed = await _drive(one, seconds, concurrency)
        farm_rate = ok / seconds
        base_rate = await _baseline(url, ips, seconds, concurrency)
    return {
        "ips": n_ips,
        "concurrency": concurrency,
        "farm_jobs_per_s": round(farm_rate),
        "farm_failed": failed,
        "single_process_req_per_s": round(base_rate),
        "ratio": round(farm_rate / base_rate, 3) if base_rate else None,
        "targets": {"ratio": [">=", 0.8]},
    }


def _cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


async def scale(quick: bool = False) -> dict[str, Any]:
    counts = (8, 64) if quick else (8, 32, 64, 128)
    rows: dict[str, Any] = {}
    for n in counts:
        with temp_runtime() as rt:
            t0 = time.perf_counter()
            farm = _farm(rt, n)
            await farm.start()
            try:
                ready = await farm.wait_ready(timeout=60)
                elapsed = time.perf_counter() - t0
                await asyncio.sleep(1.0)  # let every worker settle into its steady state
                worker_pids = [w.pid for w in farm.hub.workers.values()]
                fs_pid = farm.supervisor.forkserver.proc.pid if farm.supervisor.forkserver.proc else None
                row: dict[str, Any] = {
                    "workers": n,
                    "ready": ready,
                    "ready_s": round(elapsed, 3),
                    "pss_per_worker_mb": round(pss_of(worker_pids) / max(1, len(worker_pids)) / 2**20, 2),
                    "pss_coordinator_mb": round(pss_of([os.getpid()]) / 2**20, 1),
                    "pss_forkserver_mb": round(pss_of([fs_pid]) / 2**20, 1) if fs_pid else None,
                }
                if n == max(counts):
                    c0, w0 = _cpu(os.getpid()), time.monotonic()
                    await asyncio.sleep(3.0 if quick else 10.0)
                    row["idle_coordinator_cpu_pct"] = round(100 * (_cpu(os.getpid()) - c0) / (time.monotonic() - w0), 2)
                rows[str(n)] = row
            finally:
                await farm.stop()
    targets: dict[str, Any] = {"64.ready_s": ["<=", 2.0], "64.pss_per_worker_mb": ["<=", 8.0]}
    if "128" in rows:
        targets["128.ready_s"] = ["<=", 4.0]
        targets["128.idle_coordinator_cpu_pct"] = ["<=", 2.0]
    return {"by_workers": rows, "targets": targets}
