"""Rate-limited scaling: N IPs against a simulator that allows R requests/s per source IP.

For each N and each policy, a fresh farm on its own loopback range keeps the simulator's
Jupiter quote endpoint saturated (about ``queue_seconds`` of ideal throughput always queued)
for ``seconds``; after ``warmup`` it counts successes and 429s over the rest, twice: from the
farm's attempt outcomes and from the simulator's own ``/sim/stats``. The headline numbers are
the simulator's: successes/s over N*R and the share of answers that were 429.

Policies: ``learned`` (FarmPolicy learning R from 429s), ``told`` (FarmPolicy with
``known_rates={"jupiter": R}``) and ``original`` (the original bot's allocator, with the
in-flight limit of 2 from its shipped yaml).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker.jobs import JupiterQuote
from broker.protocol import Outcome
from broker.types import Job, JobSpec, WorkerInfo
from galileo.bench._util import farm_config, loopback_inventory, target, temp_runtime
from galileo.bench.original import OriginalBotPolicy
from galileo.bench.simproc import SimProcess, sim_process
from galileo.farm.coordinator import Farm
from galileo.policy.allocator import FarmPolicy

__all__ = ["FULL", "POLICIES", "QUICK", "RateLimitPlan", "ratelimit"]

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
UPSTREAM = "jupiter"
FAR_ABOVE = 1.1  # "far above the original": at least 10 % more successes/s ...
FAR_BELOW = 0.1  # ... and at most a tenth of its share of 429s
NET = 42  # runs use 127.42.K.1, 127.42.K.2, ...: K counts runs, so no two share a token bucket


@dataclass(frozen=True)
class RateLimitPlan:
    """What one ``ratelimit`` scenario runs."""

    rate: float = 20.0  # R: requests/s the simulator allows each source IP (burst: 1 s worth)
    ips: tuple[int, ...] = (1, 2, 4, 8, 16)
    seconds: float = 20.0  # per run, warm-up included
    warmup: float = 5.0
    queue_seconds: float = 2.0  # jobs kept outstanding, in seconds of the ideal N*R throughput
    inflight_limit: int = 2  # the original policy's per-IP semaphore (its shipped yaml)


FULL = RateLimitPlan()
QUICK = RateLimitPlan(ips=(4,), seconds=3.5, warmup=1.5, queue_seconds=1.0)

POLICIES: dict[str, Callable[[RateLimitPlan], FarmPolicy]] = {
    "learned": lambda plan: FarmPolicy(),
    "told": lambda plan: FarmPolicy(known_rates={UPSTREAM: plan.rate}),
    "original": lambda plan: OriginalBotPolicy(inflight_limit=plan.inflight_limit),
}


class AttemptTally:
    """The farm's side of the count: every attempt that reached a worker, by result and IP."""

    def __init__(self) -> None:
        self.results: Counter[str] = Counter()
        self.ok_by_ip: Counter[str] = Counter()

    def on_attempt(self, job: Job, worker: WorkerInfo, outcome: Outcome) -> None:
        self.results[outcome.result] += 1
        if outcome.result == "ok":
            self.ok_by_ip[worker.ip] += 1

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        return Counter(self.results), Counter(self.ok_by_ip)


def _sim_counts(stats: dict[str, Any], ips: list[str]) -> Counter[str]:
    """200s, 429s and everything else the simulator answered these IPs' Jupiter requests with."""
    by_ip = stats["requests"]["by_ip_service"]
    out: Counter[str] = Counter()
    for ip in ips:
        for status, n in by_ip.get(ip, {}).get(UPSTREAM, {}).items():
            out["ok" if status == "200" else "rate_limited" if status == "429" else "other"] += n
    return out


def _sim_ok_per_second(stats: dict[str, Any], ips: list[str], wall0: float, wall1: float) -> list[int]:
    """Successes in each whole wall-clock second inside [wall0, wall1], summed over ``ips``."""
    first, last = math.ceil(wall0), math.floor(wall1) - 1
    per_ip = stats["ok_per_second"]
    return [sum(per_ip.get(ip, {}).get(UPSTREAM, {}).get(str(s), 0) for ip in ips) for s in range(first, last + 1)]


def _rates(ok: int, limited: int, other: int, window: float, ideal: float) -> dict[str, Any]:
    answered = ok + limited + other
    return {
        "ok": ok,
        "rate_limited": limited,
        "other": other,
        "ok_per_s": round(ok / window, 2),
        "ok_ratio": round(ok / window / ideal, 4),
        "share_429": round(limited / answered, 5) if answered else 0.0,
    }


