"""Titan client: one connection per token with its streams multiplexed on it, against the simulator's
real limits, and every ending a scripted server can produce."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
from aiohttp import WSMsgType, web
from solders.keypair import Keypair
from solders.pubkey import Pubkey

import workers.clients.titan as titan_client
from broker.jobs import SecretRef, TitanConnect, TitanStop, TitanSubscribe
from broker.results import TitanConnectionSummary, TitanInfo, TitanQuote, TitanStreamEnded, TitanStreamOpened
from broker.solana import Instruction
from galileo.sim import SimServer
from galileo.sim.titan_auth import mint_token
from tests.clients.conftest import SOL, USDC, USER, Running, SimFactory, Worker, control, sim_stats
from workers.clients.titan_codec import Framing, StreamData, best_quote
from workers.secrets import SecretPolicy

PROGRAMS = {
    "Metis": "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4",
    "Titan": "T1TANpTeScyeqVzzgNViGDNrkQ6qHz9KrSBS4aNXvGT",
}
TOKEN = SecretRef("Authorization", "GALILEO_TEST_TITAN_TOKEN", "Bearer ")


def connect(url: str, lease: str = "TITAN#1", **kw: Any) -> TitanConnect:
    return TitanConnect(url=url, lease=lease, **{"secret": TOKEN, **kw})


def subscribe(lease: str = "TITAN#1", amount: int = 10**9, **kw: Any) -> TitanSubscribe:
    fields: dict[str, Any] = {"input_mint": SOL, "output_mint": USDC, "user_public_key": USER, "interval_ms": 50}
    return TitanSubscribe(lease=lease, amount=amount, **{**fields, **kw})


@pytest.fixture
async def titan_sim(sim_factory: SimFactory, monkeypatch: pytest.MonkeyPatch) -> SimServer:
    monkeypatch.setenv("GALILEO_TEST_TITAN_TOKEN", "titan-jwt-123")
    return await sim_factory(titan_tokens=["titan-jwt-123"])


def ws_url(sim: SimServer) -> str:
    return sim.url + "/titan/api/v1/ws"


async def opened(worker: Worker, job: TitanSubscribe, ip: str = "127.0.0.5") -> int:
    ran = await worker.run(job, ip=ip)
    assert ran.outcome.result == "ok" and isinstance(ran.outcome.value, TitanStreamOpened), ran.outcome
    return ran.outcome.value.stream_id


async def test_streams_share_one_connection_up_to_get_info_limit(titan_sim: SimServer, worker: Worker) -> None:
    held = worker.start(connect(ws_url(titan_sim)), ip="127.0.0.5")
    (open_,) = await held.wait_for("open")
    info = open_.value
    assert isinstance(info, TitanInfo) and info.concurrent_streams == 4 and info.protocol == "v1.api.titan.ag+gzip"
    sids = await asyncio.gather(*(opened(worker, subscribe(amount=10**9 * (i + 1))) for i in range(4)))
    assert len(set(sids)) == 4
    await held.wait_for("quote", 12)
    quotes = [e.value for e in held.named("quote")]
    assert all(isinstance(q, TitanQuote) for q in quotes)
    assert {q.stream_id for q in quotes if isinstance(q, TitanQuote)} == set(sids)
    for q in quotes:
        assert isinstance(q, TitanQuote)
        assert set(q.providers) == {"Metis", "Titan"} and q.out_amount == max(q.providers.values())
        assert q.in_amount == 10**9 * (sids.index(q.stream_id) + 1)
        assert q.compute_units_safe > q.compute_units > 0 and q.context_slot > 0 and q.alts and q.route
        assert all(isinstance(ix, Instruction) for ix in q.instructions)
        assert PROGRAMS[q.provider] in {ix.program_id for ix in q.instructions}
    titan = (await sim_stats(titan_sim))["titan"]
    (conn,) = titan["connections"]  # four streams, one connection, one source address
    assert conn["ip"] == "127.0.0.5" and conn["open"] and conn["active_streams"] == 4
    assert titan["active_streams_by_ip"] == {"127.0.0.5": 4}

    # A fifth is refused with Titan's error, until one of the four is stopped.
    fifth = (await worker.run(subscribe(amount=7 * 10**9), ip="127.0.0.5")).outcome
    assert (fifth.result, fifth.status) == ("http_error", 429) and "concurrent streams (max 4)" in fifth.error
    stopped = await worker.run(TitanStop(lease="TITAN#1", stream_id=sids[0]), ip="127.0.0.5")
    assert stopped.outcome.result == "ok"
    (end,) = await held.wait_for("stream_end")
    assert end.value == TitanStreamEnded(stream_id=sids[0], updates=end.value.updates, stopped=True)  # type: ignore[union-attr]
    fifth_sid = await opened(worker, subscribe(amount=7 * 10**9))

    # A renewal replaces a stream in place: still four, the old one ended as stopped.
    renewed = await opened(worker, subscribe(amount=2 * 10**9, replace=sids[1]))
    assert renewed not in (*sids, fifth_sid)
    await held.wait_for("stream_end", 2)
    count = len(held.named("quote"))
    await held.wait_for("quote", count + 8)
    late = [e.value for e in held.events[count:] if isinstance(e.value, TitanQuote)]
    assert {q.stream_id for q in late} <= {renewed, fifth_sid, sids[2], sids[3]}  # nothing of a stopped stream

    assert (await worker.run(TitanStop(lease="TITAN#1"), ip="127.0.0.5")).outcome.result == "ok"
    outcome = await held.task
    assert outcome.result == "ok" and isinstance(outcome.value, TitanConnectionSummary)
    assert outcome.value.ended_by == "closed" and outcome.value.streams_opened == 6
    for _ in range(100):
        titan = (await sim_stats(titan_sim))["titan"]
        if titan["connections_open"] == 0:
            break
        await asyncio.sleep(0.02)
    assert titan["streams_opened"] == titan["streams_closed"] == 6  # every stream was stopped
    assert titan["refused"] == {"stream_limit": 1}


async def test_one_connection_per_token_then_a_second_is_refused(titan_sim: SimServer, worker: Worker) -> None:
    first = worker.start(connect(ws_url(titan_sim), "TITAN#1"), ip="127.0.0.6")
    await first.wait_for("open")
    second = await worker.run(connect(ws_url(titan_sim), "TITAN#2"), ip="127.0.0.7")
    assert (second.outcome.result, second.outcome.status) == ("http_error", 409)
    assert "Titan refused the WebSocket handshake" in second.outcome.error
    # Switched at run time: two connections per token are fine, so is the second now.
    await control(titan_sim, {"titan_connections_per_jti": 2})
    again = worker.start(connect(ws_url(titan_sim), "TITAN#3"), ip="127.0.0.7")
    await again.wait_for("open")
    stats = (await sim_stats(titan_sim))["titan"]
    assert stats["refused"] == {"token_in_use": 1} and stats["connections_open"] == 2
    assert len({c["token"] for c in stats["connections"]}) == 1 and "titan-jwt" not in str(stats)
    for lease, ip, held in (("TITAN#1", "127.0.0.6", first), ("TITAN#3", "127.0.0.7", again)):
        await worker.run(TitanStop(lease=lease), ip=ip)
        assert (await held.task).result == "ok"


async def test_a_connection_closes_when_its_token_expires(
    sim_factory: SimFactory, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = await sim_factory()
    monkeypatch.setenv("GALILEO_TEST_TITAN_TOKEN", mint_token("jti-exp", ttl=1.5))
    held = worker.start(connect(ws_url(sim)), ip="127.0.0.8")
    await held.wait_for("open")
    await opened(worker, subscribe(), ip="127.0.0.8")
    (closed,) = await held.wait_for("closed", timeout=5)
    summary = closed.value
    assert isinstance(summary, TitanConnectionSummary)
    assert summary == TitanConnectionSummary(
        ended_by="server", streams_opened=1, updates=summary.updates, close_code=1008, close_reason="token expired"
    )
    outcome = await held.task
    assert outcome.result == "network_error" and "1008: token expired" in outcome.error
    refused = await worker.run(connect(ws_url(sim), "TITAN#2"), ip="127.0.0.8")
    assert (refused.outcome.result, refused.outcome.status) == ("http_error", 401)
    assert (await sim_stats(sim))["titan"]["refused"] == {"token_expired": 2}


async def test_stream_jobs_find_only_their_own_open_connection(titan_sim: SimServer, worker: Worker) -> None:
    gone = await worker.run(subscribe("TITAN#9"), ip="127.0.0.5")
    assert gone.outcome.result == "network_error" and "TITAN#9 is not open on this worker" in gone.outcome.error
    held = worker.start(connect(ws_url(titan_sim)), ip="127.0.0.5")
    await held.wait_for("open")
    elsewhere = await worker.run(subscribe(), ip="127.0.0.6")  # another worker: not its connection
    assert elsewhere.outcome.result == "network_error"
    bad_key = await worker.run(subscribe(user_public_key="not-a-key"), ip="127.0.0.5")
    assert bad_key.outcome.result == "decode_error" and "user_public_key" in bad_key.outcome.error
    no_route = await worker.run(subscribe(input_mint=str(Keypair().pubkey())), ip="127.0.0.5")
    assert (no_route.outcome.result, no_route.outcome.status) == ("http_error", 404)
    twice = await worker.run(connect(ws_url(titan_sim)), ip="127.0.0.5")
    assert twice.outcome.result == "decode_error" and "already open" in twice.outcome.error
    await worker.run(TitanStop(lease="TITAN#1"), ip="127.0.0.5")
    await held.task


async def test_the_token_goes_only_to_the_configured_titan_origin(titan_sim: SimServer, worker: Worker) -> None:
    policy = SecretPolicy(headers={"GALILEO_TEST_TITAN_TOKEN": ["wss://api.titan.exchange:443"]})
    refused = await worker.run(connect(ws_url(titan_sim)), ip="127.0.0.5", secrets=policy)
    assert refused.outcome.result == "decode_error" and refused.outcome.error.startswith("refused:")
    assert "GALILEO_TEST_TITAN_TOKEN is sent only to wss://api.titan.exchange:443" in refused.outcome.error
    assert (await sim_stats(titan_sim))["titan"]["connections_total"] == 0


# --- a scripted Titan server for the endings the simulator does not produce ----------------------

Script = Callable[[web.WebSocketResponse, int], Awaitable[None]]


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


def frame(message: dict[str, Any]) -> bytes:
    return msgspec.msgpack.encode(message)


INFO = {"settings": {"connection": {"concurrentStreams": 2}, "quoteUpdate": {"intervalMs": {"min": 50}}}}
ServeScript = Callable[..., Awaitable[str]]


@pytest.fixture
async def received() -> list[str]:
    """The request kinds the scripted server received, in order (``close`` when the client closed)."""
    return []


@pytest.fixture
async def scripted(received: list[str]) -> AsyncIterator[ServeScript]:
    """A WebSocket server that answers GetInfo, opens streams 7, 8 ... (each running ``script``, after
    ``delay`` seconds), and answers StopStream; returns its URL."""
    runners: list[web.AppRunner] = []

    async def serve(script: Script, delay: float = 0.0) -> str:
        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(protocols=["v1.api.titan.ag"])
            await ws.prepare(request)
            tasks: list[asyncio.Task[None]] = []
            next_sid = 7

            async def open_stream(request_id: int, sid: int) -> None:
                await asyncio.sleep(delay)
                opened = {"requestId": request_id, "data": {"NewSwapQuoteStream": {"intervalMs": 50}}}
                await ws.send_bytes(frame({"Response": {**opened, "stream": {"id": sid, "dataType": "SwapQuotes"}}}))
                await script(ws, sid)

            async for msg in ws:
                if msg.type != WSMsgType.BINARY:
                    continue
                req = msgspec.msgpack.decode(msg.data)
                (kind,) = req["data"]
                received.append(kind)
                if kind == "GetInfo":
                    await ws.send_bytes(frame({"Response": {"requestId": req["id"], "data": {"GetInfo": INFO}}}))
                elif kind == "NewSwapQuoteStream":
                    tasks.append(asyncio.ensure_future(open_stream(req["id"], next_sid)))
                    next_sid += 1
                elif kind == "StopStream":
                    sid = req["data"]["StopStream"]["id"]
                    stopped = {"requestId": req["id"], "data": {"StreamStopped": {"id": sid}}}
                    await ws.send_bytes(frame({"Response": stopped}))
                    await ws.send_bytes(frame(data(99, sid)))  # queued before the stop: must be dropped
                    await ws.send_bytes(frame({"StreamEnd": {"id": sid}}))
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


async def end_with_error(ws: web.WebSocketResponse, sid: int) -> None:
    await ws.send_bytes(frame(data(0, sid)))
    await ws.send_bytes(frame({"StreamEnd": {"id": sid, "errorCode": 503, "errorMessage": "provider down"}}))


async def end_without_data(ws: web.WebSocketResponse, sid: int) -> None:
    await ws.send_bytes(frame({"StreamEnd": {"id": sid}}))


async def hang_up(ws: web.WebSocketResponse, sid: int) -> None:
    await ws.send_bytes(frame(data(0, sid)))
    await ws.close()


async def garbage(ws: web.WebSocketResponse, sid: int) -> None:
    for _ in range(titan_client.MAX_BAD_IN_A_ROW):
        await ws.send_bytes(b"\xc1\xc1")


async def one_bad_key(ws: web.WebSocketResponse, sid: int) -> None:
    bad = data(0, sid)
    bad["StreamData"]["payload"]["SwapQuotes"]["quotes"]["B"]["addressLookupTables"] = [b"short"]
    await ws.send_bytes(frame(bad))  # dropped and counted; the stream goes on
    for seq in range(1, 1000):
        await ws.send_bytes(frame(data(seq, sid)))
        await asyncio.sleep(0.02)


async def run_script(serve: ServeScript, worker: Worker, script: Script, **kw: Any) -> tuple[Running, int | None]:
    held = worker.start(connect(await serve(script, **kw), secret=None), timeout=10.0)
    await held.wait_for("open")
    ran = await worker.run(subscribe(), timeout=3.0)
    sid = ran.outcome.value.stream_id if isinstance(ran.outcome.value, TitanStreamOpened) else None
    return held, sid


async def test_stream_ends_are_events_and_the_connection_lives_on(scripted: ServeScript, worker: Worker) -> None:
    held, _ = await run_script(scripted, worker, end_with_error)
    (end,) = await held.wait_for("stream_end")
    assert end.value == TitanStreamEnded(stream_id=7, updates=1, error_code=503, error_message="provider down")
    second = await worker.run(subscribe(), timeout=3.0)
    assert isinstance(second.outcome.value, TitanStreamOpened) and second.outcome.value.stream_id == 8
    await held.wait_for("stream_end", 2)
    assert [e.value.out_amount for e in held.named("quote") if isinstance(e.value, TitanQuote)] == [95, 95]
    await worker.run(TitanStop(lease="TITAN#1"))
    assert (await held.task).result == "ok"


async def test_a_stream_without_data_ends_with_no_updates(scripted: ServeScript, worker: Worker) -> None:
    held, _ = await run_script(scripted, worker, end_without_data)
    (end,) = await held.wait_for("stream_end")
    assert end.value == TitanStreamEnded(stream_id=7, updates=0)  # read as "no route" by the coordinator
    await worker.run(TitanStop(lease="TITAN#1"))
    await held.task


async def test_server_hang_up_is_a_network_error_with_a_closed_event(scripted: ServeScript, worker: Worker) -> None:
    held, _ = await run_script(scripted, worker, hang_up)
    outcome = await held.task
    assert outcome.result == "network_error" and "closed the connection" in outcome.error
    (closed,) = held.named("closed")
    assert isinstance(closed.value, TitanConnectionSummary) and closed.value.ended_by == "server"


async def test_garbage_frames_are_dropped_until_too_many_in_a_row(scripted: ServeScript, worker: Worker) -> None:
    held, _ = await run_script(scripted, worker, garbage)
    outcome = await held.task
    assert outcome.result == "decode_error" and "undecodable frames in a row" in outcome.error


async def test_one_bad_update_is_dropped_and_the_stream_goes_on(
    scripted: ServeScript, received: list[str], worker: Worker
) -> None:
    held, sid = await run_script(scripted, worker, one_bad_key)
    await held.wait_for("quote", 3)
    assert all(isinstance(e.value, TitanQuote) and e.value.seq >= 1 for e in held.named("quote"))
    assert (await worker.run(TitanStop(lease="TITAN#1", stream_id=sid))).outcome.result == "ok"
    quotes = len(held.named("quote"))
    await held.wait_for("stream_end")
    await worker.run(TitanStop(lease="TITAN#1"))
    outcome = await held.task
    assert outcome.result == "ok" and isinstance(outcome.value, TitanConnectionSummary)
    assert outcome.value.bad_frames == 1 and len(held.named("quote")) == quotes  # the queued seq 99 was dropped
    for _ in range(100):  # the server notices the close a moment after our close handshake returns
        if received[-1] == "close":
            break
        await asyncio.sleep(0.01)
    assert received == ["GetInfo", "NewSwapQuoteStream", "StopStream", "close"]


async def test_a_stream_answered_after_we_gave_up_is_stopped(
    scripted: ServeScript, received: list[str], worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(titan_client, "ANSWER_WAIT", 0.2)
    held, sid = await run_script(scripted, worker, one_bad_key, delay=0.5)
    assert sid is None  # the subscribe timed out ...
    for _ in range(200):  # ... and the stream that came anyway was stopped, never reported
        if "StopStream" in received:
            break
        await asyncio.sleep(0.01)
    assert received == ["GetInfo", "NewSwapQuoteStream", "StopStream"]
    await asyncio.sleep(0.1)
    assert not held.named("quote")
    await worker.run(TitanStop(lease="TITAN#1"))
    await held.task


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
