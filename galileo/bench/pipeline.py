"""The main job under the simulator's limiter zoo: ``galileo bench pipeline``.

Each cell is one limiter shape on the quote aggregator (Jupiter; Jupiter and DFlow for the
multi-leg engine), one latency added to every simulated service, and N source IPs. In each
cell three clients run one after another against the same simulator (limiters and counters
reset between them, each on addresses of its own):

* **learned**: the farm and the round-trip engine (blind: Jupiter both legs; or multi-leg:
  Jupiter buy, DFlow sell), landing live through 2 Jito regions; no rate configured for any
  upstream, so pacing learns every limit (a keyed limit is told apart by the API key the
  config sends, as a user's would);
* **told**: the same, with ``rate_limit_per_ip`` set to R (and Jito's to its rate); in a keyed
  cell ``rate_limit_per_key`` set to the key's budget B instead (every IP paced together at it);
* **baseline**: :mod:`galileo.bench.pipeline_baseline`, the client a user might write: one
  asyncio process, one bound aiohttp session per IP, a token bucket at the told R, sending the
  same buy and sell quotes (it does not land).

After a warm-up (long enough to learn the shape: seconds for a bucket, minutes for a 60 s
window; 10 s for told pacing and the baseline, which have nothing to learn, except told pacing
under a concurrency cap: it is told R = K / latency, and finds the cap from refusals as learned
pacing does, a refusal every several seconds at a told pace, so it gets the cap's warm-up) the
simulator's own counts are taken over the counted window: Jupiter (and DFlow)
ok/s over N·R (quotes and the swap-instructions of each opportunity: both spend the budget),
the share of 429s, penalty-box entries, and Jito sends accepted per second over
``min(offered, N × regions × R_jito)`` (offered: what the lander sent or shed). R is what the
limit allows one IP per second; for a concurrency cap of K it is K / latency (no limit binds
without latency); for a keyed limit the budget B is the key's, whatever N (R = B / N).

The simulator, the farm and the baseline share this machine's cores: each run reports the
CPU each used (percent of one core) over the counted window, so a cell bound by the
simulator's CPU is visible as such. The simulator is scheduled ahead of the clients where the OS
allows it (``simulator_scheduling`` in the report; see :mod:`galileo.bench.simproc`).
"""

from __future__ import annotations

import asyncio
import fnmatch
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from galileo.bench._util import stop_process, target, temp_runtime
from galileo.bench.simproc import SimProcess, sim_process
from galileo.config import GalileoConfig, parse_config
from galileo.farm.coordinator import Farm
from galileo.farm.heap import frozen_heap
from galileo.strategy.engine import RoundTripEngine, Shape
from galileo.tx import ephemeral_keypair, write_keypair

__all__ = ["FULL", "QUICK", "Limit", "PipelinePlan", "cell_name", "pipeline", "select"]

SOL = "So11111111111111111111111111111111111111112"
MINTS = (
    "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
    "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCE8BenwNYB",
    "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN",
)
SIZES = (500_000_000, 1_000_000_000, 2_000_000_000)  # what the blind config's exponential range of 3 plans
REGIONS = ("frankfurt", "ny")
KEY_ENV = "GALILEO_BENCH_API_KEY"
NET = 44  # runs use 127.44.K.1 ... 127.44.K.N: K counts runs, so no two share an address
POLICIES = ("learned", "told", "baseline")


@dataclass(frozen=True)
class Limit:
    """One limiter shape as the simulator takes it, and what it allows."""

    name: str
    spec: str
    rate: float | None  # R per IP (the key's budget B when ``keyed``); None: a concurrency cap (K / latency)
    warmup: float  # seconds before counting: learning this shape takes about that long
    counted: float
    keyed: bool = False
    cap: int = 0  # a concurrency cap's K

    def per_ip(self, n: int, latency_ms: int) -> float | None:
        """R for one IP in a cell, or None where the limit does not bind (a cap without latency)."""
        if self.rate is None:
            return self.cap / (latency_ms / 1000) if latency_ms else None
        return self.rate / n if self.keyed else self.rate

    def told(self, n: int, latency_ms: int) -> float | None:
        """What the told client is told: R per IP (``rate_limit_per_ip``), or a keyed limit's budget
        B (``rate_limit_per_key``)."""
        return self.rate if self.keyed else self.per_ip(n, latency_ms)


