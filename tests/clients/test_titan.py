"""Titan stream client: the whole lifecycle from a bound address against the simulator, and every ending."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
from aiohttp import WSMsgType, web
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from broker.jobs import SecretRef, TitanStream
from broker.results import TitanQuote, TitanStreamSummary
from broker.solana import Instruction
from galileo.sim import SimServer
from tests.clients.conftest import SOL, USDC, USER, SimFactory, Worker, sim_stats
from workers.clients.titan_codec import Framing, StreamData, best_quote

PROGRAMS = {
    "Metis": "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4",
    "Titan": "T1TANpTeScyeqVzzgNViGDNrkQ6qHz9KrSBS4aNXvGT",
}
TOKEN = SecretRef("Authorization", "GALILEO_TEST_TITAN_TOKEN", "Bearer ")


def stream(url: str, **kw: Any) -> TitanStream:
    fields: dict[str, Any] = {
        "input_mint": SOL,
        "output_mint": USDC,
        "amount": 10**9,
        "user_public_key": USER,
        "secret": TOKEN,
        "duration": 1.0,
        "interval_ms": 100,
    }
    return TitanStream(url=url, **{**fields, **kw})


@pytest.fixture
async def titan_sim(sim_factory: SimFactory, monkeypatch: pytest.MonkeyPatch) -> SimServer:
    monkeypatch.setenv("GALILEO_TEST_TITAN_TOKEN", "titan-jwt-123")
    return await sim_factory(titan_tokens=["titan-jwt-123"])


def ws_url(sim: SimServer) -> str:
    return sim.url + "/titan/api/v1/ws"


async def test_stream_lifecycle_from_a_bound_address(titan_sim: SimServer, worker: Worker) -> None:
    ran = await worker.run(stream(ws_url(titan_sim)), ip="127.0.0.5", timeout=5.0)
    out = ran.outcome
    assert out.result == "ok", out
    summary = out.value
    assert isinstance(summary, TitanStreamSummary) and summary.ended_by == "duration"
    assert summary.updates == len(ran.events) >= 3 and out.status == 101
    quotes = [e.value for e in ran.events]
    assert all(e.name == "quote" and e.job_id == ran.events[0].job_id for e in ran.events)
    assert all(isinstance(q, TitanQuote) for q in quotes)
    assert [q.seq for q in quotes] == list(range(len(quotes)))  # type: ignore[union-attr]
    for q in quotes:
        assert isinstance(q, TitanQuote) and q.stream_id == summary.stream_id
        assert set(q.providers) == {"Metis", "Titan"} and q.out_amount == max(q.providers.values())
        assert q.in_amount == 10**9 and q.compute_units_safe > q.compute_units > 0 and q.context_slot > 0
        assert all(isinstance(ix, Instruction) for ix in q.instructions)
        assert PROGRAMS[q.provider] in {ix.program_id for ix in q.instructions}
        assert all(Pubkey.from_string(m.pubkey) for ix in q.instructions for m in ix.accounts)
        assert q.alts and all(Pubkey.from_string(a) for a in q.alts) and q.route
    titan = (await sim_stats(titan_sim))["titan"]
    (conn,) = titan["connections"]
    assert conn["ip"] == "127.0.0.5" and conn["protocol"] == "v1.api.titan.ag+gzip"
    assert conn["open"] is False  # closed by us
    (st,) = titan["streams"]
    assert st["ip"] == "127.0.0.5" and st["active"] is False and titan["streams_closed"] == 1  # StopStream honoured
    assert st["frames"] >= summary.updates


async def test_plain_subprotocol_and_provider_filter(titan_sim: SimServer, worker: Worker) -> None:
    ran = await worker.run(stream(ws_url(titan_sim), compress=False, providers=["Titan"], duration=0.5))
    assert ran.outcome.result == "ok" and ran.events
    assert {e.value.provider for e in ran.events if isinstance(e.value, TitanQuote)} == {"Titan"}
    (conn,) = (await sim_stats(titan_sim))["titan"]["connections"]
    assert conn["protocol"] == "v1.api.titan.ag"


async def test_idle_stream_ends_after_idle_timeout(titan_sim: SimServer, worker: Worker) -> None:
    ran = await worker.run(stream(ws_url(titan_sim), interval_ms=10_000, idle_timeout=0.4, duration=5.0), timeout=8.0)
    out = ran.outcome
    assert out.result == "ok" and out.value == TitanStreamSummary(updates=1, stream_id=0, ended_by="idle")


async def test_refusals(titan_sim: SimServer, worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    unknown = await worker.run(stream(ws_url(titan_sim), input_mint=str(Keypair().pubkey())))
    assert unknown.outcome.result == "http_error" and "error 404" in unknown.outcome.error and not unknown.events
    bad_key = await worker.run(stream(ws_url(titan_sim), user_public_key="not-a-key"))
    assert bad_key.outcome.result == "decode_error" and "user_public_key" in bad_key.outcome.error
    monkeypatch.setenv("GALILEO_TEST_TITAN_TOKEN", "wrong")
    denied = await worker.run(stream(ws_url(titan_sim)))
    assert (denied.outcome.result, denied.outcome.status) == ("http_error", 401)


# --- a scripted Titan server for the endings the simulator does not produce ----------------------

Script = Callable[[web.WebSocketResponse], Awaitable[None]]


def route(provider: str, in_amount: int, out_amount: int) -> dict[str, Any]:
    key = bytes(Pubkey.from_string(PROGRAMS["Titan"]))
    return {
        "inAmount": in_amount,
        "outAmount": out_amount,
        "slippageBps": 0,
        "steps": [{"label": provider + "Pool", "allocPpb": 10**9}],
        "instructions": [{"p": key, "a": [{"p": key, "s": False, "w": True}], "d": b"\x01\x02"}],
        "addressLookupTables": [key],
        "newField": "tolerated",
    }


def data(seq: int, sid: int = 7, mode: str = "ExactIn") -> dict[str, Any]:
    quotes = {"A": route("A", 100, 90 + seq), "B": route("B", 95, 95)}
    return {
        "StreamData": {
            "id": sid,
            "seq": seq,
            "payload": {"SwapQuotes": {"id": "q", "swapMode": mode, "quotes": quotes}},
        }
    }


ServeScript = Callable[[Script], Awaitable[str]]


@pytest.fixture
async def received() -> list[str]:
    """The request kinds the scripted server received, in order (``close`` when the client closed)."""
    return []


@pytest.fixture
async def scripted(received: list[str]) -> AsyncIterator[ServeScript]:
    """Start a WebSocket server that opens stream 7, runs ``script``, and answers StopStream; returns its URL."""
    runners: list[web.AppRunner] = []

    async def serve(script: Script) -> str:
        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(protocols=["v1.api.titan.ag"])
            await ws.prepare(request)
            tasks: list[asyncio.Task[None]] = []
            async for msg in ws:
                if msg.type != WSMsgType.BINARY:
                    continue
                req = msgspec.msgpack.decode(msg.data)
                (kind,) = req["data"]
                received.append(kind)
                if kind == "NewSwapQuoteStream":
                    stream_info = {"id": 7, "dataType": "SwapQuotes"}
                    opened = {"requestId": req["id"], "data": {"NewSwapQuoteStream": {"intervalMs": 50}}}
                    await ws.send_bytes(frame({"Response": {**opened, "stream": stream_info}}))
                    tasks.append(asyncio.ensure_future(script(ws)))
                elif kind == "StopStream":
                    for task in tasks:
                        task.cancel()
                    stopped = {
                        "requestId": req["id"],
                        "data": {"StreamStopped": {"id": req["data"]["StopStream"]["id"]}},
                    }
                    await ws.send_bytes(frame({"Response": stopped}))
                    await ws.send_bytes(frame({"StreamEnd": {"id": req["data"]["StopStream"]["id"]}}))
            received.append("close")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return ws

        app = web.Application()
        app.router.add_get("/ws", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/ws"

    yield serve
    for runner in runners:
        await runner.cleanup()


def frame(message: dict[str, Any]) -> bytes:
    return msgspec.msgpack.encode(message)


async def end_with_error(ws: web.WebSocketResponse) -> None:
    await ws.send_bytes(frame(data(0)))
    await ws.send_bytes(frame({"StreamEnd": {"id": 7, "errorCode": 503, "errorMessage": "provider down"}}))


async def end_ok(ws: web.WebSocketResponse) -> None:
    for seq in range(2):
        await ws.send_bytes(frame(data(seq)))
    await ws.send_bytes(frame({"StreamEnd": {"id": 7}}))


async def hang_up(ws: web.WebSocketResponse) -> None:
    await ws.send_bytes(frame(data(0)))
    await ws.close()


async def garbage(ws: web.WebSocketResponse) -> None:
    await ws.send_bytes(b"\xc1\xc1")


async def bad_key(ws: web.WebSocketResponse) -> None:
    bad = data(0)
    bad["StreamData"]["payload"]["SwapQuotes"]["quotes"]["B"]["addressLookupTables"] = [b"short"]  # B is the best route
    await ws.send_bytes(frame(bad))


@pytest.mark.parametrize(
    ("script", "result", "error"),
    [
        (end_with_error, "http_error", "with error 503: provider down after 1 updates"),
        (end_ok, "ok", ""),
        (hang_up, "network_error", "closed the connection"),
        (garbage, "decode_error", "undecodable frame"),
        (bad_key, "decode_error", "32 bytes"),
    ],
)
async def test_server_endings(scripted: ServeScript, worker: Worker, script: Script, result: str, error: str) -> None:
    ran = await worker.run(stream(await scripted(script), secret=None, duration=3.0))
    assert ran.outcome.result == result, ran.outcome
    assert error in ran.outcome.error
    if result == "ok":
        assert ran.outcome.value == TitanStreamSummary(updates=2, stream_id=7, ended_by="server")
        assert [e.value.out_amount for e in ran.events if isinstance(e.value, TitanQuote)] == [95, 95]


async def keep_streaming(ws: web.WebSocketResponse) -> None:
    for seq in range(1000):
        await ws.send_bytes(frame(data(seq)))
        await asyncio.sleep(0.05)


async def test_stop_stream_is_sent_before_closing(scripted: ServeScript, received: list[str], worker: Worker) -> None:
    ran = await worker.run(stream(await scripted(keep_streaming), secret=None, duration=0.5))
    assert ran.outcome.value == TitanStreamSummary(updates=len(ran.events), stream_id=7, ended_by="duration")
    assert len(ran.events) >= 3
    for _ in range(100):  # the server notices the close a moment after our close handshake returns
        if received[-1] == "close":
            break
        await asyncio.sleep(0.01)
    assert received == ["GetInfo", "NewSwapQuoteStream", "StopStream", "close"]


def test_best_route_is_most_out_for_exact_in_and_least_in_for_exact_out() -> None:
    framing = Framing(None)
    exact_in = framing.decode(frame(data(9)))
    assert isinstance(exact_in, StreamData)
    best = best_quote(exact_in, 7, None)
    assert best is not None and (best.provider, best.out_amount, best.providers) == ("A", 99, {"A": 99, "B": 95})
    assert best.route == ["APool"] and best.alts == [PROGRAMS["Titan"]]
    assert best.instructions[0].data == b"\x01\x02" and best.instructions[0].accounts[0].is_writable
    exact_out = framing.decode(frame(data(9, mode="ExactOut")))
    assert isinstance(exact_out, StreamData)
    best = best_quote(exact_out, 7, None)
    assert best is not None and (best.provider, best.in_amount) == ("B", 95)
