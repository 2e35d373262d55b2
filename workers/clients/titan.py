"""Titan over WebSocket (reference §4): one connection per token, its streams multiplexed on it.

Titan limits a token (its ``jti`` may hold one connection) and a connection (``GetInfo``'s
``concurrentStreams``), never an IP. So a token gets one WebSocket, held by one long-lived
job, and every stream of that token shares it. Three jobs, all on the worker holding it:

* ``TitanConnect`` opens the WebSocket through the worker's bound session (it leaves from the
  worker's IP, which keeps serving HTTP), asks ``GetInfo`` and emits ``open`` (TitanInfo), then
  reads every frame: a StreamData of a stream it opened becomes a ``quote`` Event, a StreamEnd a
  ``stream_end`` Event. It is registered on the worker under its ``lease``, and ends with a
  ``closed`` Event (TitanConnectionSummary).
* ``TitanSubscribe`` sends NewSwapQuoteStream on that connection (after StopStream of the stream
  it ``replace``s, if any) and answers with the stream id, or with Titan's Error.
* ``TitanStop`` sends StopStream and waits for StreamStopped; without a stream id it stops every
  stream and closes the connection.

We offer ``v1.api.titan.ag+gzip, v1.api.titan.ag`` and gzip every frame iff the server chose
``+gzip``; auth is ``Authorization: Bearer <token>`` from a SecretRef, which the worker releases
only to the configured Titan origin (:mod:`workers.secrets`).

Outcomes of TitanConnect: ``ok`` (TitanConnectionSummary) when we closed it or its budget ran
out; ``rate_limited`` / ``http_error`` for a refused handshake (429, 401, 409 ...);
``network_error`` when the server or the network closed it; ``timeout`` when GetInfo is not
answered within 5 s; ``decode_error`` for a GetInfo that is not the documented one, or 16
undecodable frames in a row (one bad frame is dropped and counted).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from broker.jobs import TitanConnect, TitanStop, TitanSubscribe
from broker.protocol import Outcome, ResultName
from broker.results import TitanConnectionSummary, TitanStreamEnded, TitanStreamOpened
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
    server_info,
)
from workers.clients.transport import Call, upstream
from workers.session import BoundSession, family_mismatch

__all__ = ["ANSWER_WAIT", "INFO_WAIT", "STOP_GRACE", "Connection", "connections"]

log = logging.getLogger("workers.clients.titan")

STOP_GRACE = 1.0  # seconds kept for the goodbye (StopStreams and the close handshake)
INFO_WAIT = 5.0  # seconds GetInfo may take before the connection counts as dead
ANSWER_WAIT = 5.0  # seconds NewSwapQuoteStream / StopStream may take to be answered
MAX_BAD_IN_A_ROW = 16  # undecodable frames in a row before the connection is given up
MAX_ABANDONED = 256  # stream requests nobody waits for any more, remembered so a late stream is stopped


class _Closed(Exception):
    """The connection is over (the server closed it, the socket broke, or we did)."""

    def __init__(self, text: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(text)
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class _Stream:
    swap_mode: str | None
    updates: int = 0


_connections: weakref.WeakKeyDictionary[BoundSession, dict[str, Connection]] = weakref.WeakKeyDictionary()


def connections(session: BoundSession) -> dict[str, Connection]:
    """The Titan connections open on this worker's session, by lease."""
    found = _connections.get(session)
    if found is None:
        found = _connections[session] = {}
    return found


