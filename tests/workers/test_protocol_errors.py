"""An answer that is not HTTP is ``protocol_error`` with no status, never an "HTTP 400" nobody sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import workers.clients  # noqa: F401  (registers the upstream handlers)
from broker.jobs import HttpRequest, JupiterQuote, RpcLatestBlockhash
from broker.protocol import RESULTS, Dispatch, Outcome
from broker.types import JobSpec
from galileo.farm.coordinator import Farm
from tests.farm.conftest import farm_config
from workers.executor import Executor
from workers.session import BoundSession

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"

ANSWERS = {
    "garbage-status": [b"HTTP/1.1 abc garbage\r\n\r\n"],
    "not-http": [b"SSH-2.0-OpenSSH_9.6\r\n"],
    "megabyte-header": [b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20) + b"\r\nContent-Length: 2\r\n\r\nok"],
    "late-megabyte-header": [b"HTTP/1.1 200 OK\r\n", b"X-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"],
    "header-without-colon": [b"HTTP/1.1 200 OK\r\nBad Header\r\nContent-Length: 2\r\n\r\nok"],
    "many-headers": [b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(200)) + b"\r\n"],
    "two-lengths": [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"],
}


@pytest.fixture
async def garbage() -> AsyncIterator[Callable[[str], str]]:
    """A TCP server answering each path's name with its bytes from ANSWERS, then closing."""

    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        head = await reader.readuntil(b"\r\n\r\n")
        name = head.split(b" ", 2)[1].decode().strip("/").split("/")[0]
        try:
            for part in ANSWERS[name]:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass  # the client gave up on the answer: that is the point
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield lambda name: f"http://127.0.0.1:{port}/{name}"
    await asyncio.gather(*handlers, return_exceptions=True)
    server.close()
    await server.wait_closed()


async def run(payload: HttpRequest | JupiterQuote | RpcLatestBlockhash) -> Outcome:
    session = BoundSession("127.0.0.2")
    try:
        kind = str(type(payload).__struct_config__.tag)
        job = Dispatch(job_id=1, attempt=0, kind=kind, upstream="t", timeout=5.0, payload=payload)
        return await Executor(session, lambda e: None).execute(job)
    finally:
        await session.close()


@pytest.mark.parametrize("name", sorted(ANSWERS))
async def test_an_answer_that_is_not_http_is_a_protocol_error(garbage: Callable[[str], str], name: str) -> None:
    out = await run(HttpRequest(url=garbage(name)))
    assert (out.result, out.status) == ("protocol_error", 0), out
    assert "not valid HTTP" in out.error and "400" not in out.error


async def test_upstream_clients_report_it_too(garbage: Callable[[str], str]) -> None:
    quote = await run(JupiterQuote(base_url=garbage("garbage-status"), input_mint=SOL, output_mint=USDC, amount=1))
    rpc = await run(RpcLatestBlockhash(url=garbage("megabyte-header")))
    for out in (quote, rpc):
        assert (out.result, out.status) == ("protocol_error", 0), out


async def test_a_real_status_stays_a_status(garbage: Callable[[str], str]) -> None:
    ANSWERS["weird-status"] = [b"HTTP/1.1 599 Odd\r\nContent-Length: 2\r\n\r\nok"]
    out = await run(HttpRequest(url=garbage("weird-status")))
    assert (out.result, out.status) == ("http_error", 599)


async def test_the_farm_counts_it_as_its_own_result(tmp_path: Path, garbage: Callable[[str], str]) -> None:
    assert "protocol_error" in RESULTS
    rt = tmp_path / "rt"
    async with Farm(farm_config(["127.0.0.121"], rt), runtime_dir=rt, log_level="critical") as farm:
        assert await farm.wait_ready(timeout=15)
        out = await farm.submit(JobSpec(HttpRequest(url=garbage("not-http")), upstream="t", task="probe"))
        assert (out.result, out.status) == ("protocol_error", 0), out
        host, port = await farm.metrics.serve("127.0.0.1:0")
        async with aiohttp.ClientSession() as http, http.get(f"http://{host}:{port}/metrics") as resp:
            text = await resp.text()
        line = 'galileo_ip_requests_total{ip="127.0.0.121",result="protocol_error",task="probe"} 1.0'
        assert line in text
        snap = farm.snapshot()
        assert snap["farm"]["results"]["protocol_error"] == 1
        assert next(w for w in snap["workers"] if w["ip"] == "127.0.0.121")["errors"] == 1
