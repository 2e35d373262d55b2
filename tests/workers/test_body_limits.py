"""Answers are capped after decompression, read as a stream: a gzip bomb costs a worker 4 MiB, not 1 GiB."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import web

import workers.clients  # noqa: F401  (registers the upstream handlers)
from broker.jobs import HttpRequest, JupiterQuote
from broker.protocol import Dispatch, Outcome
from broker.results import HttpResponse
from broker.types import JobSpec
from galileo.farm.coordinator import Farm
from tests.farm.conftest import farm_config
from tests.workers.bombs import deflate_bomb, gzip_bomb
from workers.clients.transport import MAX_BODY
from workers.executor import Executor
from workers.session import BoundSession

BOMB_MIB = 1024  # 1 GiB inflated, about 1 MiB on the wire
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb(BOMB_MIB)


@pytest.fixture
async def server(bomb: bytes) -> AsyncIterator[str]:
    def encoded(body: bytes, coding: str) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": coding, "Content-Type": "application/json"})

    async def streamed(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Encoding": "gzip"})  # chunked: no length announced
        await resp.prepare(request)
        for i in range(0, len(bomb), 64 << 10):
            await resp.write(bomb[i : i + (64 << 10)])
        await resp.write_eof()
        return resp

    small = json.dumps({"ok": True, "pad": "x" * 3000}).encode()
    routes = {
        "/gzip-bomb": lambda r: encoded(bomb, "gzip"),
        "/deflate-bomb": lambda r: encoded(deflate_bomb(BOMB_MIB), "deflate"),
        "/raw-deflate-bomb": lambda r: encoded(deflate_bomb(BOMB_MIB, wrapped=False), "deflate"),
        "/small-gzip": lambda r: encoded(gzip.compress(small), "gzip"),
        "/small-deflate": lambda r: encoded(zlib.compress(small), "deflate"),
        "/two-members": lambda r: encoded(gzip.compress(b'{"a":') + gzip.compress(b"1}"), "gzip"),
        "/truncated": lambda r: encoded(gzip.compress(small)[:-12], "gzip"),
        "/not-gzip": lambda r: encoded(b"this is not gzip at all", "gzip"),
        "/brotli": lambda r: encoded(b"\x1b\x03\x00\xf8\xa5\x00", "br"),
        "/plain-too-big": lambda r: web.Response(body=b"x" * (MAX_BODY + 1)),
        "/plain-at-cap": lambda r: web.Response(body=b"x" * MAX_BODY),
    }

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/streamed-bomb":
            return await streamed(request)
        if request.path.startswith("/quote-bomb"):
            return encoded(bomb, "gzip")
        return routes[request.path](request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@contextmanager
def peak_rss(pid: int | None = None) -> Iterator[list[int]]:
    """The growth of a process's peak RSS (VmHWM, reset first) over the block, in bytes."""
    proc = f"/proc/{pid or os.getpid()}"
    out = [0]
    with open(f"{proc}/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    start = _status(proc, "VmRSS")
    yield out
    out[0] = _status(proc, "VmHWM") - start


def _status(proc: str, field: str) -> int:
    for line in Path(f"{proc}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in {proc}/status")


async def run(payload: HttpRequest | JupiterQuote, timeout: float = 20.0) -> Outcome:
    session = BoundSession("127.0.0.2")
    try:
        kind = str(type(payload).__struct_config__.tag)
        job = Dispatch(job_id=1, attempt=0, kind=kind, upstream="t", timeout=timeout, payload=payload)
        return await Executor(session, lambda e: None).execute(job)
    finally:
        await session.close()


@pytest.mark.parametrize("path", ["/gzip-bomb", "/streamed-bomb", "/deflate-bomb", "/raw-deflate-bomb"])
async def test_a_bomb_is_refused_at_the_cap_after_decompression(server: str, path: str) -> None:
    with peak_rss() as grew:
        out = await run(HttpRequest(url=server + path, max_body=1 << 40))  # a job cannot raise the cap
    assert out.result == "decode_error", out
    assert f"exceeds {MAX_BODY} bytes" in out.error and out.value is None
    assert grew[0] < 64 << 20, f"reading a {BOMB_MIB} MiB bomb grew the process by {grew[0] >> 20} MiB"


async def test_an_upstream_client_gets_the_same_cap(server: str) -> None:
    with peak_rss() as grew:
        out = await run(JupiterQuote(base_url=server + "/quote-bomb", input_mint=SOL, output_mint=USDC, amount=1))
    assert out.result == "decode_error" and "after decompression" in out.error, out
    assert grew[0] < 64 << 20


@pytest.mark.parametrize(
    ("path", "result", "says"),
    [
        ("/small-gzip", "ok", ""),
        ("/small-deflate", "ok", ""),
        ("/two-members", "ok", ""),
        ("/plain-at-cap", "ok", ""),
        ("/truncated", "decode_error", "ends before its compressed stream does"),
        ("/not-gzip", "decode_error", "does not decompress"),
        ("/brotli", "decode_error", "content-encoding 'br'"),
        ("/plain-too-big", "decode_error", "exceeds"),
    ],
)
async def test_compressed_answers_decode_or_say_why(server: str, path: str, result: str, says: str) -> None:
    out = await run(HttpRequest(url=server + path))
    assert out.result == result and says in out.error, out
    if result == "ok":
        assert isinstance(out.value, HttpResponse)
        body = out.value.body
        assert body == b'{"a":1}' if path == "/two-members" else body.startswith((b'{"ok"', b"xxxx"))


async def test_a_worker_process_survives_a_bomb_with_bounded_memory(tmp_path: Path, server: str) -> None:
    rt = tmp_path / "rt"
    async with Farm(farm_config(["127.0.0.120"], rt), runtime_dir=rt, log_level="critical") as farm:
        assert await farm.wait_ready(timeout=15)
        slot = farm.supervisor.slots["local/127.0.0.120"]
        pid = slot.pid
        assert pid is not None
        with peak_rss(pid) as grew:
            outs = await asyncio.gather(
                *(
                    farm.submit(JobSpec(HttpRequest(url=server + "/gzip-bomb"), upstream="t", timeout=20))
                    for _ in range(4)
                )
            )
        assert [o.result for o in outs] == ["decode_error"] * 4, outs
        assert all("after decompression" in o.error for o in outs)
        assert grew[0] < 128 << 20, f"4 bombs grew the worker by {grew[0] >> 20} MiB"
        await asyncio.sleep(1.5)  # longer than a heartbeat: a stalled worker would be on its way out
        ok = await farm.submit(JobSpec(HttpRequest(url=server + "/small-gzip"), upstream="t"))
        assert ok.result == "ok" and ok.ip == "127.0.0.120"
        assert slot.pid == pid and slot.restarts == 0 and farm.hub.workers["local/127.0.0.120"].pid == pid
