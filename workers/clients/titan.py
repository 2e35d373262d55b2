"""Titan quote stream over WebSocket: a long-lived job that emits one Event per update (reference §4).

The WebSocket is opened through the worker's bound session (``ctx.http.ws_connect``), so it
leaves from the worker's IP. We offer ``v1.api.titan.ag+gzip, v1.api.titan.ag`` and gzip every
frame iff the server chose ``+gzip``; auth is ``Authorization: Bearer <token>`` from a SecretRef.

Lifecycle: GetInfo, NewSwapQuoteStream, then one ``quote`` Event (value TitanQuote, the best
route) per StreamData, until ``duration`` is up (``ended_by="duration"``), the server ends the
stream (``"server"``), or ``idle_timeout`` passes without an update (``"idle"``). Then
StopStream, a short wait for StreamEnd, close. Outcomes:

* ``ok`` with TitanStreamSummary(updates, stream_id, ended_by);
* ``timeout`` when idle_timeout passed before the first update (no route, as the bot reads it);
* ``http_error`` for an ``Error`` answering the stream request, or StreamEnd with errorCode;
* ``rate_limited`` / ``http_error`` for a refused handshake (429 / 401 ...);
* ``network_error`` when the server closes the connection mid-stream;
* ``decode_error`` for a frame that is not the documented MessagePack.
"""

from __future__ import annotations

import logging
import time

import aiohttp
import msgspec

from broker.jobs import TitanStream
from broker.protocol import Outcome, ResultName
from broker.results import TitanStreamSummary
from workers.classify import classify_status
from workers.clients.titan_codec import (
    MAX_FRAME,
    PROTOCOL,
    PROTOCOL_GZIP,
    ErrorMessage,
    Framing,
    Response,
    ServerMessage,
    StreamData,
    StreamEnd,
    best_quote,
    new_stream_request,
)
from workers.clients.transport import Call, upstream
from workers.session import family_mismatch

__all__ = ["STOP_GRACE", "titan_stream"]

log = logging.getLogger("workers.clients.titan")

STOP_GRACE = 1.0  # seconds to wait for StreamEnd after StopStream, and again for the close handshake


class _Closed(Exception):
    """The server closed the connection."""


