"""Fixtures for the fault suite: the real simulator, real farms on loopback IPs, processes and /proc.

Everything here is real: the farm's coordinator runs in the test process, its workers are
forked processes bound to 127.0.9.x addresses, the upstreams are :mod:`galileo.sim` on
127.0.0.1. Helpers never assert timings; they wait for a condition with a generous deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import psutil
import pytest

from broker.jobs import JupiterQuote
from broker.protocol import RESULTS
from broker.types import Job, JobOutcome, JobSpec
from galileo.config import GalileoConfig, parse_config
from galileo.farm.coordinator import Farm
from galileo.sim import SimConfig, SimServer, start_sim

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USER = "Cm7vjoV12JuVqCduW6rkGGcgN77NPkzqZr66pkVTzb5b"


def ips(n: int, start: int = 2, net: str = "127.0.9") -> list[str]:
    """Loopback addresses of this suite (127.0.9.x: no other test module uses them)."""
    return [f"{net}.{i}" for i in range(start, start + n)]


# --- the simulator -----------------------------------------------------------------------

SimFactory = Callable[..., Awaitable[SimServer]]


@pytest.fixture
async def sim_factory() -> AsyncIterator[SimFactory]:
    servers: list[SimServer] = []

    async def make(**kwargs: Any) -> SimServer:
        kwargs.setdefault("port", 0)
        kwargs.setdefault("seed", 9)
        kwargs.setdefault("auction_contention", 0.0)  # no accepted bundle is outbid: landing is the point
        server = await start_sim(SimConfig(**kwargs))
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


async def sim_get(sim: SimServer | str, path: str) -> Any:
    base = sim if isinstance(sim, str) else sim.url
    async with aiohttp.ClientSession() as s, s.get(base + path) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def sim_control(sim: SimServer | str, body: dict[str, Any]) -> Any:
    base = sim if isinstance(sim, str) else sim.url
    async with aiohttp.ClientSession() as s, s.post(base + "/sim/control", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def quote(sim_url: str, amount: int = 1_000_000_000, **spec: Any) -> JobSpec:
    """A Jupiter quote job against the simulator (idempotent unless told otherwise)."""
    payload = JupiterQuote(base_url=sim_url + "/jupiter/swap/v1", input_mint=SOL, output_mint=USDC, amount=amount)
    spec.setdefault("timeout", 10.0)
    return JobSpec(payload, upstream="jupiter", **spec)


# --- farms -------------------------------------------------------------------------------


def farm_yaml(farm_ips: list[str], runtime_dir: Path, extra: str = "", farm: str = "") -> str:
    """A farm on ``farm_ips``; ``extra``: more top-level YAML, ``farm``: more keys of the ``farm`` mapping
    (``", listen: ..."``). No /metrics listener: two farms at once (pytest-xdist) would both want its port."""
    listed = ", ".join(f'"{ip}"' for ip in farm_ips)
    return (
        f"bot: {{network: {{enable_multiple_ip: true, manual_ips: [{listed}]}}, prometheus: {{enable: false}}}}\n"
        f"farm: {{runtime_dir: '{runtime_dir}'{farm}}}\n{extra}"
    )


def farm_config(farm_ips: list[str], runtime_dir: Path, extra: str = "") -> GalileoConfig:
    return parse_config(farm_yaml(farm_ips, runtime_dir, extra))


@dataclass
class Ledger:
    """Every terminal outcome the hub delivered, by job id: proves "exactly one outcome per job"."""

    finals: Counter[int] = field(default_factory=Counter)
    outcomes: dict[int, JobOutcome] = field(default_factory=dict)

    def hook(self, job: Job, final: JobOutcome) -> None:
        self.finals[job.id] += 1
        self.outcomes[job.id] = final

    def check_exactly_once(self, farm: Farm, outcomes: list[JobOutcome]) -> None:
        """Each submitted job resolved once; the hub's counts and the callers' outcomes agree."""
        ids = [o.job_id for o in outcomes]
        assert len(set(ids)) == len(ids), "two submissions share a job id"
        assert set(self.finals) == set(ids), "an outcome for a job nobody submitted, or a job without one"
        assert all(n == 1 for n in self.finals.values()), {i: n for i, n in self.finals.items() if n != 1}
        assert all(o.result in RESULTS for o in outcomes), Counter(o.result for o in outcomes)
        assert Counter(o.result for o in outcomes) == +farm.hub.counts
        assert sum(farm.hub.counts.values()) == len(outcomes)


FarmFactory = Callable[..., Awaitable[Farm]]


@pytest.fixture
async def farm_factory(tmp_path: Path) -> AsyncIterator[FarmFactory]:
    """``await make(ips, extra_yaml, **Farm kwargs)``: a started farm whose workers all registered."""
    farms: list[Farm] = []

    async def make(farm_ips: list[str], extra: str = "", **kw: Any) -> Farm:
        rt = tmp_path / f"rt{len(farms)}"
        kw.setdefault("log_level", "warning")
        farm = Farm(farm_config(farm_ips, rt, extra), runtime_dir=rt, **kw)
        farms.append(farm)
        await farm.start()
        assert await farm.wait_ready(timeout=30), "workers did not register"
        return farm

    yield make
    for farm in farms:
        await farm.stop(grace=2.0)


async def run_load(farm: Farm, make: Callable[[], JobSpec], outstanding: int, stop: asyncio.Event) -> list[JobOutcome]:
    """Keep ``outstanding`` jobs in flight until ``stop``; every outcome, once all are back."""
    pending: set[asyncio.Future[JobOutcome]] = set()
    done_all: list[JobOutcome] = []
    while not stop.is_set() or pending:
        while not stop.is_set() and len(pending) < outstanding:
            pending.add(farm.submit(make()))
        done, pending = await asyncio.wait(pending, timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
        done_all.extend(f.result() for f in done)
    return done_all


def worker_pids(farm: Farm) -> dict[str, int]:
    return {w.ip: w.pid for w in farm.hub.workers.values()}


# --- processes ---------------------------------------------------------------------------


def proc_state(pid: int) -> str | None:
    """The State letter in /proc/PID/status (R, S, T, Z ...), or None once the pid is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("State:"):
                    return line.split()[1]
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def running(pid: int) -> bool:
    """True while ``pid`` exists and has not exited (a zombie has exited: only its entry is left)."""
    state = proc_state(pid)
    return state is not None and state != "Z"


def descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


async def wait_for(cond: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(every)


def kill_quietly(pid: int | None, sig: int = signal.SIGKILL) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


@dataclass
class Galileo:
    """A running ``galileo`` CLI process whose stdout and stderr go to files (a pipe could fill up)."""

    proc: asyncio.subprocess.Process
    out_path: Path
    err_path: Path
    _files: list[IO[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") + self.err_path.read_text(errors="replace")

    async def wait(self, timeout: float) -> int:
        """Its exit code, once it exits by itself (``--duration``); killed if it takes longer."""
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            pass
        return await self.stop(signal.SIGKILL)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.returncode is None:
            kill_quietly(self.proc.pid, sig)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                kill_quietly(self.proc.pid)
                await self.proc.wait()
        for f in self._files:
            f.close()
        assert self.proc.returncode is not None
        return self.proc.returncode


StartCli = Callable[..., Awaitable[Galileo]]


@pytest.fixture
async def galileo_cli(tmp_path: Path) -> AsyncIterator[StartCli]:
    """``await start(*args, env=..., name=...)`` runs ``python -m galileo ARGS``; all are stopped at teardown."""
    started: list[Galileo] = []

    async def start(*args: str, env: dict[str, str] | None = None, name: str = "galileo") -> Galileo:
        out_path = tmp_path / f"{name}-{len(started)}.out"
        err_path = tmp_path / f"{name}-{len(started)}.err"
        out, err = out_path.open("wb"), err_path.open("wb")
        full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
        full_env.pop("GALILEO_CONFIG", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "galileo",
            *args,
            stdout=out,
            stderr=err,
            stdin=asyncio.subprocess.DEVNULL,
            env=full_env,
        )
        g = Galileo(proc, out_path, err_path, [out, err])
        started.append(g)
        return g

    yield start
    for g in started:
        await g.stop(signal.SIGKILL, timeout=10)


async def farm_stats(runtime_dir: Path, timeout: float = 2.0) -> dict[str, Any] | None:
    """`galileo farm stats --json` of the coordinator in ``runtime_dir``, or None if none answers."""
    from galileo.farm.control import ControlError, control_request

    try:
        return await asyncio.to_thread(control_request, runtime_dir / "control.sock", {"cmd": "stats"}, timeout)
    except ControlError:
        return None


async def wait_stats(
    runtime_dir: Path, cond: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    snap: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        snap = await farm_stats(runtime_dir, 1.0)
        if snap is not None and cond(snap):
            return snap
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last stats: {snap}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
