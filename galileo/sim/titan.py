"""Titan quote stream over WebSocket (``GET /titan/api/v1/ws``): auth, subprotocol, streams.

Error codes (Titan documents none) follow HTTP: 400 bad request, 404 unknown stream or no
route, 429 too many concurrent streams, 501 unknown request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
from aiohttp import WSMsgType, web
from solders.pubkey import Pubkey

from galileo.sim.accounts import JUPITER_PROGRAM, TITAN_PROGRAM
from galileo.sim.errors import json_response
from galileo.sim.state import COUNTED, SimState, state_of
from galileo.sim.stats import TitanConnection, TitanStream
from galileo.sim.titan_messages import (
    CONCURRENT_STREAMS,
    INTERVAL_MS,
    PROTOCOL,
    PROTOCOL_GZIP,
    PROVIDERS,
    ClientRequest,
    Codec,
    SwapQuoteRequest,
    server_info,
    swap_quotes,
)

__all__ = ["add_routes"]


def _token(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query.get("auth", "")


def _protocol(request: web.Request) -> str | None:
    offered = {p.strip() for h in request.headers.getall("Sec-WebSocket-Protocol", []) for p in h.split(",")}
    if PROTOCOL_GZIP in offered:
        return PROTOCOL_GZIP
    return PROTOCOL if PROTOCOL in offered else None


class _Session:
    """One connection: its codec, its streams and their pushing tasks."""

    def __init__(self, state: SimState, ws: web.WebSocketResponse, conn: TitanConnection, codec: Codec) -> None:
        self.state, self.ws, self.conn, self.codec = state, ws, conn, codec
        self.streams: dict[int, tuple[asyncio.Task[None], TitanStream]] = {}
        self.next_stream = 0

    async def send(self, message: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_bytes(self.codec.encode(message))

    async def error(self, request_id: int, code: int, message: str) -> None:
        await self.send({"Error": {"requestId": request_id, "code": code, "message": message}})

    async def handle(self, frame: bytes) -> None:
        try:
            req = self.codec.decode(frame)
        except (ValueError, msgspec.DecodeError) as exc:
            await self.error(0, 400, f"cannot decode request: {exc}")
            return
        if len(req.data) != 1:
            await self.error(req.id, 400, "request data must be a single-key map")
            return
        ((kind, body),) = req.data.items()
        if kind == "GetInfo":
            await self.send({"Response": {"requestId": req.id, "data": {"GetInfo": server_info()}}})
        elif kind == "NewSwapQuoteStream":
            await self.open_stream(req, body)
        elif kind == "StopStream":
            await self.stop_stream(req, body)
        elif kind == "GetVenues":
            labels = sorted({p.label for pools in self.state.accounts.pools.values() for p in pools})
            data: dict[str, Any] = {"labels": labels}
            if isinstance(body, dict) and body.get("includeProgramIds"):
                data["programIds"] = [bytes(JUPITER_PROGRAM), bytes(TITAN_PROGRAM)]
            await self.send({"Response": {"requestId": req.id, "data": {"GetVenues": data}}})
        elif kind == "ListProviders":
            providers = [{"id": p, "name": p, "kind": "DexAggregator"} for p in PROVIDERS]
            await self.send({"Response": {"requestId": req.id, "data": {"ListProviders": providers}}})
        else:
            await self.error(req.id, 501, f"unknown request {kind!r}")

    async def open_stream(self, req: ClientRequest, body: Any) -> None:
        try:
            params = msgspec.convert(body, SwapQuoteRequest)
            for name, key in (
                ("inputMint", params.swap.input_mint),
                ("outputMint", params.swap.output_mint),
                ("userPublicKey", params.transaction.user_public_key),
            ):
                if len(key) != 32:
                    raise ValueError(f"{name} must be 32 bytes")
        except (msgspec.ValidationError, ValueError) as exc:
            await self.error(req.id, 400, f"invalid NewSwapQuoteStream: {exc}")
            return
        if len(self.streams) >= CONCURRENT_STREAMS:
            await self.error(req.id, 429, f"too many concurrent streams (max {CONCURRENT_STREAMS})")
            return
        state = self.state
        state.seen(Pubkey(params.transaction.user_public_key))
        first = swap_quotes(state.prices, state.accounts, params, "probe", state.slot())
        if first is None:
            await self.error(req.id, 404, "no route found for this pair and amount")
            return
        lo, hi, default = INTERVAL_MS
        wanted = params.update.interval_ms if params.update and params.update.interval_ms else default
        interval = min(hi, max(lo, wanted))
        sid = self.next_stream
        self.next_stream += 1
        await self.send(
            {
                "Response": {
                    "requestId": req.id,
                    "data": {"NewSwapQuoteStream": {"intervalMs": interval}},
                    "stream": {"id": sid, "dataType": "SwapQuotes"},
                }
            }
        )
        record = state.stats.titan_stream(self.conn, sid, time.time())
        self.streams[sid] = (asyncio.ensure_future(self.push(sid, params, interval, record)), record)

    async def push(self, sid: int, params: SwapQuoteRequest, interval_ms: int, record: TitanStream) -> None:
        seq = 0
        while not self.ws.closed:
            slot = self.state.slot()
            quotes = swap_quotes(
                self.state.prices, self.state.accounts, params, f"swap:{self.conn.id}:{sid}:{seq}", slot
            )
            if quotes is not None:
                await self.send({"StreamData": {"id": sid, "seq": seq, "payload": {"SwapQuotes": quotes}}})
                seq += 1
                record.frames += 1
            await asyncio.sleep(interval_ms / 1000.0)

    def _forget(self, sid: int) -> asyncio.Task[None] | None:
        entry = self.streams.pop(sid, None)
        if entry is None:
            return None
        task, record = entry
        task.cancel()
        self.state.stats.titan_stream_closed(self.conn, record, time.time())
        return task

    async def stop_stream(self, req: ClientRequest, body: Any) -> None:
        sid = body.get("id") if isinstance(body, dict) else None
        task = self._forget(sid) if isinstance(sid, int) else None
        if task is None:
            await self.error(req.id, 404, f"unknown stream id {sid!r}")
            return
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await task
        await self.send({"Response": {"requestId": req.id, "data": {"StreamStopped": {"id": sid}}}})
        await self.send({"StreamEnd": {"id": sid}})

    async def close(self) -> None:
        tasks = [t for t in (self._forget(sid) for sid in list(self.streams)) if t is not None]
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task


async def ws_handler(request: web.Request) -> web.StreamResponse:
    """GET /titan/api/v1/ws: 401 without a valid token, else a WebSocket session."""
    state = state_of(request)
    token = _token(request)
    if not token or (state.config.titan_tokens and token not in state.config.titan_tokens):
        return json_response({"error": "Unauthorized: missing or invalid token"}, 401)
    protocol = _protocol(request)
    ws = web.WebSocketResponse(protocols=[protocol] if protocol else (), compress=False, timeout=2.0)
    await ws.prepare(request)
    ip = request.remote or ""
    state.stats.record(ip, "titan", "101", time.time())
    request[COUNTED] = True
    conn = state.stats.titan_open(ip, protocol or "", time.time())
    session = _Session(state, ws, conn, Codec(protocol == PROTOCOL_GZIP))
    state.websockets.add(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await session.handle(msg.data)
    finally:
        await session.close()
        conn.closed_at = time.time()
        state.websockets.discard(ws)
    return ws


def add_routes(app: web.Application) -> None:
    """Mount the Titan WebSocket."""
    app.router.add_get("/titan/api/v1/ws", ws_handler)