@dataclass(frozen=True)
class PipelinePlan:
    """What ``galileo bench pipeline`` runs: every limit x latency x N, plus extra cells."""

    limits: tuple[Limit, ...]
    latencies: tuple[int, ...] = (0, 50, 150, 300)
    ns: tuple[int, ...] = (4, 16)
    big: tuple[int, ...] = (64,)  # N run at ``big_latencies`` only (see the module docstring)
    big_latencies: tuple[int, ...] = (50, 300)
    extra: tuple[tuple[str, int, int, str], ...] = ()  # (limit name, latency, N, engine) beyond the grid
    engine: str = "blind"
    jito_rate: float = 5.0  # per (IP, region)
    told_warmup: float = 10.0  # told pacing and the baseline learn nothing (but a cap): a short warm-up
    limits_by_name: dict[str, Limit] = field(default_factory=dict)

    def cells(self) -> list[tuple[Limit, int, int, str]]:
        named = {lim.name: lim for lim in (*self.limits, *self.limits_by_name.values())}
        grid = [(lim, lat, n, self.engine) for n in self.ns for lim in self.limits for lat in self.latencies]
        grid += [(lim, lat, n, self.engine) for n in self.big for lim in self.limits for lat in self.big_latencies]
        return grid + [(named[name], lat, n, engine) for name, lat, n, engine in self.extra]


# Warm-ups: how long learning takes, so the counted window sees what learnt pacing holds, not how
# it got there: a bucket and a box measured with the farm and the engine at N = 16, 150 ms; windows
# as long as learning them takes in virtual time (tests/policy/limitsim.py, 16 IPs, 150 ms, 3 ms of
# arrival jitter: a 5 s fixed and a 10 s sliding window level off at 0.98-0.99 of N·R by 120 s, 0.96
# at 90 s), since each step of the search must run clean for a window's period before it is believed.
# The multi-leg engine learns two upstreams in turn: DFlow's demand is Jupiter's answers, which ramp
# for seconds before DFlow meets its limit, and the batch window follows the slower one (at 16 IPs,
# 150 ms: 0.92 of N·R at 80 s and 0.97-0.98 from 120 s since round 52; until then each of DFlow's steps
# was proven over that ramp's 14 s, and the cell read 0.885-0.946 counted after 120 s). A cap is
# found from refusals, three per pair, and at a pace near the cap's rate (told R = K / latency) one
# comes only when a send meets a slot a few milliseconds before it frees: told at 16 IPs and 300 ms
# was still finding caps 40 s in (0.916 of N·R, 0.37 % 429s), and held 0.969 with none counted
# after 120 s.
MULTI_WARMUP = 120.0
BUCKET = Limit("bucket", "bucket:20/1s,burst=0.1", 20.0, warmup=60, counted=30)
FIXED = Limit("fixed", "fixed:100/5s", 20.0, warmup=120, counted=30)
SLIDING = Limit("sliding", "sliding:200/10s", 20.0, warmup=120, counted=40)
PENALTY = Limit("penalty", "penalty:20/1s,box=5s", 20.0, warmup=120, counted=30)
CAP = Limit("concurrency", "concurrency:4", None, warmup=120, counted=30, cap=4)
KEYED = Limit("keyed", "sliding:300/10s,scope=key", 30.0, warmup=120, counted=40, keyed=True)
SLIDING60 = Limit("sliding60", "sliding:1200/60s", 20.0, warmup=420, counted=120)
KEYED60 = Limit("keyed60", "sliding:600/60s,scope=key", 10.0, warmup=420, counted=120, keyed=True)
# The sliding window counter (Cloudflare's, Kong's): this window's count and the last one's, weighted.
ROLLING = Limit("rolling", "rolling:200/10s", 20.0, warmup=120, counted=40)
# Limits that never say when (no Retry-After): the backoff finds each return, so learning takes longer
# (virtual time, 16 IPs at 150 ms, two seeds: the 5 s window 0.987-0.988 of N·R after 180 s; the box
# 0.985-0.986 after 240 s, 0.908-0.985 after 180 s, with 5-6 boxes per IP while it learns).
FIXED_NORETRY = Limit("fixed-noretry", "fixed:100/5s,retry_after=no", 20.0, warmup=180, counted=40)
PENALTY_NORETRY = Limit("penalty-noretry", "penalty:20/1s,box=5s,retry_after=no", 20.0, warmup=240, counted=40)
# Two limits at once, a second's and a minute's (the simulator stacks them with &): R is the minute's.
STACKED = Limit("stacked", "bucket:20/1s,burst=0.1 & fixed:600/60s", 10.0, warmup=420, counted=120)
# A gateway's cap (an API gateway or a proxy in front of the upstream): it refuses at once, before the
# requests it found being served are answered, while its answers take the latency.
CAP_AT_ONCE = Limit("concurrency-at-once", "concurrency:4,refuse=at_once", None, warmup=120, counted=30, cap=4)
# A limit that queues before it refuses (nginx's limit_req without nodelay): each request waits its turn
# at 20/s, and one that would wait more than a second is refused. Its refusals find a cap (the second of
# queue plus what the rate keeps in flight), which the farm trims to what the rate needs.
QUEUE = Limit("queue", "queue:20/1s,burst=1", 20.0, warmup=120, counted=30)
# One token and no Retry-After, its interval (200 ms) shorter than the latency: measuring, a pace above it
# looks like a concurrency cap of one (see galileo.policy.concurrency), 0.66 of N·R in virtual time until
# round 43.
ONE_TOKEN = Limit("onetoken-noretry", "bucket:5/1s,burst=0.2,retry_after=no", 5.0, warmup=90, counted=40)
# A bucket of half a second (10 requests): each refusal's cooling (a rounded-up second) banks its depth
# again, and a step over the rate that the bank carries runs clean for seconds (see RateLearner.trust):
# 0.955 of N·R in virtual time (4 IPs, 50 ms, 30-180 s) until round 49, 0.983 since.
DEEP = Limit("bucket-deep", "bucket:20/1s,burst=0.5", 20.0, warmup=120, counted=40)
# A 10 s box without Retry-After: the backoff's doubling steps found each box over up to 30 s late, and
# pacing read the longer run as its time scale (0.85 of N·R over 240-280 s in virtual time, 16 IPs at
# 150 ms, until round 50, when each run's probes came within a fifth of its length: 0.98).
PENALTY10_NORETRY = Limit("penalty10-noretry", "penalty:20/1s,box=10s,retry_after=no", 20.0, warmup=240, counted=40)

