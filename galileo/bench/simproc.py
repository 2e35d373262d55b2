"""``galileo sim`` in its own process, for benchmarks: the bench's event loop never serves it.

The simulator stands for services on other machines. Here it shares the cores with the clients
under test, and a limiter reads its clock when the simulator's loop gets to a request, not when the
request arrived. Waiting for a core behind 64 busy worker processes, it read requests sent 50 ms
apart as arriving together and refused them as a burst no real upstream would have seen: at 64
addresses on 2 cores a told pace met 0.2-0.8 % 429s, each a second of Retry-After, and kept
0.81-0.89 of N·R. Run 5 nice steps ahead of the clients it still lagged 25-60 ms now and then
(told 0.85-0.96). So the simulator runs under the real-time round-robin policy where the OS lets
us (root, or ``CAP_SYS_NICE``; the kernel's real-time throttle keeps 5 % of each second for
the rest), else :data:`PRIORITY` nice steps ahead of the bench, else shared; with real-time
scheduling three told runs there met no 429 in their counted windows. :attr:`SimProcess.scheduling`
says which, and the pipeline's report carries it.

async with sim_process(rate_limit=20, seed=1) as sim:
    await sim.reset_stats()
    ...  # point jobs at sim.url
    stats = await sim.stats()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp

from galileo.bench._util import stop_process

__all__ = ["BenchError", "SimProcess", "sim_process"]

_LISTENING = re.compile(rb"galileo sim listening on (http://\S+)")
_START_TIMEOUT = 30.0
PRIORITY = 5  # nice steps the simulator runs ahead of the bench where real-time scheduling is refused
Scheduling = Literal["realtime", "nice", "shared"]


class BenchError(RuntimeError):
    """A benchmark could not run (a child process did not start, an endpoint did not answer)."""


class SimProcess:
    """A running simulator: its URL and the /sim/* calls a benchmark needs."""

    def __init__(self, url: str, pid: int, session: aiohttp.ClientSession, scheduling: Scheduling = "shared") -> None:
        self.url = url
        self.pid = pid
        self.scheduling = scheduling  # how it is scheduled against the clients (see the module's doc)
        self._session = session

    async def stats(self) -> dict[str, Any]:
        """``GET /sim/stats``."""
        async with self._session.get(f"{self.url}/sim/stats") as resp:
            resp.raise_for_status()
            body: dict[str, Any] = await resp.json()
            return body

    async def control(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /sim/control``; answers with the effective config."""
        async with self._session.post(f"{self.url}/sim/control", json=body) as resp:
            answer: dict[str, Any] = await resp.json()
            if resp.status != 200:
                raise BenchError(f"/sim/control {body}: {answer.get('error', resp.status)}")
            return answer

    async def reset_stats(self) -> None:
        """Zero the simulator's counters (its token buckets live on: use fresh addresses per run)."""
        await self.control({"reset_stats": True})


@contextlib.asynccontextmanager
async def sim_process(
    rate_limit: float | None = None, seed: int = 1, prioritise: bool = True
) -> AsyncIterator[SimProcess]:
    """Start ``python -m galileo sim --port 0 ...``, wait for its URL, stop it (SIGTERM) at exit.
    ``prioritise``: schedule it ahead of the clients where allowed (not where the simulator itself is
    what is measured against its clients)."""
    args = ["-m", "galileo", "--log-level", "warning", "sim", "--port", "0", "--seed", str(seed)]
    if rate_limit is not None:
        args += ["--rate-limit", f"{rate_limit:g}"]
    with tempfile.TemporaryFile() as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdout=asyncio.subprocess.PIPE, stderr=err, stdin=asyncio.subprocess.DEVNULL
        )
        try:
            url = await asyncio.wait_for(_read_url(proc), _START_TIMEOUT)
            if url is None:
                err.seek(0)
                tail = err.read()[-2000:].decode(errors="replace").strip()
                raise BenchError(f"galileo sim exited with {await proc.wait()} before listening: {tail or '-'}")
            scheduling = _schedule_first(proc.pid) if prioritise else "shared"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                yield SimProcess(url, proc.pid, session, scheduling)
        except TimeoutError:
            raise BenchError(f"galileo sim did not say where it listens within {_START_TIMEOUT:.0f}s") from None
        finally:
            await stop_process(proc)


def _schedule_first(pid: int) -> Scheduling:
    """Schedule ``pid`` ahead of this process's children as far as the OS allows."""
    with contextlib.suppress(OSError, AttributeError):  # refused (EPERM), or no such call on this OS
        os.sched_setscheduler(pid, os.SCHED_RR, os.sched_param(1))
        return "realtime"
    with contextlib.suppress(OSError, AttributeError):  # refused (EPERM), or no such call on this OS
        os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, 0) - PRIORITY)
        return "nice"
    return "shared"


async def _read_url(proc: asyncio.subprocess.Process) -> str | None:
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        m = _LISTENING.search(line)
        if m:
            return m.group(1).decode()
    return None