class Connection:
    """One open Titan WebSocket and the streams on it; its job's task reads, stream jobs write."""

    def __init__(self, call: Call, job: TitanConnect, ws: aiohttp.ClientWebSocketResponse, handshake: float) -> None:
        self.call, self.job, self.ws = call, job, ws
        self.framing = Framing(ws.protocol)
        self.handshake = handshake  # the latency we report: the upstream's answer to the upgrade
        self.next_request = 1
        self.answers: dict[int, asyncio.Future[ServerMessage]] = {}
        self.opening: dict[int, str | None] = {}  # NewSwapQuoteStream request id -> its swap mode
        self.abandoned: dict[int, None] = {}  # stream requests nobody waits for: a late stream is stopped
        self.streams: dict[int, _Stream] = {}  # open streams by id
        self.stopping: dict[int, _Stream] = {}  # StopStream sent, StreamEnd not yet seen
        self.opened = self.updates = self.bad_frames = self.bad_in_a_row = 0
        self.closing = False
        self._tasks: set[asyncio.Task[None]] = set()

    # --- writing (any job's task) -----------------------------------------------------

    def _allocate(self) -> int:
        request_id = self.next_request
        self.next_request += 1
        return request_id

    async def _write(self, request_id: int, data: dict[str, object]) -> None:
        if self.ws.closed or self.closing:
            raise _Closed("the Titan connection is closed")
        await self.ws.send_bytes(self.framing.encode(request_id, data))

    async def ask(self, data: dict[str, object], timeout: float, swap_mode: str | None = None) -> ServerMessage:
        """Send a request and wait for its Response or Error. Raises TimeoutError or _Closed.

        A NewSwapQuoteStream whose answer comes after we stopped waiting is stopped when it
        comes, so no stream is left open that nobody knows of.
        """
        request_id = self._allocate()
        future: asyncio.Future[ServerMessage] = asyncio.get_running_loop().create_future()
        self.answers[request_id] = future  # before sending: the answer may beat our return
        opening = "NewSwapQuoteStream" in data
        if opening:
            self.opening[request_id] = swap_mode
        try:
            await self._write(request_id, data)
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self.answers.pop(request_id, None)
            if opening and self.opening.pop(request_id, "absent") != "absent":
                self.abandoned[request_id] = None
                while len(self.abandoned) > MAX_ABANDONED:
                    del self.abandoned[next(iter(self.abandoned))]

    async def stop(self, stream_id: int) -> ServerMessage | None:
        """StopStream; its answer (None when the stream is not open here: already over)."""
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return None
        self.stopping[stream_id] = stream  # its queued StreamData are dropped from now on
        return await self.ask({"StopStream": {"id": stream_id}}, ANSWER_WAIT)

    async def send_stop(self, stream_id: int) -> None:
        """StopStream without waiting for the answer (a renewal's first half)."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            self.stopping[stream_id] = stream
            await self._write(self._allocate(), {"StopStream": {"id": stream_id}})

    async def close(self) -> None:
        """Stop every stream, then close the connection (its job ends ``ok``, ended_by ``closed``)."""
        if self.closing:
            return
        for stream_id in list(self.streams):
            try:
                await self.send_stop(stream_id)
            except (_Closed, ConnectionError):
                break
        self.closing = True
        await self.ws.close()

    # --- reading (the connection job's task) ------------------------------------------

    async def receive(self, timeout: float) -> ServerMessage | None:
        """The next server message; None on timeout, for kinds we skip, or for a dropped bad frame."""
        try:
            msg = await self.ws.receive(timeout=max(timeout, 0.001))  # 0 would mean "no timeout"
        except TimeoutError:
            return None
        if msg.type == aiohttp.WSMsgType.BINARY:
            try:
                decoded = self.framing.decode(msg.data)
            except (ValueError, msgspec.DecodeError) as exc:
                self._bad(f"undecodable frame: {exc}")
                return None
            return decoded
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            code = self.ws.close_code if msg.type != aiohttp.WSMsgType.CLOSE else int(msg.data)
            reason = self.call.redact(str(msg.extra or "")) if msg.type == aiohttp.WSMsgType.CLOSE else ""
            raise _Closed(f"code {code}" + (f": {reason}" if reason else ""), code, reason)
        if msg.type == aiohttp.WSMsgType.ERROR:
            raise _Closed(f"error {msg.data}")
        return None  # text frames are not part of the API

    def _bad(self, what: str) -> None:
        self.bad_frames += 1
        self.bad_in_a_row += 1
        if self.bad_frames == 1:
            log.warning("titan %s: %s (dropped; counted from now on)", self.job.lease, what)

    def dispatch(self, msg: ServerMessage) -> None:
        """One server message: a quote, a stream's end, or the answer to a request."""
        if isinstance(msg, StreamData):
            stream = self.streams.get(msg.id)
            if stream is None:
                return  # a stream being stopped (its queued updates still come), or not ours
            try:
                quote = best_quote(msg, msg.id, stream.swap_mode)
            except (ValueError, msgspec.DecodeError) as exc:
                self._bad(f"StreamData of stream {msg.id} is not SwapQuotes: {exc}")
                return
            self.bad_in_a_row = 0
            if quote is not None:
                stream.updates += 1
                self.updates += 1
                self.call.emit("quote", quote)
            return
        self.bad_in_a_row = 0
        if isinstance(msg, Response):
            if msg.stream is not None and msg.request_id in self.opening:
                self.streams[msg.stream.id] = _Stream(self.opening.pop(msg.request_id))
                self.opened += 1
            elif msg.stream is not None and self.abandoned.pop(msg.request_id, "absent") is None:
                self.stopping[msg.stream.id] = _Stream(None)  # nobody waits for it: never reported
                self._spawn(self._stop_quietly(msg.stream.id))
        elif isinstance(msg, ErrorMessage):
            self.opening.pop(msg.request_id, None)
            self.abandoned.pop(msg.request_id, None)
        elif isinstance(msg, StreamEnd):
            stream = self.streams.pop(msg.id, None)
            stopped = self.stopping.pop(msg.id, None)
            ended = stream or stopped
            if ended is not None:
                self.call.emit(
                    "stream_end",
                    TitanStreamEnded(
                        stream_id=msg.id,
                        updates=ended.updates,
                        stopped=stopped is not None,
                        error_code=msg.error_code,
                        error_message=self.call.redact(msg.error_message or ""),
                    ),
                )
            return
        future = self.answers.get(msg.request_id)
        if future is not None and not future.done():
            future.set_result(msg)
        elif isinstance(msg, ErrorMessage):
            log.info("titan %s: error for request %d: %d %s", self.job.lease, msg.request_id, msg.code, msg.message)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stop_quietly(self, stream_id: int) -> None:
        try:
            await self._write(self._allocate(), {"StopStream": {"id": stream_id}})
        except (_Closed, ConnectionError):
            pass

    def summary(self, ended_by: str, closed: _Closed | None = None) -> TitanConnectionSummary:
        return TitanConnectionSummary(
            ended_by=ended_by,
            streams_opened=self.opened,
            updates=self.updates,
            bad_frames=self.bad_frames,
            close_code=closed.code if closed else None,
            close_reason=closed.reason if closed else "",
        )

    def ended(self, ended_by: str, closed: _Closed | None = None) -> TitanConnectionSummary:
        """The summary, told to the coordinator as a ``closed`` Event before the outcome."""
        summary = self.summary(ended_by, closed)
        self.call.emit("closed", summary)
        return summary

    def fail_waiters(self) -> None:
        for future in self.answers.values():
            if not future.done():
                future.set_exception(_Closed("the Titan connection closed"))
        for task in self._tasks:
            task.cancel()

    async def run(self, stop_at: float) -> Outcome:
        """GetInfo, then read until closed or ``stop_at`` (perf_counter seconds)."""
        info_id = self._allocate()
        await self._write(info_id, {"GetInfo": {}})
        info_deadline = time.perf_counter() + INFO_WAIT
        opened = False
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                await self.close()
                return Outcome(result="ok", status=101, latency=self.handshake, value=self.ended("duration"))
            if not opened and now >= info_deadline:
                return self.failure("timeout", f"Titan did not answer GetInfo within {INFO_WAIT:g}s")
            try:
                msg = await self.receive((stop_at if opened else min(stop_at, info_deadline)) - now)
            except _Closed as closed:
                if self.closing:
                    return Outcome(result="ok", status=101, latency=self.handshake, value=self.ended("closed"))
                self.ended("server" if closed.code is not None else "error", closed)
                return self.failure(
                    "network_error",
                    f"Titan closed the connection ({closed}) after {self.updates} updates on {self.opened} streams",
                )
            if self.bad_in_a_row >= MAX_BAD_IN_A_ROW:
                return self.failure("decode_error", f"titan: {MAX_BAD_IN_A_ROW} undecodable frames in a row")
            if msg is None:
                continue
            if not opened and getattr(msg, "request_id", None) == info_id:
                if isinstance(msg, ErrorMessage):
                    return self.failure("http_error", f"Titan refused GetInfo: error {msg.code}: {msg.message}")
                assert isinstance(msg, Response)
                try:
                    info = server_info(msg, self.ws.protocol or "")
                except (ValueError, msgspec.DecodeError) as exc:
                    return self.failure("decode_error", f"titan: GetInfo: {exc}")
                opened = True
                self.call.emit("open", info)
                continue
            self.dispatch(msg)

    def failure(self, result: ResultName, error: str) -> Outcome:
        return Outcome(result=result, status=101, latency=self.handshake, error=error)