FULL = PipelinePlan(
    limits=(BUCKET, FIXED, SLIDING, PENALTY, CAP, KEYED),
    extra=(
        ("sliding60", 50, 16, "blind"),
        ("keyed60", 50, 16, "blind"),
        ("stacked", 50, 16, "blind"),
        ("rolling", 150, 16, "blind"),
        ("fixed-noretry", 150, 16, "blind"),
        ("penalty-noretry", 150, 16, "blind"),
        ("bucket", 50, 4, "multi_leg"),
        ("bucket", 150, 16, "multi_leg"),
        ("concurrency-at-once", 50, 4, "blind"),
        ("concurrency-at-once", 300, 16, "blind"),
        ("queue", 300, 4, "blind"),
        ("queue", 50, 16, "blind"),
        ("onetoken-noretry", 300, 4, "blind"),
        ("bucket-deep", 150, 16, "blind"),
        ("penalty10-noretry", 150, 16, "blind"),
    ),
    limits_by_name={
        lim.name: lim
        for lim in (
            SLIDING60,
            KEYED60,
            STACKED,
            ROLLING,
            FIXED_NORETRY,
            PENALTY_NORETRY,
            CAP_AT_ONCE,
            QUEUE,
            ONE_TOKEN,
            DEEP,
            PENALTY10_NORETRY,
        )
    },
)
QUICK = PipelinePlan(
    limits=(Limit("bucket", "bucket:20/1s,burst=0.1", 20.0, warmup=3, counted=3),),
    latencies=(0,),
    ns=(4,),
    big=(),
    told_warmup=2.0,
)


