"""Shared pieces of the benchmarks: child servers, percentiles, process memory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

from galileo.config import GalileoConfig, parse_config
from galileo.inventory import AddressRecord, Inventory

__all__ = [
    "child_server",
    "farm_config",
    "loopback_inventory",
    "percentile",
    "pss_of",
    "stop_process",
    "target",
    "temp_runtime",
]


def target(path: str, op: str, limit: float, label: str) -> dict[str, Any]:
    """A goal a scenario is measured against: the value at dotted ``path`` in its result ``op`` ``limit``.

    Benchmarks report a miss; they never fail because of one.
    """
    assert op in ("<=", ">=")
    return {"path": path, "op": op, "limit": limit, "label": label}


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def loopback_inventory(n: int, net: str = "127.0.8") -> Inventory:
    """``n`` bindable loopback addresses: 127.0.8.1, 127.0.8.2, ... (spilling into .9, .10 ...)."""
    a, b, _ = (int(x) for x in (net + ".0").split(".")[1:])
    records = []
    for i in range(n):
        third, fourth = b + i // 250, i % 250 + 1
        records.append(AddressRecord(f"127.{a}.{third}.{fourth}", "lo", "ipv4", "manual", True))
    return Inventory(tuple(records))


def farm_config(runtime: Path, extra: str = "") -> GalileoConfig:
    return parse_config(f"farm: {{runtime_dir: '{runtime}'}}\n{extra}")


@contextlib.contextmanager
def temp_runtime() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="galileo-bench-") as tmp:
        yield Path(tmp)


@contextlib.asynccontextmanager
async def child_server(*args: str) -> AsyncIterator[tuple[int, int]]:
    """Run ``python -m ARGS`` which prints its port first; yields (port, pid)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    port = int(line.split()[-1].rsplit(b":", 1)[-1])
    try:
        yield port, proc.pid
    finally:
        await stop_process(proc)


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """SIGTERM ``proc`` (if still running), then SIGKILL it after ``grace`` seconds."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def pss_of(pids: Sequence[int]) -> int:
    """Proportional set size of these processes, summed (bytes)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += int(getattr(psutil.Process(pid).memory_full_info(), "pss", 0))
    return total


def own_pid() -> int:
    return os.getpid()