@upstream(TitanConnect)
async def titan_connect(call: Call, job: TitanConnect) -> Outcome:
    """Open and hold one Titan connection; see the module docstring for events and outcomes."""
    mismatch = family_mismatch(job.url, call.ctx.ip)
    if mismatch:
        return Outcome(result="network_error", error=mismatch)
    registry = connections(call.ctx.session)
    if job.lease in registry:
        return Outcome(result="decode_error", error=f"titan: connection {job.lease} is already open on this worker")
    started = time.perf_counter()
    try:
        ws = await call.ctx.http.ws_connect(
            job.url,
            protocols=(PROTOCOL_GZIP, PROTOCOL) if job.compress else (PROTOCOL,),
            headers=call.auth(job.secret),
            autoping=True,
            heartbeat=job.heartbeat,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=STOP_GRACE),
            max_msg_size=MAX_FRAME,
        )
    except aiohttp.WSServerHandshakeError as exc:
        latency = time.perf_counter() - started
        retry = exc.headers.get("Retry-After") if exc.headers else None
        refused = classify_status(exc.status, retry, latency, f"Titan refused the WebSocket handshake: {exc.message}")
        return refused or Outcome(
            result="network_error", status=exc.status, latency=latency, error=f"Titan did not upgrade: {exc.message}"
        )
    conn = Connection(call, job, ws, time.perf_counter() - started)
    registry[job.lease] = conn
    try:
        # the budget bounds the connection: keep time for StopStream and the close handshake
        return await conn.run(started + call.budget - 2 * STOP_GRACE)
    finally:
        if registry.get(job.lease) is conn:
            del registry[job.lease]
        conn.fail_waiters()
        await ws.close()


