"""Titan quote streams: one connection per token, streams multiplexed on it, scheduled by use.

* **Connections**: each token (``upstreams.titan.token_envs``, or ``token_env``) gets one
  long-lived TitanConnect job, on an IP the pool leases for it (:func:`~.titan_plan.choose_ip`;
  the IP keeps serving HTTP). One token is one connection on one IP; more tokens, more of both.
  A lost connection comes back with backoff (0.25 s doubling to 30 s, reset by its first quote)
  on the same IP while that IP is healthy, else on another.
* **Streams**: ``GetInfo``'s ``concurrentStreams`` (capped by ``titan_stream_limit``) is what
  a connection may hold. Which (pair, size)s hold them is the :class:`~.titan_plan.StreamBoard`'s
  call, from what the engine quotes (:meth:`TitanStreams.quote_for`) and the round trips it finds
  (:meth:`TitanStreams.observe`). A stream refused at the server's limit makes the limit what the
  connection holds (for a minute) and lets rank decide: the least useful stream is stopped.
* **Lifecycle**: every (pair, size) has at most one stream, opened by one job at a time, so a
  reconnect re-subscribes each once. A stream is renewed after ``stream_seconds``, and
  resubscribed after ``idle_resubscribe_ms`` without an update, *in place* (StopStream and
  NewSwapQuoteStream in one breath, right after an update): the last quote stays the key's until
  the new stream's first arrives, a round trip later. StreamEnd from the server frees the slot
  (a stream that failed, or ended without data, waits 1 s doubling); quotes still queued after
  our StopStream are dropped.
* **Quotes**: each update is the latest quote of its (pair, size); a batch takes the latest
  (waiting a little for the first), never one older than ``idle_resubscribe_ms``, nor, once
  the size has no stream (no update is coming), older than two intervals;
  ``titan_debounce_ms`` keeps one stream from feeding two batches the same quote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from broker.protocol import Event
from broker.results import TitanConnectionSummary, TitanInfo, TitanQuote, TitanStreamEnded, TitanStreamOpened
from broker.types import JobOutcome, JobSpec
from galileo.client import FarmClient, TitanConnectionState, TitanReport
from galileo.config.sections import TitanConfig
from galileo.strategy.stats import short_mint
from galileo.strategy.titan_plan import (
    PENDING,
    BoardRules,
    Drop,
    Key,
    Open,
    Replace,
    Room,
    StreamBoard,
    choose_ip,
    end_reason,
    ip_at_fault,
)
from galileo.strategy.titan_state import Link, StreamSlot, key_of
from galileo.upstreams import QuoteRequest, Upstreams

__all__ = ["TitanStreams"]

log = logging.getLogger("galileo.titan")

TICK = 0.25  # seconds between checks for idle streams, due renewals and connections to retry
LIMIT_MEMORY = 60.0  # seconds a limit the server showed by refusing is believed over GetInfo's
MAX_UNCLAIMED = 64  # quotes of streams whose subscribe answer has not come yet, per connection
NO_IP_RETRY = 0.5  # seconds before trying again when no IP is eligible for Titan
EPSILON = 1e-6  # a timer that wakes this early counts as on time
# Exported at 0 per token from the start, so a panel reads 0 rather than "No data".
REFUSAL_REASONS = ("unauthorized", "token_in_use", "rate_limited", "stream_limit", "no_route", "stream_error")
DISCONNECT_REASONS = ("worker_lost", "closed_by_server", "token_expired", "network_error")


class TitanStreams:
    """The Titan streams of one engine: connections, which keys stream, their latest quotes."""

    def __init__(
        self,
        farm: FarmClient,
        upstreams: Upstreams,
        user: str,
        cfg: TitanConfig,
        *,
        rules: BoardRules | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.farm = farm
        self.upstreams = upstreams
        self.user = user
        self.cfg = cfg
        self.debounce = cfg.titan_debounce_ms / 1000
        self.stale_after = cfg.idle_resubscribe_ms / 1000
        self.interval = cfg.interval_ms / 1000
        self.board = StreamBoard(rules=rules)
        self.links = [Link(token) for token in cfg.tokens()]
        self.slots: dict[Key, StreamSlot] = {}
        self.refusals: Counter[tuple[str, str]] = Counter(
            {(link.token, reason): 0 for link in self.links for reason in REFUSAL_REASONS}
        )
        self.disconnects: Counter[tuple[str, str]] = Counter(
            {(link.token, reason): 0 for link in self.links for reason in DISCONNECT_REASONS}
        )
        self._clock = clock
        self._by_spec: dict[int, tuple[Link, int]] = {}  # connection job -> (its link, its generation)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    def now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    # --- lifecycle --------------------------------------------------------------------

    def start(self, wants: Sequence[QuoteRequest]) -> None:
        """Know the (pair, size)s the engine will quote, and start keeping connections and streams."""
        self.farm.watch_events(self.on_event)
        for req in wants:
            key = key_of(req)
            if key not in self.slots:
                self.slots[key] = StreamSlot(req)
                self.board.add(key)
        if not self.links:
            log.warning("titan: no token (upstreams.titan.token_env or token_envs): no Titan quotes")
            return
        self._loop_task = asyncio.create_task(self._run(), name="titan-streams")
        log.info("titan: %d token(s), %d (pair, size)s to stream", len(self.links), len(self.slots))

    async def stop(self, grace: float = 2.0) -> None:
        """Close every connection (StopStream for each stream first) and wait for them to end, so the
        workers holding them are free to drain at once."""
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(link.state == "connecting" for link in self.links) and loop.time() < deadline:
            await asyncio.sleep(0.02)  # one still opening: close it once it is open
        ending = []
        for link in self.links:
            if link.state == "open" and link.ip is not None and link.future is not None:
                link.state = "closing"
                self.farm.submit(self.upstreams.titan_stop(link.lease, None, ip=link.ip))
                ending.append(link.future)
        if ending:
            await asyncio.wait(ending, timeout=max(0.1, deadline - loop.time()))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        while not self._stopping:
            now = self.now()
            for link in self.links:
                if link.state == "down" and now >= link.retry_at - EPSILON:
                    self._connect(link, now)
            self._maintain(now)
            self._plan(now)
            self._wake.clear()
            retries = [link.retry_at - now for link in self.links if link.state == "down"]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, min([TICK, *retries])))

    # --- connections ------------------------------------------------------------------

    def _connect(self, link: Link, now: float) -> None:
        eligible = [lane.ip for lane in self.farm.eligible("titan")]
        taken = [other.ip for other in self.links if other is not link and other.state != "down" and other.ip]
        ip = choose_ip(link.token, eligible, taken, link.ip, link.healthy)
        if ip is None:
            link.retry_at = now + NO_IP_RETRY
            return
        link.generation += 1
        link.lease = f"{link.token}#{link.generation}"
        link.state = "connecting"
        link.ip = ip
        link.closed = None
        link.connects += 1
        spec = self.upstreams.titan_connect(link.token, link.lease, prefer_ip=ip)
        self._by_spec[id(spec)] = (link, link.generation)
        future = link.future = self.farm.submit(spec)
        generation = link.generation
        future.add_done_callback(lambda f: self._connection_ended(link, spec, generation, f))

    def _connection_ended(self, link: Link, spec: JobSpec, generation: int, future: asyncio.Future[JobOutcome]) -> None:
        self._by_spec.pop(id(spec), None)
        if future.cancelled() or link.generation != generation:
            return
        failed = future.exception()
        out = (
            JobOutcome(job_id=0, result="network_error", task="titan_connect", upstream="titan", error=str(failed))
            if failed is not None
            else future.result()
        )
        now = self.now()
        was_open = link.state in ("open", "closing")
        reason = end_reason(out, link.closed)
        if not self._stopping and link.state != "closing":
            (self.disconnects if was_open else self.refusals)[(link.token, reason)] += 1
            log.log(
                logging.WARNING if was_open else logging.INFO,
                "titan %s: connection %s (%s %s); retrying",
                link.token,
                "lost" if was_open else "refused",
                reason,
                out.error,
                extra={"local_ip": out.ip or link.ip, "upstream": "titan"},
            )
        for key in link.streams.values():
            slot = self.slots[key]
            slot.link, slot.stream_id = None, None
        link.streams.clear()
        for key in link.pending:  # their jobs fail, and find the generation changed
            self.slots[key].busy = False
            self.slots[key].ticket += 1
        link.pending.clear()
        link.unclaimed.clear()
        link.info = None
        link.state = "down"
        link.ip = out.ip or link.ip
        link.healthy = not ip_at_fault(out, link.closed)
        link.retry_at = now + link.backoff.next()
        self._wake.set()

    def on_event(self, spec: JobSpec, ip: str, event: Event) -> None:
        """A connection's event (the farm calls this for every job event)."""
        found = self._by_spec.get(id(spec))
        if found is None:
            return
        link, generation = found
        if link.generation != generation:
            return
        value = event.value
        if event.name == "quote" and isinstance(value, TitanQuote):
            key = link.streams.get(value.stream_id)
            if key is None:  # its subscribe answer is still on its way: claimed when it comes
                link.unclaimed[value.stream_id] = (value, ip)
                while len(link.unclaimed) > MAX_UNCLAIMED:
                    del link.unclaimed[next(iter(link.unclaimed))]
                return
            self._quote(link, self.slots[key], value, ip, self.now())
        elif event.name == "open" and isinstance(value, TitanInfo) and link.state == "connecting":
            link.state = "open"
            link.ip = ip
            link.info = value
            cap = self.cfg.titan_stream_limit
            link.limit = min(value.concurrent_streams, cap) if cap else value.concurrent_streams
            link.cut = None
            log.info(
                "titan %s: connected from %s, %d stream(s) allowed",
                link.token,
                ip,
                link.limit,
                extra={"local_ip": ip, "upstream": "titan"},
            )
            self._wake.set()
        elif event.name == "stream_end" and isinstance(value, TitanStreamEnded):
            self._stream_ended(link, value)
        elif event.name == "closed" and isinstance(value, TitanConnectionSummary):
            link.closed = value

    def _stream_ended(self, link: Link, ended: TitanStreamEnded) -> None:
        key = link.streams.pop(ended.stream_id, None)
        if key is None:
            return  # one we stopped: already forgotten
        slot = self.slots[key]
        slot.link, slot.stream_id = None, None
        now = self.now()
        if ended.error_code is not None or ended.updates == 0:
            reason = "stream_error" if ended.error_code is not None else "no_route"
            self.refusals[(link.token, reason)] += 1
            until = self.board.failed(key, now)
            log.info(
                "titan %s: stream of %s ended (%s %s); again in %.1fs",
                link.token,
                _label(key),
                ended.error_code,
                ended.error_message,
                until - now,
            )
        self._wake.set()

    # --- streams ----------------------------------------------------------------------

    def _rooms(self, now: float) -> list[Room]:
        rooms = []
        for link in self.links:
            if link.state != "open":
                continue
            held = {key: self.slots[key].since for key in link.streams.values()}
            held.update(dict.fromkeys(link.pending, PENDING))
            rooms.append(Room(link.lease, link.free(now), held))
        return rooms

    def _plan(self, now: float) -> None:
        by_lease = {link.lease: link for link in self.links if link.state == "open"}
        for move in self.board.plan(self._rooms(now), now):
            link = by_lease[move.link]
            if isinstance(move, Open):
                self._subscribe(link, self.slots[move.key], None)
            elif isinstance(move, Replace):
                old = self.slots[move.old]
                sid = self._release(old)
                self._subscribe(link, self.slots[move.new], sid)
            elif isinstance(move, Drop):
                slot = self.slots[move.key]
                sid = self._release(slot)
                if sid is not None:
                    self._spawn(self._stop(link, sid), f"titan-stop-{sid}")

    def _release(self, slot: StreamSlot) -> int | None:
        """Forget ``slot``'s stream (its late quotes are dropped); its id, to stop it."""
        sid, link = slot.stream_id, slot.link
        if link is not None and sid is not None:
            link.streams.pop(sid, None)
        slot.link, slot.stream_id = None, None
        return sid

    def _subscribe(self, link: Link, slot: StreamSlot, replace: int | None) -> None:
        key = key_of(slot.request)
        slot.busy = True
        slot.ticket += 1
        link.pending.add(key)
        task = self._subscribing(link, link.generation, slot, slot.ticket, replace)
        self._spawn(task, f"titan-sub-{slot.request.amount}")

    async def _subscribing(
        self, link: Link, generation: int, slot: StreamSlot, ticket: int, replace: int | None
    ) -> None:
        key = key_of(slot.request)
        assert link.ip is not None
        spec = self.upstreams.titan_subscribe(link.lease, slot.request, self.user, ip=link.ip, replace=replace)
        try:
            out = await self.farm.run(spec)
        finally:
            if slot.ticket == ticket:  # a later subscribe for this slot (after a reconnect) owns it now
                slot.busy = False
            if link.generation == generation:
                link.pending.discard(key)
            self._wake.set()
        if link.generation != generation or link.state != "open":
            return  # the connection went meanwhile, and its streams with it
        now = self.now()
        if out.ok and isinstance(out.value, TitanStreamOpened):
            sid = out.value.stream_id
            link.streams[sid] = key
            slot.link, slot.stream_id, slot.since = link, sid, now
            slot.opened += 1
            claimed = link.unclaimed.pop(sid, None)
            if claimed is not None:
                self._quote(link, slot, claimed[0], claimed[1], now)
            return
        if out.result == "http_error" and (out.status == 429 or "concurrent" in out.error):
            self.refusals[(link.token, "stream_limit")] += 1
            link.cut = len(link.streams) + len(link.pending)  # what it holds is what it may hold
            link.cut_until = now + LIMIT_MEMORY
            self.board.pressing(key, now)
            log.info("titan %s: the server holds us to %d stream(s)", link.token, link.cut)
            return
        if out.result == "network_error" and "is not open on this worker" in out.error:
            return  # the connection is gone; its job's end says why
        reason = "no_route" if out.result == "http_error" and out.status == 404 else out.result
        self.refusals[(link.token, reason)] += 1
        self.board.failed(key, now)

    async def _stop(self, link: Link, sid: int) -> None:
        if link.ip is not None and link.state == "open":
            await self.farm.run(self.upstreams.titan_stop(link.lease, sid, ip=link.ip))

    def _renew(self, slot: StreamSlot) -> None:
        """Replace the slot's stream with a new one, in place (no slot needs to be free)."""
        link = slot.link
        if link is None or link.state != "open" or slot.busy:
            return
        sid = self._release(slot)
        self._subscribe(link, slot, sid)

    def _maintain(self, now: float) -> None:
        """Streams silent for ``idle_resubscribe_ms``, and renewals overdue, are resubscribed."""
        for slot in self.slots.values():
            if slot.link is None or slot.busy:
                continue
            idle = now - max(slot.updated, slot.since) > self.stale_after
            overdue = now - slot.since > self.cfg.stream_seconds + 2 * self.interval
            if idle or overdue:
                self._renew(slot)

    def _quote(self, link: Link, slot: StreamSlot, quote: TitanQuote, ip: str, now: float) -> None:
        slot.latest = quote
        slot.ip = ip
        slot.updated = now
        slot.updates += 1
        slot.fresh.set()
        link.backoff.reset()
        self.board.succeeded(key_of(slot.request))
        if now - slot.since >= self.cfg.stream_seconds:
            self._renew(slot)  # right after an update: the new stream's first comes before the next is due

    # --- what the engine asks ---------------------------------------------------------

    async def quote_for(self, req: QuoteRequest, wait: float) -> tuple[TitanQuote, str] | None:
        """The latest quote for ``req`` and the IP it came through (None: no stream, no quote)."""
        key = key_of(req)
        slot = self.slots.get(key)
        if slot is None:
            return None
        now = self.now()
        self.board.asked(key, now)
        streaming = slot.stream_id is not None or slot.busy
        # A quiet stream's last price lasts idle_resubscribe_ms; without a stream (taken for a more
        # useful key, or its connection coming back) no update is coming: two intervals at most.
        if slot.latest is not None and now - slot.updated > (self.stale_after if streaming else 2 * self.interval):
            slot.latest = None  # an old price is worse than none
        if not streaming:
            if slot.latest is None or slot.ip is None or now - slot.consumed < self.debounce:
                return None  # nothing new will come to wait for
            slot.consumed = now
            return slot.latest, slot.ip
        if slot.latest is None or now - slot.consumed < self.debounce:
            slot.fresh.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slot.fresh.wait(), wait)
        if slot.latest is None or slot.ip is None:
            return None
        slot.consumed = self.now()
        return slot.latest, slot.ip

    def observe(self, req: QuoteRequest, margin_bps: float) -> None:
        """The best round trip a batch of ``req`` found (any legs), in bps of its size."""
        self.board.observed(key_of(req), margin_bps, self.now())

    # --- reading ----------------------------------------------------------------------

    def streams_by_ip(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for link in self.links:
            if link.state == "open" and link.ip is not None and link.streams:
                out[link.ip] = out.get(link.ip, 0) + len(link.streams)
        return out

    def quote_ages(self, now: float | None = None) -> dict[Key, float]:
        """Seconds since the freshest quote of each (pair, size) holding a stream now."""
        now = self.now() if now is None else now
        return {
            key: now - slot.updated
            for key, slot in self.slots.items()
            if slot.stream_id is not None and math.isfinite(slot.updated)
        }

    def report(self) -> TitanReport:
        """Connections, streams, refusals and quote ages, for the metrics."""
        now = self.now()
        return TitanReport(
            connections=tuple(
                TitanConnectionState(
                    token=link.token,
                    ip=link.ip,
                    open=link.state == "open",
                    streams=len(link.streams),
                    limit=link.capacity(now),
                )
                for link in self.links
            ),
            refusals=dict(self.refusals),
            disconnects=dict(self.disconnects),
            quote_age={(_label(key), str(key[2])): age for key, age in self.quote_ages(now).items()},
        )


def _label(key: Key) -> str:
    return f"{short_mint(key[0])}->{short_mint(key[1])}"