def _policy_state(policy: FarmPolicy) -> dict[str, Any]:
    if isinstance(policy, OriginalBotPolicy):
        return {"cooldowns": dict(policy.started), "cleared_by_success": policy.cleared}
    pacers = [p for (_, upstream), p in policy.pacing.rates().items() if upstream == UPSTREAM]
    estimates = [p.learner.estimate for p in pacers if p.learner.estimate is not None]
    finite = [p.rate for p in pacers if math.isfinite(p.rate)]
    return {
        "phases": dict(Counter(p.phase for p in pacers)),
        "mean_pace_per_s": round(sum(finite) / len(finite), 2) if finite else None,
        "mean_estimate_per_s": round(sum(estimates) / len(estimates), 2) if estimates else None,
    }


@dataclass
class _Window:
    """What both sides counted at the start and end of the measured window, and after the drain."""

    stats0: dict[str, Any]
    stats1: dict[str, Any]
    final: dict[str, Any]
    farm0: Counter[str]
    farm1: Counter[str]
    ip0: Counter[str]
    ip1: Counter[str]
    mono: tuple[float, float]
    wall: tuple[float, float]
    finals: Counter[str]


async def _measure(sim: SimProcess, farm: Farm, tally: AttemptTally, n: int, plan: RateLimitPlan) -> _Window:
    """Keep the farm saturated; snapshot both counts after the warm-up and at the end."""
    spec = JobSpec(
        JupiterQuote(base_url=f"{sim.url}/jupiter/swap/v1", input_mint=SOL, output_mint=USDC, amount=10**9),
        upstream=UPSTREAM,
        timeout=10.0,
    )
    stop = asyncio.Event()
    finals: Counter[str] = Counter()

    async def lane() -> None:
        while not stop.is_set():
            finals[(await farm.submit(spec)).result] += 1
            await asyncio.sleep(0)  # a stopped farm answers at once: never spin without yielding

    lanes: list[asyncio.Task[None]] = []
    try:
        async with farm:
            if not await farm.wait_ready(timeout=30):
                raise RuntimeError(f"{n} workers were not ready within 30 s")
            lanes = [asyncio.create_task(lane()) for _ in range(max(32, math.ceil(plan.queue_seconds * n * plan.rate)))]
            await asyncio.sleep(plan.warmup)
            stats0 = await sim.stats()
            farm0, ip0 = tally.snapshot()
            mono0, wall0 = time.monotonic(), time.time()
            await asyncio.sleep(plan.seconds - plan.warmup)
            stats1 = await sim.stats()
            farm1, ip1 = tally.snapshot()
            mono1, wall1 = time.monotonic(), time.time()
            stop.set()
    finally:
        stop.set()
        await asyncio.gather(*lanes)  # the farm is stopped: queued jobs ended "cancelled"
    final = await sim.stats()
    return _Window(stats0, stats1, final, farm0, farm1, ip0, ip1, (mono0, mono1), (wall0, wall1), finals)