def _no_connection(lease: str) -> Outcome:
    return Outcome(result="network_error", error=f"titan: connection {lease} is not open on this worker")


@upstream(TitanSubscribe)
async def titan_subscribe(call: Call, job: TitanSubscribe) -> Outcome:
    """NewSwapQuoteStream on the connection ``job.lease``: ok with the stream id, or Titan's Error."""
    try:
        request = new_stream_request(job)  # a bad key fails here, before anything is sent
    except ValueError as exc:
        return Outcome(result="decode_error", error=f"titan: {exc}")
    conn = connections(call.ctx.session).get(job.lease)
    if conn is None:
        return _no_connection(job.lease)
    started = time.perf_counter()
    try:
        if job.replace is not None:
            await conn.send_stop(job.replace)
        answer = await conn.ask(request, min(ANSWER_WAIT, call.budget), job.swap_mode)
    except TimeoutError:
        return Outcome(result="timeout", error=f"Titan did not answer NewSwapQuoteStream within {ANSWER_WAIT:g}s")
    except (_Closed, ConnectionError):
        return _no_connection(job.lease)
    latency = time.perf_counter() - started
    if isinstance(answer, ErrorMessage):
        return Outcome(
            result="http_error",
            status=answer.code,
            latency=latency,
            error=conn.call.redact(f"Titan refused the stream: error {answer.code}: {answer.message}"),
        )
    if not isinstance(answer, Response) or answer.stream is None:
        return Outcome(
            result="decode_error", latency=latency, error="titan: NewSwapQuoteStream answered without a stream"
        )
    interval = 0
    raw = answer.data.get("NewSwapQuoteStream")
    if raw is not None:
        try:
            interval = int(msgspec.msgpack.decode(raw).get("intervalMs", 0))
        except (ValueError, TypeError, AttributeError, msgspec.DecodeError):
            interval = 0
    return Outcome(
        result="ok", latency=latency, value=TitanStreamOpened(stream_id=answer.stream.id, interval_ms=interval)
    )


@upstream(TitanStop)
async def titan_stop(call: Call, job: TitanStop) -> Outcome:
    """StopStream (ok once StreamStopped), or with no stream id: stop them all and close the connection."""
    conn = connections(call.ctx.session).get(job.lease)
    if conn is None:
        return Outcome(result="ok")  # the connection is gone, and its streams with it
    started = time.perf_counter()
    if job.stream_id is None:
        await conn.close()
        return Outcome(result="ok", latency=time.perf_counter() - started)
    try:
        answer = await conn.stop(job.stream_id)
    except TimeoutError:
        return Outcome(result="timeout", error=f"Titan did not answer StopStream within {ANSWER_WAIT:g}s")
    except (_Closed, ConnectionError):
        return Outcome(result="ok")
    latency = time.perf_counter() - started
    if isinstance(answer, ErrorMessage):
        return Outcome(
            result="http_error",
            status=answer.code,
            latency=latency,
            error=conn.call.redact(f"Titan refused StopStream: {answer.message}"),
        )
    return Outcome(result="ok", latency=latency)