def _config(
    sim_url: str, runtime: Any, ips: list[str], told: float | None, jito: float | None, multi: bool, keyed: bool
) -> GalileoConfig:
    """The end-to-end configuration; an API key is sent only where the limit is a key's (as a user's would).

    ``told``: requests/s per IP, or where ``keyed`` the key's budget (``rate_limit_per_key``)."""
    quoted = ", ".join(f'"{ip}"' for ip in ips)
    rate = f"{told:g}" if told else "null"
    key = KEY_ENV if keyed else "null"
    told_keys = f"rate_limit_per_key: {rate}" if keyed else f"rate_limit_per_ip: {rate}"
    regions = ", ".join(f"'{sim_url}/jito/{r}'" for r in REGIONS)
    return parse_config(f"""
bot: {{network: {{enable_multiple_ip: true, manual_ips: [{quoted}]}}, prometheus: {{enable: false}}}}
farm: {{runtime_dir: '{runtime}'}}
upstreams:
  jupiter: {{base_url: '{sim_url}/jupiter/swap/v1', api_key_env: {key}, {told_keys}}}
  dflow: {{base_url: '{sim_url}/dflow', api_key_env: {key}, {told_keys}}}
  rpc: {{urls: ['{sim_url}/rpc']}}
  jito: {{endpoints: [{regions}], rate_limit_per_ip: {f"{jito:g}" if jito else "null"}}}
intermedium: {{mints: [{", ".join(MINTS)}]}}
blind_strategy:
  enable: {str(not multi).lower()}
  base_mints:
    - {{mint: {SOL}, trade_size_range: [{SIZES[0]}, {SIZES[-1]}], trade_range_count: {len(SIZES)},
       trade_range_strategy: exponential, min_quote_profit: 20000}}
multi_leg: {{enable: {str(multi).lower()}, buy_legs: [jupiter], sell_legs: [dflow]}}
lander: {{mode: live}}
wallet: {{keypair_path: '{runtime / "id.json"}'}}
""")


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _counts(stats: dict[str, Any], ips: list[str], services: tuple[str, ...]) -> dict[str, Any]:
    """The IPs' 200s, 429s and penalty-box entries at the services; and their 200s by service."""
    by_ip = stats["requests"]["by_ip_service"]
    refused = stats["limits"]["refused_by_ip"]
    out: dict[str, Any] = {"ok": 0, "limited": 0, "penalties": 0, "by_service": dict.fromkeys(services, 0)}
    for ip in ips:
        for svc in services:
            got = by_ip.get(ip, {}).get(svc, {})
            out["ok"] += got.get("200", 0)
            out["by_service"][svc] += got.get("200", 0)
            out["limited"] += got.get("429", 0)
            out["penalties"] += refused.get(ip, {}).get(svc, {}).get("penalty", 0)
    return out


def _jito_accepted(stats: dict[str, Any]) -> int:
    return int(stats["sends"].get("jito_bundle", {}).get("accepted", 0))


@dataclass
class _Window:
    """Both ends of the counted window."""

    stats: list[dict[str, Any]] = field(default_factory=list)
    cpu: list[tuple[float, float, float]] = field(default_factory=list)  # (sim, client, clock)
    offered: list[int] = field(default_factory=list)
    machine: list[tuple[float, float]] = field(default_factory=list)  # (steal, all): the machine's CPU seconds
    coordinator: list[float] = field(default_factory=list)  # this process's CPU seconds (the farm's coordinator)

    def mark(
        self, stats: dict[str, Any], sim_cpu: float, client_cpu: float, offered: int = 0, coordinator: float = 0.0
    ) -> None:
        self.stats.append(stats)
        self.cpu.append((sim_cpu, client_cpu, time.monotonic()))
        self.offered.append(offered)
        self.coordinator.append(coordinator)
        t = psutil.cpu_times()
        self.machine.append((getattr(t, "steal", 0.0), sum(t)))

    def steal_pct(self) -> float | None:
        """Share of the machine's CPU time its hypervisor gave to others over the window (Linux guests
        count it as ``steal``): a shared host's noise, which a cell's figures carry."""
        (s0, a0), (s1, a1) = self.machine
        return round(100 * (s1 - s0) / (a1 - a0), 1) if a1 > a0 else None


def _held(stats: dict[str, Any], services: tuple[str, ...]) -> tuple[float, int]:
    """Seconds the services' admitted requests were served, and how many were admitted."""
    held = stats["limits"].get("held", {})
    return (
        sum(held.get(u, {}).get("seconds", 0.0) for u in services),
        sum(held.get(u, {}).get("admitted", 0) for u in services),
    )