class _Session:
    """One stream on one connection."""

    def __init__(self, call: Call, job: TitanStream, ws: aiohttp.ClientWebSocketResponse, started: float) -> None:
        self.call, self.job, self.ws = call, job, ws
        self.framing = Framing(ws.protocol)
        self.started = started
        self.handshake = time.perf_counter() - started  # the latency we report: the upstream's answer
        self.next_request = 1
        self.open_request = 0
        self.stream_id: int | None = None
        self.updates = 0

    async def send(self, data: dict[str, object]) -> int:
        request_id = self.next_request
        self.next_request += 1
        await self.ws.send_bytes(self.framing.encode(request_id, data))
        return request_id

    async def receive(self, timeout: float) -> ServerMessage | None:
        """The next server message, None on timeout or for kinds we skip; _Closed when the socket ends."""
        try:
            msg = await self.ws.receive(timeout=max(timeout, 0.001))  # 0 would mean "no timeout"
        except TimeoutError:
            return None
        if msg.type == aiohttp.WSMsgType.BINARY:
            return self.framing.decode(msg.data)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            raise _Closed(f"code {self.ws.close_code}")
        if msg.type == aiohttp.WSMsgType.ERROR:
            raise _Closed(f"error {msg.data}")
        return None  # text frames are not part of the API

    def failure(self, result: ResultName, error: str) -> Outcome:
        return Outcome(result=result, status=101, latency=self.handshake, error=error)

    def summary(self, stream_id: int, ended_by: str) -> Outcome:
        value = TitanStreamSummary(updates=self.updates, stream_id=stream_id, ended_by=ended_by)
        return Outcome(result="ok", status=101, latency=self.handshake, value=value)

    async def run(self) -> Outcome:
        job = self.job
        await self.send({"GetInfo": {}})
        self.open_request = await self.send(new_stream_request(job))
        # the budget bounds the duration: keep time for StopStream and the close handshake
        stop_at = min(self.started + job.duration, self.started + self.call.budget - 2 * STOP_GRACE)
        last_update = time.perf_counter()
        while True:
            now = time.perf_counter()
            idle = now - last_update >= job.idle_timeout
            if now >= stop_at or idle:
                if self.stream_id is None:
                    return self.failure("timeout", "Titan did not open the stream in time")
                if idle and self.updates == 0:
                    await self.stop(self.stream_id)
                    return self.failure("timeout", f"no quote from Titan within idle_timeout {job.idle_timeout:g}s")
                await self.stop(self.stream_id)
                return self.summary(self.stream_id, "idle" if idle and now < stop_at else "duration")
            msg = await self.receive(min(stop_at, last_update + job.idle_timeout) - now)
            if isinstance(msg, StreamData) and msg.id == self.stream_id:
                quote = best_quote(msg, msg.id, job.swap_mode)
                if quote is not None:
                    self.updates += 1
                    last_update = time.perf_counter()
                    self.call.emit("quote", quote)
            elif isinstance(msg, Response) and msg.request_id == self.open_request and msg.stream is not None:
                self.stream_id = msg.stream.id
            elif isinstance(msg, ErrorMessage):
                if msg.request_id == self.open_request:
                    return self.failure("http_error", f"Titan refused the stream: error {msg.code}: {msg.message}")
                log.info("titan error for request %d: %d %s", msg.request_id, msg.code, msg.message)
            elif isinstance(msg, StreamEnd) and msg.id == self.stream_id:
                if msg.error_code is not None:
                    return self.failure(
                        "http_error",
                        f"Titan ended stream {msg.id} with error {msg.error_code}: {msg.error_message or ''}"
                        f" after {self.updates} updates",
                    )
                return self.summary(msg.id, "server")

    async def stop(self, stream_id: int) -> None:
        """Send StopStream and wait briefly for its StreamEnd (late StreamData is dropped)."""
        if self.ws.closed:
            return
        await self.send({"StopStream": {"id": stream_id}})
        deadline = time.perf_counter() + STOP_GRACE
        while (left := deadline - time.perf_counter()) > 0:
            try:
                msg = await self.receive(left)
            except (_Closed, ValueError, msgspec.DecodeError):
                return
            if isinstance(msg, StreamEnd) and msg.id == stream_id:
                return


@upstream(TitanStream)
async def titan_stream(call: Call, job: TitanStream) -> Outcome:
    """Stream quotes for ``job``; see the module docstring for events and outcomes."""
    try:
        new_stream_request(job)  # a bad key fails here, before any connection
    except ValueError as exc:
        return Outcome(result="decode_error", error=f"titan: {exc}")
    mismatch = family_mismatch(job.url, call.ctx.ip)
    if mismatch:
        return Outcome(result="network_error", error=mismatch)
    started = time.perf_counter()
    try:
        ws = await call.ctx.http.ws_connect(
            job.url,
            protocols=(PROTOCOL_GZIP, PROTOCOL) if job.compress else (PROTOCOL,),
            headers=call.auth(job.secret),
            autoping=True,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=STOP_GRACE),
            max_msg_size=MAX_FRAME,
        )
    except aiohttp.WSServerHandshakeError as exc:
        latency = time.perf_counter() - started
        retry = exc.headers.get("Retry-After") if exc.headers else None
        refused = classify_status(exc.status, retry, latency, "Titan refused the WebSocket handshake")
        return refused or Outcome(
            result="network_error", status=exc.status, latency=latency, error=f"Titan did not upgrade: {exc.message}"
        )
    session = _Session(call, job, ws, started)
    try:
        return await session.run()
    except _Closed as exc:
        return session.failure("network_error", f"Titan closed the connection ({exc}) after {session.updates} updates")
    except (ValueError, msgspec.DecodeError) as exc:
        return session.failure("decode_error", f"titan: undecodable frame: {exc}")
    finally:
        await ws.close()
