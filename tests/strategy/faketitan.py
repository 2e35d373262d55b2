"""An in-memory farm whose workers hold Titan connections, against a Titan with its real limits.

:class:`FakeTitan` is a :class:`galileo.client.FarmClient` on the running loop's clock (run it
under :func:`tests.virtualtime.run_virtual`): a TitanConnect job stays open until a TitanStop
closes it or :meth:`FakeTitan.kill` takes its IP; a token holds ``per_token`` connections (one
more is refused with 409); a connection holds ``limit`` streams (GetInfo says ``advertised``;
one more is refused with 429); each stream sends a quote at once and then every ``interval``
seconds. Every job takes ``rtt`` seconds (a subscribe ``subscribe_rtt``).
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from broker.jobs import TitanConnect, TitanStop, TitanSubscribe
from broker.protocol import Event
from broker.results import (
    ResultValue,
    TitanConnectionSummary,
    TitanInfo,
    TitanQuote,
    TitanStreamEnded,
    TitanStreamOpened,
)
from broker.types import JobOutcome, JobSpec
from galileo.client import EventHook, Lane

__all__ = ["FakeTitan"]

Key = tuple[str, str, int]


@dataclass(eq=False)
class _Stream:
    key: Key
    task: asyncio.Task[None] | None = None
    updates: int = 0
    silent: bool = False


@dataclass(eq=False)
class _Conn:
    spec: JobSpec
    ip: str
    token: str
    lease: str
    ended: asyncio.Future[JobOutcome]
    streams: dict[int, _Stream] = field(default_factory=dict)
    next_sid: int = 0


class FakeTitan:
    def __init__(
        self,
        ips: Sequence[str],
        *,
        limit: int = 4,
        advertised: int | None = None,
        per_token: int = 1,
        interval: float = 1.0,
        rtt: float = 0.005,
        subscribe_rtt: float | None = None,
    ) -> None:
        self.ips = list(ips)
        self.dead: set[str] = set()
        self.limit = limit
        self.advertised = advertised if advertised is not None else limit
        self.per_token = per_token
        self.interval = interval
        self.rtt = rtt
        self.subscribe_rtt = rtt if subscribe_rtt is None else subscribe_rtt
        self.hooks: list[EventHook] = []
        self.conns: dict[tuple[str, str], _Conn] = {}
        self.refused: Counter[str] = Counter()
        self.connects: list[tuple[float, str, str]] = []  # (when, token, ip) of every accepted connection
        self.streams_opened = 0
        self._ids = itertools.count(1)

    # --- FarmClient ------------------------------------------------------------------

    def eligible(self, upstream: str) -> list[Lane]:
        return [Lane(ip, upstream, math.inf, None, 0.0) for ip in self.ips if ip not in self.dead]

    def watch_events(self, hook: EventHook) -> None:
        self.hooks.append(hook)

    def submit(self, spec: JobSpec) -> asyncio.Future[JobOutcome]:
        return asyncio.ensure_future(self.run(spec))

    async def run(self, spec: JobSpec) -> JobOutcome:
        ip = self._ip_for(spec)
        if ip is None:
            return self._out(spec, "expired", None, error="no IP")
        payload = spec.payload
        await asyncio.sleep(self.subscribe_rtt if isinstance(payload, TitanSubscribe) else self.rtt)
        if ip in self.dead:
            return self._out(spec, "worker_lost", ip)
        if isinstance(payload, TitanConnect):
            return await self._connect(spec, payload, ip)
        if isinstance(payload, TitanSubscribe):
            return self._subscribe(spec, payload, ip)
        if isinstance(payload, TitanStop):
            return self._stop(spec, payload, ip)
        raise AssertionError(f"FakeTitan runs Titan jobs only, not {type(payload).__name__}")

    # --- what the server does --------------------------------------------------------

    def _ip_for(self, spec: JobSpec) -> str | None:
        if spec.require_ip is not None:
            return spec.require_ip
        alive = [ip for ip in self.ips if ip not in self.dead]
        if spec.prefer_ip in alive:
            return spec.prefer_ip
        return alive[0] if alive else None

    def _out(
        self,
        spec: JobSpec,
        result: str,
        ip: str | None,
        *,
        status: int = 0,
        error: str = "",
        value: ResultValue | None = None,
    ) -> JobOutcome:
        return JobOutcome(
            job_id=next(self._ids),
            result=result,  # type: ignore[arg-type]
            task=spec.task,
            upstream=spec.upstream,
            ip=ip,
            status=status,
            error=error,
            value=value,
        )

    def emit(self, conn: _Conn, name: str, value: ResultValue) -> None:
        for hook in self.hooks:
            hook(conn.spec, conn.ip, Event(job_id=0, name=name, value=value))

    async def _connect(self, spec: JobSpec, job: TitanConnect, ip: str) -> JobOutcome:
        token = job.secret.env if job.secret is not None else ""
        if sum(1 for c in self.conns.values() if c.token == token) >= self.per_token:
            self.refused["token_in_use"] += 1
            return self._out(spec, "http_error", ip, status=409, error="HTTP 409: token in use")
        conn = _Conn(spec, ip, token, job.lease, asyncio.get_running_loop().create_future())
        self.conns[(ip, job.lease)] = conn
        self.connects.append((asyncio.get_running_loop().time(), token, ip))
        self.emit(conn, "open", TitanInfo(concurrent_streams=self.advertised))
        return await conn.ended

    def _conn(self, ip: str, lease: str) -> _Conn | None:
        return self.conns.get((ip, lease))

    def _subscribe(self, spec: JobSpec, job: TitanSubscribe, ip: str) -> JobOutcome:
        conn = self._conn(ip, job.lease)
        if conn is None:
            return self._out(
                spec, "network_error", ip, error=f"titan: connection {job.lease} is not open on this worker"
            )
        if job.replace is not None:
            self._end(conn, job.replace, stopped=True)
        if len(conn.streams) >= self.limit:
            self.refused["stream_limit"] += 1
            return self._out(spec, "http_error", ip, status=429, error="too many concurrent streams")
        sid = conn.next_sid
        conn.next_sid += 1
        stream = _Stream((job.input_mint, job.output_mint, job.amount))
        conn.streams[sid] = stream
        stream.task = asyncio.ensure_future(self._push(conn, sid, stream))
        self.streams_opened += 1
        return self._out(spec, "ok", ip, value=TitanStreamOpened(stream_id=sid, interval_ms=int(self.interval * 1000)))

    async def _push(self, conn: _Conn, sid: int, stream: _Stream) -> None:
        for seq in itertools.count():
            if not stream.silent:
                stream.updates += 1
                _, _, amount = stream.key
                quote = TitanQuote(
                    provider="Titan",
                    in_amount=amount,
                    out_amount=amount * 2,
                    slippage_bps=0,
                    instructions=[],
                    seq=seq,
                    stream_id=sid,
                )
                self.emit(conn, "quote", quote)
            await asyncio.sleep(self.interval)

    def _end(self, conn: _Conn, sid: int, *, stopped: bool, error_code: int | None = None) -> None:
        stream = conn.streams.pop(sid, None)
        if stream is None:
            return
        if stream.task is not None:
            stream.task.cancel()
        ended = TitanStreamEnded(stream_id=sid, updates=stream.updates, stopped=stopped, error_code=error_code)
        self.emit(conn, "stream_end", ended)

    def _stop(self, spec: JobSpec, job: TitanStop, ip: str) -> JobOutcome:
        conn = self._conn(ip, job.lease)
        if conn is None:
            return self._out(spec, "ok", ip)
        if job.stream_id is not None:
            self._end(conn, job.stream_id, stopped=True)
            return self._out(spec, "ok", ip)
        self._close(conn, self._out(conn.spec, "ok", ip, value=TitanConnectionSummary(ended_by="closed")), "closed")
        return self._out(spec, "ok", ip)

    def _close(self, conn: _Conn, out: JobOutcome, ended_by: str) -> None:
        for sid in list(conn.streams):
            self._end(conn, sid, stopped=True)
        del self.conns[(conn.ip, conn.lease)]
        self.emit(conn, "closed", TitanConnectionSummary(ended_by=ended_by))
        conn.ended.set_result(out)

    # --- what a test does ------------------------------------------------------------

    def kill(self, ip: str) -> None:
        """The worker on ``ip`` dies: its connections end ``worker_lost``, and it is not eligible."""
        self.dead.add(ip)
        for conn in [c for c in self.conns.values() if c.ip == ip]:
            for stream in conn.streams.values():
                if stream.task is not None:
                    stream.task.cancel()
            conn.streams.clear()
            del self.conns[(conn.ip, conn.lease)]
            conn.ended.set_result(self._out(conn.spec, "worker_lost", ip, error="worker died"))

    def revive(self, ip: str) -> None:
        self.dead.discard(ip)

    def end_stream(self, key: Key, *, error_code: int | None = None) -> None:
        """The server ends ``key``'s stream (StreamEnd, with ``error_code`` if it failed)."""
        for conn in list(self.conns.values()):
            for sid, stream in list(conn.streams.items()):
                if stream.key == key:
                    self._end(conn, sid, stopped=False, error_code=error_code)

    def silence(self, key: Key) -> None:
        """``key``'s stream stays open but sends nothing more."""
        for conn in self.conns.values():
            for stream in conn.streams.values():
                if stream.key == key:
                    stream.silent = True

    def streamed(self) -> Counter[Key]:
        """How many open streams each (pair, size) has, over every connection."""
        return Counter(s.key for c in self.conns.values() for s in c.streams.values())

    def connections(self) -> list[tuple[str, str]]:
        """(token, ip) of every open connection."""
        return [(c.token, c.ip) for c in self.conns.values()]
