"""Running scenarios and the report they make: the machine, how to reproduce, results, targets.

The JSON report (``schema: galileo-bench/1``)::

    {"schema", "machine": {cpu_count, cpu_model, memory_gb, python, kernel, platform, date,
                           loadavg_start, loadavg_end},
     "reproduce": {command, quick, scenarios, galileo, git},
     "scenarios": {NAME: {...its numbers..., "elapsed_s": wall time, "targets": [...]}
                         | {"error": "...", "traceback": "...", "elapsed_s": ...}},
     "targets": [{scenario, label, path, op, limit, value, verdict: PASS|MISS|N/A}],
     "summary": {pass, miss, na, errors}}

A target's ``path`` is dotted into its scenario's numbers. Numbers that are not finite are
written as null. Misses are reported, never raised: a benchmark is not a test.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import subprocess
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from galileo import __version__
from galileo.bench.blind import blind
from galileo.bench.farm import overhead, saturation, scale
from galileo.bench.landing import landing
from galileo.bench.pipeline import pipeline
from galileo.bench.ratelimit import ratelimit
from galileo.bench.sim import sim
from galileo.bench.titan import titan

__all__ = ["SCENARIOS", "SCHEMA", "evaluate", "machine", "run_bench", "sanitize"]

SCHEMA = "galileo-bench/1"

# ``fn(quick, **options)``: the options a scenario takes are its own (``pipeline(quick, cells=...)``)
Scenario = Callable[..., Awaitable[dict[str, Any]]]

SCENARIOS: dict[str, tuple[Scenario, str]] = {
    "ratelimit": (ratelimit, "N IPs against a per-IP rate limit: learned vs told vs the original bot's policy"),
    "overhead": (overhead, "what the farm adds to one job: submit -> outcome minus upstream time"),
    "saturation": (saturation, "farm jobs/s vs a single-process aiohttp client over the same IPs"),
    "scale": (scale, "ready time and PSS per worker at 8..128 workers; idle coordinator CPU"),
    "blind": (blind, "the blind strategy end to end over 8 IPs, landing into the simulator (and 4 at 150 ms)"),
    "landing": (landing, "Jito sends accepted per second vs N x regions x the per-(IP, region) limit"),
    "sim": (sim, "the simulator's capacity: quotes/s and executed bundles/s, execution on vs off"),
    "titan": (titan, "multi-leg with a Titan buy leg, one token, the simulator's real Titan limits: quote ages"),
    "pipeline": (pipeline, "the round-trip engine under each limiter shape x latency x N: learned, told, a baseline"),
}

Progress = Callable[[str, str, float], None]  # scenario, "start" | "done" | "error", seconds


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    return platform.processor() or "unknown"


def _git() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def lookup(data: Any, path: str) -> Any:
    """The value at dotted ``path`` (``runs.learned.4.ok_ratio``), or None."""
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def evaluate(name: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of one scenario's result, with its measured value and PASS / MISS / N/A."""
    verdicts = []
    for t in result.get("targets", []):
        value = lookup(result, t["path"])
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            verdict = "N/A"
        elif t["op"] == "<=":
            verdict = "PASS" if value <= t["limit"] else "MISS"
        else:
            verdict = "PASS" if value >= t["limit"] else "MISS"
        verdicts.append({"scenario": name, **t, "value": value, "verdict": verdict})
    return verdicts


def sanitize(data: Any) -> Any:
    """JSON-safe: tuples to lists, NaN and infinities to None."""
    if isinstance(data, dict):
        return {str(k): sanitize(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [sanitize(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


async def run_bench(
    names: list[str],
    *,
    quick: bool,
    command: str,
    progress: Progress | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``names`` in order, one at a time; a scenario that raises is recorded, not fatal.
    ``options``: keyword arguments for a scenario by name (``{"pipeline": {"cells": [...]}}``)."""
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "machine": machine(),
        "reproduce": {
            "command": command,
            "quick": quick,
            "scenarios": names,
            "galileo": __version__,
            "git": _git(),
        },
        "scenarios": {},
        "targets": [],
    }
    for name in names:
        fn, _ = SCENARIOS[name]
        if progress:
            progress(name, "start", 0.0)
        t0 = time.monotonic()
        try:
            result = await fn(quick, **(options or {}).get(name, {}))
        except Exception as exc:
            elapsed = time.monotonic() - t0
            report["scenarios"][name] = {
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=8),
                "elapsed_s": round(elapsed, 1),
            }
            if progress:
                progress(name, "error", elapsed)
            continue
        elapsed = time.monotonic() - t0
        result["elapsed_s"] = round(elapsed, 1)
        report["scenarios"][name] = result
        report["targets"] += evaluate(name, result)
        if progress:
            progress(name, "done", elapsed)
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    verdicts = [t["verdict"] for t in report["targets"]]
    report["summary"] = {
        "pass": verdicts.count("PASS"),
        "miss": verdicts.count("MISS"),
        "na": verdicts.count("N/A"),
        "errors": sorted(n for n, r in report["scenarios"].items() if "error" in r),
    }
    sanitized: dict[str, Any] = sanitize(report)
    return sanitized