def _result(w: _Window, ips: list[str], services: tuple[str, ...], budget: float, jito_cap: float) -> dict[str, Any]:
    (s0, s1), ((sc0, cc0, t0), (sc1, cc1, t1)) = w.stats, w.cpu
    window = t1 - t0
    a, b = _counts(s0, ips, services), _counts(s1, ips, services)
    ok, limited = b["ok"] - a["ok"], b["limited"] - a["limited"]
    by_service = {u: b["by_service"][u] - a["by_service"][u] for u in services}
    answered = ok + limited
    accepted = (_jito_accepted(s1) - _jito_accepted(s0)) / window
    offered = (w.offered[1] - w.offered[0]) / window
    landing_cap = min(offered, jito_cap)
    return {
        "window_s": round(window, 2),
        "ok_per_s": round(ok / window, 2),
        "ok_ratio": round(ok / window / budget, 4),
        "ok_per_s_by_service": {u: round(v / window, 2) for u, v in by_service.items()},
        "share_429": round(limited / answered, 5) if answered else 0.0,
        "penalties": b["penalties"] - a["penalties"],
        "penalties_run": b["penalties"],
        "landing_accepted_per_s": round(accepted, 2),
        "landing_offered_per_s": round(offered, 2),
        "landing_ratio": round(accepted / landing_cap, 4) if landing_cap > 0 else None,
        "sim_cpu_pct": round(100 * (sc1 - sc0) / window, 1),
        "client_cpu_pct": round(100 * (cc1 - cc0) / window, 1),
        # What one answer cost the client, all its processes: the farm's against the baseline's.
        "client_cpu_ms_per_answer": round(1000 * (cc1 - cc0) / answered, 3) if answered else None,
        "steal_pct": w.steal_pct(),
    }


def _offered(engine: RoundTripEngine) -> int:
    t = engine.stats.landing.totals()
    return t["sends"] + t["shed"]


async def _engine_run(
    sim: SimProcess, ips: list[str], lim: Limit, latency: int, told: bool, engine_name: str, plan: PipelinePlan
) -> dict[str, Any]:
    n = len(ips)
    r = lim.per_ip(n, latency)
    assert r is not None
    multi = engine_name == "multi_leg"
    services = ("jupiter", "dflow") if multi else ("jupiter",)
    me = psutil.Process()
    sim_proc = psutil.Process(sim.pid)
    w = _Window()
    with temp_runtime() as rt:
        wallet = ephemeral_keypair()
        write_keypair(rt / "id.json", wallet)
        jito_rate = plan.jito_rate
        rate = lim.told(n, latency) if told else None
        cfg = _config(sim.url, rt, ips, rate, jito_rate if told else None, multi, lim.keyed)
        async with Farm(cfg, runtime_dir=rt, log_level="warning") as farm:
            if not await farm.wait_ready(timeout=60):
                raise RuntimeError(f"{n} workers were not ready within 60 s")
            shape = Shape.multi_leg(cfg) if multi else Shape.blind(cfg)
            engine = RoundTripEngine(farm, cfg, wallet, shape)
            stop = asyncio.Event()
            with frozen_heap():  # as galileo farm start does
                task = asyncio.create_task(engine.run(stop))
                try:
                    if not told:
                        warmup = max(lim.warmup, MULTI_WARMUP if multi else 0.0)
                    else:  # nothing to learn, but a cap: it is told R = K / latency, and finds K as learned does
                        warmup = max(plan.told_warmup, lim.warmup) if lim.cap else plan.told_warmup
                    await asyncio.sleep(warmup)
                    procs = [me, *me.children(recursive=True)]
                    w.mark(await sim.stats(), _cpu([sim_proc]), _cpu(procs), _offered(engine), _cpu([me]))
                    quotes0, batches0 = Counter(engine.stats.quotes), engine.stats.batches_started
                    await asyncio.sleep(lim.counted)
                    w.mark(await sim.stats(), _cpu([sim_proc]), _cpu(procs), _offered(engine), _cpu([me]))
                    quotes = engine.stats.quotes - quotes0
                    batches = engine.stats.batches_started - batches0
                finally:
                    stop.set()
                    await asyncio.wait_for(task, 60)
    budget = r * n * len(services)
    out = _result(w, ips, services, budget, n * len(REGIONS) * jito_rate)
    # The engine's own count over the window: a low cell says whether quotes failed or were never sent.
    by_result = {f"{leg}:{res}": k for (leg, res), k in sorted(quotes.items())}
    out["coordinator_cpu_pct"] = round(100 * (w.coordinator[1] - w.coordinator[0]) / out["window_s"], 1)
    out["engine"] = {"batches_started": batches, "quotes": by_result}
    return _with_ceiling(out, w, n, services, lim.cap)


