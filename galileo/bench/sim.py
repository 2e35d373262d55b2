"""``galileo bench sim``: what ``galileo sim`` serves with every bundle executed, next to execution off.

The simulator runs in its own process; the load comes from two more (:mod:`galileo.bench.simload`:
one for quotes, one for bundles), so three processes share the machine and the bench's own loop
only waits. Rounds alternate ``execution`` on and off through ``/sim/control`` (the baseline:
accepted bundles land without running), so a change in the machine's load hits both alike.
Each round measures, for each setting:

* ``quotes``: Jupiter quotes, closed loop (every connection keeps ``depth`` outstanding);
* ``bundles``: Jito ``sendBundle``, closed loop, each a signed Jupiter route plus a tip that the
  VM runs (auction contention 0, so every accepted bundle is executed: the simulator's worst case);
* ``mixed``: bundles open loop at ``mixed_bundle_rate``/s while quotes run closed loop.

Quotes/s and bundles accepted/s are the load's own counts; executed and landed bundles are the
simulator's (``/sim/stats`` → ``chain``) over the same window; the summary is the median over
rounds (every round is in ``runs``). Each measurement records the CPU
the simulator and each load process spent per second of it, and the time the simulator spent
waiting for a CPU (runnable, not running): CPU plus waiting near 1.0 is a simulator that always
had work, so the simulator (or the share of the machine it was given) is the limit, not the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson
import psutil

from galileo.bench._util import stop_process, target
from galileo.bench.simload import LoadPlan, LoadResult
from galileo.bench.simproc import BenchError, SimProcess, sim_process

__all__ = ["FULL", "QUICK", "SimBenchPlan", "sim"]

QUOTE_IPS = ["127.44.0.1", "127.44.0.2", "127.44.0.3", "127.44.0.4"]
BUNDLE_IPS = ["127.44.1.1", "127.44.1.2"]
_READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class SimBenchPlan:
    """What one ``sim`` scenario runs."""

    rounds: int = 3
    seconds: float = 6.0  # per measurement, warm-up included
    warmup: float = 2.0  # past the first landings (two slots after the first sends): a steady state
    quote_connections: int = 8
    bundle_connections: int = 8
    depth: int = 4
    mixed_bundle_rate: float = 220.0  # 10 % over the 200/s the target asks, so window edges do not decide it


FULL = SimBenchPlan()
QUICK = SimBenchPlan(rounds=1, seconds=2.4, warmup=1.2)  # a loaded host (the test suite beside it) lands later


class _LoadProcess:
    """One ``python -m galileo.bench.simload`` child: plans in, results out, one line each."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), _READY_TIMEOUT + 60)
        if not line:
            raise BenchError(f"the load process exited with {await self.proc.wait()}")
        answer: dict[str, Any] = orjson.loads(line)
        return answer

    async def prepare(self, plan: LoadPlan) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(msgspec.json.encode(plan) + b"\n")
        ready = await asyncio.wait_for(self._read(), _READY_TIMEOUT)
        if not ready.get("ready"):
            raise BenchError(f"the {plan.kind} load could not get ready: {ready.get('error')}")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")

    async def result(self) -> LoadResult:
        return msgspec.convert(await self._read(), LoadResult)


@contextlib.asynccontextmanager
async def _load_processes(n: int) -> AsyncIterator[list[_LoadProcess]]:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "galileo.bench.simload",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    try:
        yield [_LoadProcess(p) for p in procs]
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
            await stop_process(p, grace=5.0)


def _cpu(pid: int) -> float:
    """CPU seconds of the process's live threads, to the nanosecond (Linux schedstat): the quick
    variant's sub-second windows are below the 10 ms ticks psutil counts in (a window of cheap
    bundles read 0). Without /proc, psutil's ticks."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    total = 0
    for task in tasks.iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # a thread that ended meanwhile
    return total / 1e9


def _queued(pid: int) -> float:
    """Seconds the process's main thread has spent runnable but waiting for a CPU (Linux schedstat)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def _chain(stats: dict[str, Any]) -> tuple[int, int, Counter[str]]:
    chain = stats["chain"]
    landed = sum(int(n) for n in chain["landed"].values())
    return int(chain["executed_transactions"]), landed, Counter(chain["failures_by_error"])


async def _measure(sim: SimProcess, jobs: list[tuple[_LoadProcess, LoadPlan]], plan: SimBenchPlan) -> dict[str, Any]:
    """Run ``jobs`` together; what the load counted and what the simulator did in the window."""
    for proc, load in jobs:
        await proc.prepare(load)
    for proc, _ in jobs:
        proc.go()
    await asyncio.sleep(plan.warmup)
    stats0, cpu0, queued0, t0 = await sim.stats(), _cpu(sim.pid), _queued(sim.pid), time.monotonic()
    await asyncio.sleep(plan.seconds - plan.warmup)
    stats1, cpu1, queued1, t1 = await sim.stats(), _cpu(sim.pid), _queued(sim.pid), time.monotonic()
    results = [await proc.result() for proc, _ in jobs]
    window = t1 - t0
    executed0, landed0, errors0 = _chain(stats0)
    executed1, landed1, errors1 = _chain(stats1)
    sim_cpu = cpu1 - cpu0
    out: dict[str, Any] = {
        "window_s": round(window, 3),
        "sim_cpu_per_s": round(sim_cpu / window, 3),
        # Runnable but not running: near 1 with the CPU is a simulator given only part of a core.
        "sim_queued_per_s": round((queued1 - queued0) / window, 3),
        "executed_per_s": round((executed1 - executed0) / window, 1),
        "landed_per_s": round((landed1 - landed0) / window, 1),
        "failures": dict(errors1 - errors0),
    }
    answered = 0
    for r in results:
        side = out.setdefault(r.kind, {})
        ok = r.answered.get("200", 0)
        answered += sum(r.answered.values())
        side["ok_per_s"] = round(ok / r.window_s, 1) if r.window_s else 0.0
        side["refused"] = sum(n for status, n in r.answered.items() if status != "200")
        side["load_cpu_per_s"] = round(r.cpu_s / r.window_s, 3) if r.window_s else 0.0
        if r.late_s:
            side["late_s"] = r.late_s
    # The simulator's CPU per request: on a shared machine, what one free core would serve.
    out["sim_cpu_us_per_request"] = round(sim_cpu / answered * 1e6, 1) if answered else float("nan")
    return out


