"""``galileo sim`` in its own process, for benchmarks: the bench's event loop never serves it.

async with sim_process(rate_limit=20, seed=1) as sim:
    await sim.reset_stats()
    ...  # point jobs at sim.url
    stats = await sim.stats()
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from galileo.bench._util import stop_process

__all__ = ["BenchError", "SimProcess", "sim_process"]

_LISTENING = re.compile(rb"galileo sim listening on (http://\S+)")
_START_TIMEOUT = 30.0


class BenchError(RuntimeError):
    """A benchmark could not run (a child process did not start, an endpoint did not answer)."""


class SimProcess:
    """A running simulator: its URL and the /sim/* calls a benchmark needs."""

    def __init__(self, url: str, pid: int, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.pid = pid
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
async def sim_process(rate_limit: float | None = None, seed: int = 1) -> AsyncIterator[SimProcess]:
    """Start ``python -m galileo sim --port 0 ...``, wait for its URL, stop it (SIGTERM) at exit."""
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
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                yield SimProcess(url, proc.pid, session)
        except TimeoutError:
            raise BenchError(f"galileo sim did not say where it listens within {_START_TIMEOUT:.0f}s") from None
        finally:
            await stop_process(proc)


async def _read_url(proc: asyncio.subprocess.Process) -> str | None:
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        m = _LISTENING.search(line)
        if m:
            return m.group(1).decode()
    return None