async def _run(sim: SimProcess, policy: FarmPolicy, n: int, net: str, plan: RateLimitPlan) -> dict[str, Any]:
    inventory = loopback_inventory(n, net)
    ips = [r.ip for r in inventory.usable]
    ideal = n * plan.rate
    await sim.reset_stats()
    tally = AttemptTally()
    with temp_runtime() as rt:
        farm = Farm(farm_config(rt), runtime_dir=rt, inventory=inventory, policy=policy, log_level="warning")
        farm.hub.attempt_hooks.append(tally.on_attempt)
        w = await _measure(sim, farm, tally, n, plan)
    window = w.mono[1] - w.mono[0]
    sim_w = _sim_counts(w.stats1, ips) - _sim_counts(w.stats0, ips)
    farm_w = w.farm1 - w.farm0
    farm_other = sum(v for k, v in farm_w.items() if k not in ("ok", "rate_limited"))
    sim_total, farm_total = _sim_counts(w.final, ips), tally.results
    series = _sim_ok_per_second(w.stats1, ips, *w.wall)
    steady = [x / ideal for x in series] or [float("nan")]
    per_ip = [(w.ip1[ip] - w.ip0[ip]) / window / plan.rate for ip in ips]
    sim_rates = _rates(sim_w["ok"], sim_w["rate_limited"], sim_w["other"], window, ideal)
    farm_rates = _rates(farm_w["ok"], farm_w["rate_limited"], farm_other, window, ideal)
    # Whole run, farm drained: every request the simulator answered came back as an attempt outcome.
    exact = sim_total["ok"] == farm_total["ok"] and sim_total["rate_limited"] == farm_total["rate_limited"]
    slack = max(2 * n * plan.inflight_limit, 0.01 * (sim_w["ok"] + sim_w["rate_limited"]))
    close = all(abs(sim_w[k] - farm_w[k]) <= slack for k in ("ok", "rate_limited"))
    return {
        "ips": n,
        "addresses": f"{ips[0]}..{ips[-1]}",
        "ideal_per_s": ideal,
        "window_s": round(window, 3),
        "ok_per_s": sim_rates["ok_per_s"],
        "ok_ratio": sim_rates["ok_ratio"],
        "share_429": sim_rates["share_429"],
        "sim": {**sim_rates, "ok_per_second": series},
        # Second by second, over N*R: how bursty the successes were (1.0 and 1.0 is perfectly steady).
        "second_ok_ratio_min": round(min(steady), 3),
        "second_ok_ratio_max": round(max(steady), 3),
        "farm": farm_rates,
        "per_ip_ok_ratio_min": round(min(per_ip), 4),
        "per_ip_ok_ratio_max": round(max(per_ip), 4),
        "totals": {
            "sim_ok": sim_total["ok"],
            "farm_ok": farm_total["ok"],
            "sim_429": sim_total["rate_limited"],
            "farm_429": farm_total["rate_limited"],
            "sim_other": sim_total["other"],
            "finals": dict(w.finals),
        },
        "agree": exact and close,
        "policy": _policy_state(policy),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def _versus_original(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each of our policies over the original, per N and at the worst N: ok/s up, 429 share down."""
    out: dict[str, Any] = {"by_n": {}}
    for name in ("learned", "told"):
        oks: list[float] = []
        shares: list[float] = []
        for n, ours in runs[name].items():
            theirs = runs["original"][n]
            ok = _ratio(ours["ok_ratio"], theirs["ok_ratio"])
            share = _ratio(ours["share_429"], theirs["share_429"])
            out["by_n"].setdefault(n, {}).update({f"{name}_ok": ok, f"{name}_429": share})
            oks += [ok] if ok is not None else []
            shares += [share] if share is not None else []
        out[f"{name}_ok_min"] = min(oks, default=None)
        out[f"{name}_429_max"] = max(shares, default=None)
    return out


async def ratelimit(quick: bool = False, plan: RateLimitPlan | None = None) -> dict[str, Any]:
    """Every policy at every N, interleaved (N=1: learned, told, original; N=2: ...) so load drifts hit all alike."""
    plan = plan or (QUICK if quick else FULL)
    assert max(plan.ips) <= 250, "one /24 per run"
    runs: dict[str, dict[str, Any]] = {name: {} for name in POLICIES}
    async with sim_process(rate_limit=plan.rate, seed=1) as sim:
        k = 0
        for n in plan.ips:
            for name, make in POLICIES.items():
                runs[name][str(n)] = await _run(sim, make(plan), n, f"127.{NET}.{k}", plan)
                k += 1
    targets = []
    for n in plan.ips:
        targets += [
            target(f"runs.learned.{n}.ok_ratio", ">=", 0.95, f"(1a) learned, {n} IP: ok/s ÷ N·R"),
            target(f"runs.learned.{n}.share_429", "<=", 0.01, f"(1a) learned, {n} IP: share of 429"),
            target(f"runs.told.{n}.ok_ratio", ">=", 0.98, f"(1b) told, {n} IP: ok/s ÷ N·R"),
            target(f"runs.told.{n}.share_429", "<=", 0.001, f"(1b) told, {n} IP: share of 429"),
        ]
    targets += [
        target("vs_original.learned_ok_min", ">=", FAR_ABOVE, "(1a) vs (1c): ok/s ratio, worst N"),
        target("vs_original.told_ok_min", ">=", FAR_ABOVE, "(1b) vs (1c): ok/s ratio, worst N"),
        target("vs_original.learned_429_max", "<=", FAR_BELOW, "(1a) vs (1c): 429 share ratio, worst N"),
        target("vs_original.told_429_max", "<=", FAR_BELOW, "(1b) vs (1c): 429 share ratio, worst N"),
    ]
    return {
        "rate_per_ip": plan.rate,
        "seconds": plan.seconds,
        "warmup_s": plan.warmup,
        "ips": list(plan.ips),
        "runs": runs,
        "agree": all(r["agree"] for by_n in runs.values() for r in by_n.values()),
        "vs_original": _versus_original(runs),
        "targets": targets,
    }