def _median(rows: list[dict[str, Any]], *path: str, digits: int = 1) -> float:
    """The median over rounds: other tenants of a shared machine only ever slow a round down."""
    values = []
    for row in rows:
        value: Any = row
        for key in path:
            value = value.get(key, {}) if isinstance(value, dict) else {}
        if isinstance(value, int | float):
            values.append(float(value))
    return round(statistics.median(values), digits) if values else float("nan")


def _per_core(us: float) -> float:
    return round(1e6 / us, 0) if math.isfinite(us) and us > 0 else float("nan")


def _summary(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    q, b, m = rows["quotes"], rows["bundles"], rows["mixed"]
    return {
        "quotes_per_s": _median(q, "quote", "ok_per_s"),
        "bundles_accepted_per_s": _median(b, "bundle", "ok_per_s"),
        "bundles_executed_per_s": _median(b, "executed_per_s"),
        "bundles_landed_per_s": _median(b, "landed_per_s"),
        "mixed_quotes_per_s": _median(m, "quote", "ok_per_s"),
        "mixed_bundles_accepted_per_s": _median(m, "bundle", "ok_per_s"),
        "mixed_bundles_executed_per_s": _median(m, "executed_per_s"),
        "sim_cpu_per_s": {k: _median(v, "sim_cpu_per_s", digits=3) for k, v in rows.items()},
        "sim_queued_per_s": {k: _median(v, "sim_queued_per_s", digits=3) for k, v in rows.items()},
        "sim_cpu_us_per_quote": _median(q, "sim_cpu_us_per_request"),
        "sim_cpu_us_per_bundle": _median(b, "sim_cpu_us_per_request"),
        # What one core of the simulator's own would serve: on a shared machine it gets less.
        "quotes_per_core_s": _per_core(_median(q, "sim_cpu_us_per_request")),
        "bundles_per_core_s": _per_core(_median(b, "sim_cpu_us_per_request")),
        "load_cpu_per_s": {
            "quotes": _median(q, "quote", "load_cpu_per_s", digits=3),
            "bundles": _median(b, "bundle", "load_cpu_per_s", digits=3),
        },
        "failures": dict(sum((Counter(r["failures"]) for r in b + m), Counter())),
        "runs": rows,
    }


async def sim(quick: bool = False, plan: SimBenchPlan | None = None) -> dict[str, Any]:
    plan = plan or (QUICK if quick else FULL)
    by_setting: dict[str, dict[str, list[dict[str, Any]]]] = {
        "on": {"quotes": [], "bundles": [], "mixed": []},
        "off": {"quotes": [], "bundles": [], "mixed": []},
    }
    async with sim_process(seed=13, prioritise=False) as sim_proc, _load_processes(2) as (quoter, bundler):
        await sim_proc.control({"auction_contention": 0.0})
        for _ in range(plan.rounds):
            for setting in ("on", "off"):
                execution = setting == "on"
                await sim_proc.control({"execution": execution})
                quotes = LoadPlan(
                    url=sim_proc.url,
                    kind="quote",
                    seconds=plan.seconds,
                    warmup=plan.warmup,
                    source_ips=QUOTE_IPS,
                    connections=plan.quote_connections,
                    depth=plan.depth,
                    execution=execution,
                )
                bundles = msgspec.structs.replace(
                    quotes, kind="bundle", source_ips=BUNDLE_IPS, connections=plan.bundle_connections
                )
                paced = msgspec.structs.replace(bundles, rate=plan.mixed_bundle_rate, depth=1)
                rows = by_setting[setting]
                rows["quotes"].append(await _measure(sim_proc, [(quoter, quotes)], plan))
                rows["bundles"].append(await _measure(sim_proc, [(bundler, bundles)], plan))
                rows["mixed"].append(await _measure(sim_proc, [(quoter, quotes), (bundler, paced)], plan))
        rss = psutil.Process(sim_proc.pid).memory_info().rss
    on, off = _summary(by_setting["on"]), _summary(by_setting["off"])
    return {
        "rounds": plan.rounds,
        "seconds": plan.seconds,
        "warmup_s": plan.warmup,
        "mixed_bundle_rate": plan.mixed_bundle_rate,
        "execution_on": on,
        "execution_off": off,
        "sim_rss_mb": round(rss / 2**20, 1),
        "targets": [
            target("execution_on.quotes_per_s", ">=", 2000, "(13) sim, execution on: quotes/s"),
            target("execution_on.bundles_executed_per_s", ">=", 200, "(13) sim: executed bundles/s"),
            target("execution_on.mixed_quotes_per_s", ">=", 2000, "(13) sim: quotes/s while 200 bundles/s execute"),
            target(
                "execution_on.mixed_bundles_executed_per_s", ">=", 200, "(13) sim: bundles/s executed beside quotes"
            ),
        ],
    }
