"""Fixtures for farm integration tests: a recording server and real farms on loopback IPs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from galileo.config import GalileoConfig, parse_config
from galileo.farm.coordinator import Farm


@dataclass
class Hit:
    t: float
    path: str
    remote: str
    status: int


@dataclass
class Recorder:
    """An HTTP server that records every request's source address, and can rate-limit one IP."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    limited: dict[tuple[str, str], float] = field(default_factory=dict)  # (ip, path) -> Retry-After
    delay: float = 0.0

    def by_remote(self, path: str | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for h in self.hits:
            if path is None or h.path == path:
                out[h.remote] = out.get(h.remote, 0) + 1
        return out


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()

    async def handle(request: web.Request) -> web.Response:
        remote = request.remote or "?"
        if rec.delay:
            await asyncio.sleep(rec.delay)
        retry = rec.limited.get((remote, request.path))
        status = 429 if retry is not None else 200
        rec.hits.append(Hit(time.monotonic(), request.path, remote, status))
        if retry is not None:
            return web.json_response({"error": "Too Many Requests"}, status=429, headers={"Retry-After": str(retry)})
        return web.json_response({"remote": remote, "path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield rec
    await runner.cleanup()


def farm_config(ips: list[str], runtime_dir: Path, extra: str = "", farm: str = "") -> GalileoConfig:
    listed = ", ".join(f'"{ip}"' for ip in ips)
    return parse_config(
        f"bot: {{network: {{enable_multiple_ip: true, manual_ips: [{listed}]}}}}\n"
        f"farm: {{runtime_dir: '{runtime_dir}'{farm}}}\n{extra}"
    )


FarmFactory = Callable[..., "asyncio.Future[Farm]"]


@pytest.fixture
async def make_farm(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    farms: list[Farm] = []
    counter = [0]

    async def make(ips: list[str], farm_keys: str = "", **kw: object) -> Farm:
        counter[0] += 1
        rt = tmp_path / f"rt{counter[0]}"
        farm = Farm(farm_config(ips, rt, farm=farm_keys), runtime_dir=rt, log_level="warning", **kw)  # type: ignore[arg-type]
        farms.append(farm)
        await farm.start()
        assert await farm.wait_ready(timeout=15), "workers did not register"
        return farm

    yield make
    for farm in farms:
        await farm.stop()


def loopback(n: int, start: int = 2, net: str = "127.0.0") -> list[str]:
    return [f"{net}.{i}" for i in range(start, start + n)]