async def _baseline_run(sim: SimProcess, ips: list[str], lim: Limit, latency: int, warmup: float) -> dict[str, Any]:
    r = lim.per_ip(len(ips), latency)
    assert r is not None
    args = ["--url", f"{sim.url}/jupiter/swap/v1", "--ips", ",".join(ips), "--rate", f"{r:g}"]
    args += ["--seconds", f"{warmup + lim.counted + 30:g}"]
    if lim.keyed:
        args += ["--api-key", os.environ[KEY_ENV]]
    for mint in MINTS:
        for size in SIZES:
            args += ["--pair", f"{SOL}:{mint}:{size}"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "galileo.bench.pipeline_baseline", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    sim_proc, client = psutil.Process(sim.pid), psutil.Process(proc.pid)
    w = _Window()
    try:
        await asyncio.sleep(warmup)
        w.mark(await sim.stats(), _cpu([sim_proc]), _cpu([client]))
        await asyncio.sleep(lim.counted)
        w.mark(await sim.stats(), _cpu([sim_proc]), _cpu([client]))
    finally:
        await stop_process(proc)
    out = _result(w, ips, ("jupiter",), r * len(ips), math.inf)
    out.pop("landing_ratio")
    return _with_ceiling(out, w, len(ips), ("jupiter",), lim.cap)


def _with_ceiling(out: dict[str, Any], w: _Window, n: int, services: tuple[str, ...], cap: int) -> dict[str, Any]:
    """Under a concurrency cap K, adds the most the limiter lets N IPs get, N·K ÷ the mean time a slot
    was held (admission to answer: the added latency and the simulator's own time), and ok/s ÷ that."""
    (sec0, n0), (sec1, n1) = _held(w.stats[0], services), _held(w.stats[1], services)
    if cap and n1 > n0 and sec1 > sec0:
        hold = (sec1 - sec0) / (n1 - n0)
        ceiling = n * cap * len(services) / hold
        out.update(slot_held_ms=round(1000 * hold, 2), ceiling_per_s=round(ceiling, 2))
        out["ok_of_ceiling"] = round(out["ok_per_s"] / ceiling, 4)
    return out


async def _cell(
    sim: SimProcess, lim: Limit, latency: int, n: int, engine: str, plan: PipelinePlan, k: int
) -> dict[str, Any]:
    limits: dict[str, str | None] = {"jupiter": lim.spec, "dflow": lim.spec, "jito": f"bucket:{plan.jito_rate:g}/1s"}
    await sim.control({"limiters": limits, "latency_ms": latency})
    out: dict[str, Any] = {"limit": lim.spec, "latency_ms": latency, "ips": n, "engine": engine}
    r = lim.per_ip(n, latency)
    if r is None:
        out["binds"] = False  # a concurrency cap with no latency: more than the farm can send
        return out
    out.update(binds=True, rate_per_ip=round(r, 3), budget=round(r * n, 3))
    for i, policy in enumerate(p for p in POLICIES if engine == "blind" or p != "baseline"):
        await sim.control({"reset_limiters": True, "reset_stats": True})
        os.environ[KEY_ENV] = f"bench-key-{k}-{i}"  # a fresh key is a fresh keyed budget
        ips = [f"127.{NET}.{(3 * k + i) % 250}.{j}" for j in range(1, n + 1)]
        if policy == "baseline":
            out[policy] = await _baseline_run(sim, ips, lim, latency, plan.told_warmup)
        else:
            out[policy] = await _engine_run(sim, ips, lim, latency, policy == "told", engine, plan)
    return out


def _summary(cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The worst binding cell of each kind, and how many cells met each target."""
    binding = [c for c in cells.values() if c.get("binds")]
    per_ip = [c for c in binding if not c["limit"].endswith("scope=key")]
    keyed = [c for c in binding if c["limit"].endswith("scope=key")]

    def worst(cs: list[dict[str, Any]], policy: str, key: str, pick: Any) -> Any:
        values = [c[policy][key] for c in cs if policy in c and c[policy].get(key) is not None]
        return pick(values) if values else None

    vs = [c["learned_vs_baseline"] for c in binding if "learned_vs_baseline" in c]
    return {
        "binding_cells": len(binding),
        "learned_ok_min": worst(per_ip, "learned", "ok_ratio", min),
        "learned_ok_met": sum(c["learned"]["ok_ratio"] >= 0.9 for c in per_ip),
        "learned_429_max": worst(binding, "learned", "share_429", max),
        "learned_429_met": sum(c["learned"]["share_429"] <= 0.01 for c in binding),
        "learned_vs_baseline_min": min(vs, default=None),
        "learned_vs_baseline_met": sum(v >= 1.0 for v in vs),
        "keyed_off_budget_max": max((abs(c["learned"]["ok_ratio"] - 1) for c in keyed), default=None),
        "told_ok_min": worst(binding, "told", "ok_ratio", min),
        "told_ok_met": sum(c["told"]["ok_ratio"] >= 0.97 for c in binding),
        "told_boxes": sum(c["told"]["penalties"] for c in binding),
        "landing_min": worst(binding, "learned", "landing_ratio", min),
    }


def _targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        target("summary.learned_ok_min", ">=", 0.90, "learned: ok/s ÷ N·R, worst binding per-IP cell"),
        target("summary.learned_429_max", "<=", 0.01, "learned: 429 share, worst binding cell"),
        target("summary.learned_vs_baseline_min", ">=", 1.0, "learned ÷ the baseline's ok/s, worst cell"),
        target("summary.keyed_off_budget_max", "<=", 0.02, "keyed: |ok/s ÷ the key's budget − 1|, worst N"),
        target("summary.told_ok_min", ">=", 0.97, "told: ok/s ÷ N·R, worst binding cell"),
        target("summary.told_boxes", "<=", 0, "told: penalty-box entries, all cells"),
    ]


def cell_name(lim: Limit, latency: int, n: int, engine: str) -> str:
    return f"{lim.name}-{latency}ms-n{n}" + ("-multi" if engine == "multi_leg" else "")


def select(plan: PipelinePlan, patterns: Sequence[str] = ()) -> list[tuple[str, tuple[Limit, int, int, str]]]:
    """The plan's cells by name (``bucket-150ms-n16``, ``bucket-50ms-n4-multi``), those matching any of
    ``patterns`` (shell-style: ``*-150ms-n16``) if any are given; a pattern that matches none is an error."""
    named = [(cell_name(*c), c) for c in plan.cells()]
    if not patterns:
        return named
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(name, p) for name, _ in named)]
    if unmatched:
        raise ValueError(f"no pipeline cell matches {', '.join(unmatched)}; cells: {', '.join(n for n, _ in named)}")
    return [(name, c) for name, c in named if any(fnmatch.fnmatchcase(name, p) for p in patterns)]


async def pipeline(quick: bool = False, plan: PipelinePlan | None = None, cells: Sequence[str] = ()) -> dict[str, Any]:
    """Every cell of ``plan`` (or those ``cells`` names) in turn, against one simulator in its own process."""
    plan = plan or (QUICK if quick else FULL)
    chosen = select(plan, cells)
    results: dict[str, dict[str, Any]] = {}
    async with sim_process(seed=21) as sim:
        if sim.scheduling == "shared":
            print(
                "bench: pipeline: the simulator could not be scheduled ahead of the clients (not root, no"
                " CAP_SYS_NICE): where the cores are busy, its limiters count its own waits for one as bursts",
                file=sys.stderr,
                flush=True,
            )
        await sim.control({"limiters": {"rpc": "none", "tip_floor": "none"}})
        for k, (name, (lim, latency, n, engine)) in enumerate(chosen):
            cell = await _cell(sim, lim, latency, n, engine, plan, k)
            if "learned" in cell and "baseline" in cell and cell["baseline"]["ok_per_s"]:
                cell["learned_vs_baseline"] = round(cell["learned"]["ok_per_s"] / cell["baseline"]["ok_per_s"], 4)
            results[name] = cell
            print(f"bench: pipeline: {name}: {_line(cell)}", file=sys.stderr, flush=True)  # hours: say how it goes
    summary = _summary(results)
    return {
        "cells": results,
        "summary": summary,
        "targets": [] if quick else _targets(summary),
        "simulator_scheduling": sim.scheduling,
    }


def _line(cell: dict[str, Any]) -> str:
    """One cell in a line, for the progress log of a run that takes hours."""
    parts = []
    for policy in POLICIES:
        r = cell.get(policy)
        if r:
            steal = f", steal {r['steal_pct']:.1f} %" if r.get("steal_pct") else ""
            refused = f"{100 * r['share_429']:.2f} % 429, {r['penalties']} boxes{steal}"
            parts.append(f"{policy} {r['ok_ratio']:.3f} ({refused})")
    return "; ".join(parts) or "does not bind"
