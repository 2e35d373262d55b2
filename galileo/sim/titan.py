"""Titan quote stream over WebSocket (``GET /titan/api/v1/ws``): auth, subprotocol, streams, limits.

Titan's limits as its API states them (reference §4.2, §4.5), each switchable at run time
(``/sim/control``): a token's ``jti`` holds at most ``titan_connections_per_jti`` connections
(one more is refused before the upgrade: 409 Conflict); a connection holds at most
``titan_concurrent_streams`` streams (GetInfo says so; one more is an ``Error``, code 429); a
JWT past its ``exp`` is refused (401) and, with ``titan_token_expiry``, an open connection is
closed when its token expires (close code 1008, reason ``token expired``).

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
from galileo.sim.titan_auth import TokenClaims, claims_of, fingerprint
from galileo.sim.titan_messages import (
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
            info = server_info(self.state.config.titan_concurrent_streams)
            await self.send({"Response": {"requestId": req.id, "data": {"GetInfo": info}}})
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
        limit = self.state.config.titan_concurrent_streams
        if len(self.streams) >= limit:
            self.state.stats.titan_refusal("stream_limit")
            await self.error(req.id, 429, f"too many concurrent streams (max {limit})")
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
        pair = f"{Pubkey(params.swap.input_mint)}->{Pubkey(params.swap.output_mint)}"
        record = state.stats.titan_stream(self.conn, sid, time.time(), pair, params.swap.amount)
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


class TitanSessions:
    """The open connections of each token (by jti): the one-connection-per-jti rule's ledger."""

    def __init__(self) -> None:
        self.by_jti: dict[str, set[web.WebSocketResponse]] = {}

    def count(self, jti: str) -> int:
        return len(self.by_jti.get(jti, ()))

    def add(self, jti: str, ws: web.WebSocketResponse) -> None:
        self.by_jti.setdefault(jti, set()).add(ws)

    def discard(self, jti: str, ws: web.WebSocketResponse) -> None:
        held = self.by_jti.get(jti)
        if held is not None:
            held.discard(ws)
            if not held:
                del self.by_jti[jti]


SESSIONS = web.AppKey("titan_sessions", TitanSessions)


def _refused(state: SimState, reason: str, status: int, message: str) -> web.Response:
    state.stats.titan_refusal(reason)
    return json_response({"error": message}, status)


async def _expire(state: SimState, ws: web.WebSocketResponse, conn: TitanConnection, exp: float) -> None:
    """Close ``ws`` when its token expires (checked again each second while expiry is switched off)."""
    await asyncio.sleep(max(0.0, exp - time.time()))
    while not ws.closed:
        if state.config.titan_token_expiry:
            conn.close_reason = "token expired"
            state.stats.titan_refusal("token_expired")
            await ws.close(code=1008, message=b"token expired")
            return
        await asyncio.sleep(1.0)


async def ws_handler(request: web.Request) -> web.StreamResponse:
    """GET /titan/api/v1/ws: 401 without a valid token (or with an expired one), 409 when the
    token already holds its connections, else a WebSocket session."""
    state = state_of(request)
    token = _token(request)
    if not token or (state.config.titan_tokens and token not in state.config.titan_tokens):
        return _refused(state, "unauthorized", 401, "Unauthorized: missing or invalid token")
    claims: TokenClaims = claims_of(token)
    if state.config.titan_token_expiry and claims.exp is not None and claims.exp <= time.time():
        return _refused(state, "token_expired", 401, "Unauthorized: token expired")
    sessions = request.app[SESSIONS]
    limit = state.config.titan_connections_per_jti
    if limit and sessions.count(claims.jti) >= limit:
        return _refused(
            state,
            "token_in_use",
            409,
            f"Conflict: this token (jti {fingerprint(claims.jti)}) already holds {limit} connection(s)",
        )
    protocol = _protocol(request)
    ws = web.WebSocketResponse(protocols=[protocol] if protocol else (), compress=False, timeout=2.0)
    sessions.add(claims.jti, ws)  # before the first await: two upgrades at once cannot both pass
    try:
        await ws.prepare(request)
        ip = request.remote or ""
        state.stats.record(ip, "titan", "101", time.time())
        request[COUNTED] = True
        conn = state.stats.titan_open(ip, protocol or "", time.time(), fingerprint(claims.jti))
        session = _Session(state, ws, conn, Codec(protocol == PROTOCOL_GZIP))
        state.websockets.add(ws)
        expiry = asyncio.ensure_future(_expire(state, ws, conn, claims.exp)) if claims.exp is not None else None
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await session.handle(msg.data)
        finally:
            if expiry is not None:
                expiry.cancel()
            await session.close()
            conn.closed_at = time.time()
            state.websockets.discard(ws)
    finally:
        sessions.discard(claims.jti, ws)
    return ws


def add_routes(app: web.Application) -> None:
    """Mount the Titan WebSocket."""
    app[SESSIONS] = TitanSessions()
    app.router.add_get("/titan/api/v1/ws", ws_handler)
