"""The hub: the coordinator's end of the wire. One ROUTER, every worker, every job.

It keeps the registry of live workers (liveness from heartbeats, credit from capacity minus
in-flight), the queues of jobs waiting for an IP (one per upstream, earliest deadline first),
and the promise that every submitted job gets exactly one :class:`JobOutcome`:

* a job is dispatched only to a worker with credit, chosen by the :class:`Policy`;
* a job whose deadline passes while queued ends ``expired``, and so does a dispatched one
  whose worker, alive, still has not answered 2 s after it (a lost result, a stuck handler);
* a worker that dies (silent for 3 heartbeats, gone from ZeroMQ, or seen exiting by its
  supervisor: :meth:`Hub.lost`) takes its in-flight jobs with it: idempotent ones are queued
  again, avoiding that IP, while their deadline allows; the others end ``worker_lost``;
* a late or duplicate result is dropped and counted, never delivered twice;
* malformed frames are dropped and counted by reason.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import zmq

from broker.outbox import Outbox
from broker.protocol import (
    HEARTBEAT_INTERVAL,
    HEARTBEAT_LIVENESS,
    Bye,
    Disconnect,
    Dispatch,
    Drain,
    Event,
    Heartbeat,
    Message,
    Outcome,
    ProtocolError,
    Ready,
    Result,
    decode_batch,
)
from broker.sockets import FramePump, curve_server, make_router
from broker.types import Job, JobOutcome, JobSpec, Policy, WorkerInfo

__all__ = ["Hub"]

log = logging.getLogger("broker.hub")

AttemptHook = Callable[[Job, WorkerInfo, Outcome], None]
FinalHook = Callable[[Job, JobOutcome], None]
WorkerHook = Callable[[WorkerInfo, str], None]
EventHook = Callable[[Job, WorkerInfo, Event], None]

_RETRY_ON = frozenset({"bind_error"})  # local-origin failures another IP will not have
_QUEUE_SCAN_LIMIT = 64  # jobs with their own affinity looked at per upstream and pump
_RESULT_GRACE = 2.0  # seconds past its deadline a dispatched job waits for a result: the worker times out first


class Hub:
    """Coordinator side of the farm's wire. Create, :meth:`bind`, :meth:`start`, then :meth:`submit`."""

    def __init__(
        self,
        policy: Policy,
        *,
        ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
        max_queued: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self.policy = policy
        self.ctx = ctx or zmq.Context.instance()
        self._socks: list[zmq.Socket[bytes]] = []
        self._curve: list[str | None] = []
        self._pumps: list[FramePump] = []
        self._outboxes: list[Outbox] = []
        self.max_queued = max_queued
        self.clock = clock
        self.hb_interval = heartbeat_interval
        self._next_beat = 0.0
        self.workers: dict[str, WorkerInfo] = {}
        self._by_route: dict[tuple[int, bytes], WorkerInfo] = {}
        self._queues: dict[str, list[tuple[float, int, Job]]] = {}
        self._queued = 0
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._pump_scheduled = False
        self._wake: asyncio.TimerHandle | None = None
        self._wake_at = float("inf")
        self._ticker: asyncio.Task[None] | None = None
        self._closing = False
        self.expected_workers = 0  # set by the supervisor: 0 and no worker => reject at once
        self.bad_frames: Counter[str] = Counter()
        self.late_results = 0
        self.counts: Counter[str] = Counter()  # final results by name
        self.attempt_hooks: list[AttemptHook] = []
        self.final_hooks: list[FinalHook] = []
        self.worker_up_hooks: list[WorkerHook] = []
        self.worker_down_hooks: list[WorkerHook] = []
        self.event_hooks: list[EventHook] = []

    # --- lifecycle -------------------------------------------------------------------

    def bind(self, endpoint: str, *, curve_secret_key_path: str | None = None) -> None:
        """Listen on ``endpoint``. Endpoints with the same security share one ROUTER socket.

        With ``curve_secret_key_path`` the socket is a CURVE server: only clients whose public
        key a running ZAP authenticator allows can connect (see ``galileo farm`` for setup).
        """
        if curve_secret_key_path in self._curve:
            self._socks[self._curve.index(curve_secret_key_path)].bind(endpoint)
            return
        sock = make_router(self.ctx)
        if curve_secret_key_path is not None:
            curve_server(sock, curve_secret_key_path)
        sock.bind(endpoint)
        self._socks.append(sock)
        self._curve.append(curve_secret_key_path)

    async def start(self) -> None:
        for i, sock in enumerate(self._socks):
            pump = FramePump(sock, functools.partial(self._on_frames, via=i))
            self._pumps.append(pump)
            self._outboxes.append(Outbox(pump, functools.partial(self._on_send_failure, via=i)))
        self._ticker = asyncio.create_task(self._tick_forever(), name="hub-ticker")

    async def close(self, grace: float = 5.0) -> None:
        """Cancel queued jobs, drain workers for up to ``grace`` s, cancel what is still in flight."""
        if self._closing:
            return
        self._closing = True
        for queue in self._queues.values():
            for _, _, job in queue:
                self._finish(job, Outcome(result="cancelled", error="farm shutting down"), None)
        self._queues.clear()
        self._queued = 0
        for w in list(self.workers.values()):
            self.retire(w.worker_id, "farm shutting down")
        deadline = self.clock() + grace
        while any(w.inflight for w in self.workers.values()) and self.clock() < deadline:
            await asyncio.sleep(0.02)
        for w in list(self.workers.values()):
            for job in list(w.inflight.values()):
                self._finish(job, Outcome(result="cancelled", error="farm shut down first"), w)
            w.inflight.clear()
        if self._ticker:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._wake:
            self._wake.cancel()
        for outbox in self._outboxes:
            outbox.flush()
        for pump in self._pumps:
            pump.close()
        if not self._pumps:
            for sock in self._socks:
                sock.close(linger=0)

    # --- submitting ------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> asyncio.Future[JobOutcome]:
        """Queue a job; the future resolves exactly once, with its terminal outcome."""
        loop = asyncio.get_running_loop()
        now = self.clock()
        kind = type(spec.payload).__struct_config__.tag
        job = Job(
            id=next(self._ids),
            spec=spec,
            kind=kind if isinstance(kind, str) else "job",
            deadline=now + spec.timeout,
            submitted=now,
            future=loop.create_future(),
        )
        if self._closing:
            self._finish(job, Outcome(result="cancelled", error="farm shutting down"), None)
        elif self._queued >= self.max_queued:
            self._finish(job, Outcome(result="rejected", error=f"queue full ({self.max_queued} jobs)"), None)
        elif not self.workers and self.expected_workers == 0:
            self._finish(job, Outcome(result="rejected", error="no IP at all: the farm has no workers"), None)
        elif job.upstream not in self._queues and isinstance(
            choice := self.policy.pick(job, self.workers, now), WorkerInfo
        ):
            self._send_job(job, choice, now)  # nothing queued ahead of it: dispatch now, not an iteration later
        else:
            self._enqueue(job)
        return job.future

    async def run(self, spec: JobSpec) -> JobOutcome:
        return await self.submit(spec)

    def _enqueue(self, job: Job) -> None:
        heapq.heappush(self._queues.setdefault(job.upstream, []), (job.deadline, next(self._seq), job))
        self._queued += 1
        self.schedule_pump()

    @property
    def queued(self) -> int:
        return self._queued

    def queued_by_upstream(self) -> dict[str, int]:
        return {k: len(v) for k, v in self._queues.items() if v}

    # --- dispatching -----------------------------------------------------------------

    def schedule_pump(self) -> None:
        """Dispatch what can be dispatched, once, at the next loop iteration."""
        if not self._pump_scheduled and not self._closing:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump_queues)

    def _pump_queues(self) -> None:
        self._pump_scheduled = False
        now = self.clock()
        wake = float("inf")
        for upstream in list(self._queues):
            queue = self._queues[upstream]
            self._expire(queue, now)
            held: list[tuple[float, int, Job]] = []
            while queue and len(held) < _QUEUE_SCAN_LIMIT:
                entry = heapq.heappop(queue)
                job = entry[2]
                choice = self.policy.pick(job, self.workers, now)
                if isinstance(choice, WorkerInfo):
                    self._queued -= 1
                    self._send_job(job, choice, now)
                    continue
                held.append(entry)
                if choice.until is not None:
                    wake = min(wake, choice.until)
                if choice.upstream_wide:
                    break
            for entry in held:
                heapq.heappush(queue, entry)
            if queue:
                wake = min(wake, queue[0][0])  # the head's deadline: expire it on time
            else:
                del self._queues[upstream]
        self._arm_wake(wake)

    def _arm_wake(self, at: float) -> None:
        if at == float("inf") or at >= self._wake_at:
            return
        if self._wake:
            self._wake.cancel()
        self._wake_at = at
        delay = max(0.0, at - self.clock())
        self._wake = asyncio.get_running_loop().call_later(delay, self._on_wake)

    def _on_wake(self) -> None:
        self._wake = None
        self._wake_at = float("inf")
        self.schedule_pump()

    def _expire(self, queue: list[tuple[float, int, Job]], now: float) -> None:
        while queue and queue[0][0] <= now:
            _, _, job = heapq.heappop(queue)
            self._queued -= 1
            waited = f"{now - job.submitted:.3f}s"
            self._finish(job, Outcome(result="expired", error=f"deadline passed while queued ({waited})"), None)

    def _send_job(self, job: Job, worker: WorkerInfo, now: float) -> None:
        msg = Dispatch(
            job_id=job.id,
            attempt=job.attempt,
            kind=job.kind,
            upstream=job.upstream,
            timeout=max(0.001, job.deadline - now),
            payload=job.spec.payload,
        )
        worker.inflight[job.id] = job
        job.sent_at = now
        job.tried.append(worker.ip)
        self.policy.on_dispatch(job, worker, now)
        self._send(worker, msg, now)

    def _send(self, worker: WorkerInfo, msg: Message, now: float) -> None:
        """Queue ``msg`` for ``worker``; it leaves with the rest of this loop iteration's batch."""
        self._outboxes[worker.via].put(worker.routing_id, msg)
        worker.last_sent = now

    def _on_send_failure(self, route: bytes | None, reason: str, via: int) -> None:
        worker = self._by_route.get((via, route or b""))
        if worker is not None:
            self._worker_lost(worker, f"send failed: {reason}")

    def lost(self, worker_id: str, reason: str) -> None:
        """``worker_id``'s process is gone (its supervisor saw it exit): act now, not 3 heartbeats later."""
        w = self.workers.get(worker_id)
        if w is not None:
            self._worker_lost(w, reason)

    def retire(self, worker_id: str, reason: str = "retired") -> None:
        """Stop giving ``worker_id`` jobs; it finishes what it has, says Bye and exits."""
        w = self.workers.get(worker_id)
        if w is None or w.state == "draining":
            return
        w.state = "draining"
        self._send(w, Drain(reason=reason), self.clock())

    # --- receiving -------------------------------------------------------------------

    def _on_frames(self, frames: list[bytes], via: int = 0) -> None:
        if len(frames) != 2:
            self.bad_frames["framing"] += 1
            return
        route = frames[0]
        try:
            msgs = decode_batch(frames[1])
        except ProtocolError:
            self.bad_frames["undecodable"] += 1
            return
        now = self.clock()
        for msg in msgs:
            self._on_message(route, via, msg, now)

    def _on_message(self, route: bytes, via: int, msg: Message, now: float) -> None:
        if isinstance(msg, Ready):
            self._on_ready(route, via, msg, now)
            return
        worker = self._by_route.get((via, route))
        if worker is None:
            if isinstance(msg, Dispatch | Drain | Disconnect):
                self.bad_frames["wrong_direction"] += 1
                return
            # A worker from before a coordinator restart: ask it to register again.
            self.bad_frames["unknown_worker"] += 1
            self._outboxes[via].put(route, Disconnect())
            return
        worker.last_seen = now
        if isinstance(msg, Result):
            self._on_result(worker, msg, now)
        elif isinstance(msg, Heartbeat):
            worker.loop_lag_ms = msg.loop_lag_ms
            if msg.draining:
                worker.state = "draining"
            worker.rss = msg.rss
            worker.bad_frames = msg.bad_frames
            if msg.stats is not None:
                worker.stats = msg.stats
        elif isinstance(msg, Event):
            job = worker.inflight.get(msg.job_id)
            if job is None:
                self.late_results += 1
                return
            for event_hook in self.event_hooks:
                event_hook(job, worker, msg)
        elif isinstance(msg, Bye):
            self._worker_lost(worker, f"said bye: {msg.reason}", graceful=True)
        else:
            self.bad_frames["wrong_direction"] += 1

    def _on_ready(self, route: bytes, via: int, msg: Ready, now: float) -> None:
        old = self.workers.get(msg.worker_id)
        if old is not None:
            self._worker_lost(old, "registered again (restarted or reconnected)")
        if msg.capacity < 1:
            self.bad_frames["bad_ready"] += 1
            return
        w = WorkerInfo(
            routing_id=route,
            worker_id=msg.worker_id,
            ip=msg.ip,
            family=msg.family,
            bind=msg.bind,
            host=msg.host,
            pid=msg.pid,
            capacity=msg.capacity,
            registered=now,
            last_seen=now,
            via=via,
        )
        self.workers[w.worker_id] = w
        self._by_route[(via, route)] = w
        self.policy.on_worker_up(w, now)
        log.info("worker ready", extra={"worker_id": w.worker_id, "local_ip": w.ip, "pid": w.pid, "host": w.host})
        for hook in self.worker_up_hooks:
            hook(w, "ready")
        self._send(w, Heartbeat(), now)
        self.schedule_pump()

    def _on_result(self, worker: WorkerInfo, msg: Result, now: float) -> None:
        job = worker.inflight.get(msg.job_id)
        if job is None or job.attempt != msg.attempt:
            self.late_results += 1
            return
        del worker.inflight[msg.job_id]
        worker.done += 1
        outcome = msg.outcome
        self.policy.on_outcome(job, worker, outcome, now)
        for hook in self.attempt_hooks:
            hook(job, worker, outcome)
        if outcome.result in _RETRY_ON and job.spec.idempotent and job.deadline > now and not self._closing:
            job.attempt += 1
            self._enqueue(job)
        else:
            self._finish(job, outcome, worker)
        self.schedule_pump()

    def _finish(self, job: Job, outcome: Outcome, worker: WorkerInfo | None) -> None:
        if job.future.done():
            return
        final = JobOutcome.of(job, outcome, worker, self.clock())
        self.counts[final.result] += 1
        for hook in self.final_hooks:
            hook(job, final)
        job.future.set_result(final)

    # --- liveness --------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        period = self.hb_interval / 4
        while True:
            await asyncio.sleep(period)
            self.tick()

    def tick(self) -> None:
        """Heartbeats out, dead workers declared, expired jobs ended. Runs 4 times a heartbeat."""
        now = self.clock()
        limit = self.hb_interval * HEARTBEAT_LIVENESS
        freed = False
        # One heartbeat round for every worker at once, and workers answer at once (see the link):
        # at idle the coordinator then wakes a few times a second, not once per worker.
        beat = now >= self._next_beat
        if beat:
            self._next_beat = now + self.hb_interval * 7 / 8  # every 4th tick, despite timer jitter
        for w in list(self.workers.values()):
            if now - w.last_seen > limit:
                self._worker_lost(w, f"no heartbeat for {now - w.last_seen:.1f}s")
                continue
            if beat:
                self._send(w, Heartbeat(), now)
            for job in [j for j in w.inflight.values() if now > j.deadline + _RESULT_GRACE]:
                del w.inflight[job.id]
                gave_up = Outcome(result="expired", error=f"{w.ip}: no result by the deadline")
                self.policy.on_outcome(job, w, gave_up, now)  # the policy counts its in-flight jobs too
                self._finish(job, gave_up, w)
                freed = True
        if self._queued or freed:
            self.schedule_pump()

    def _worker_lost(self, w: WorkerInfo, reason: str, graceful: bool = False) -> None:
        if self.workers.get(w.worker_id) is not w:
            return
        del self.workers[w.worker_id]
        self._by_route.pop((w.via, w.routing_id), None)
        if not graceful:
            self._outboxes[w.via].discard(w.routing_id)
        now = self.clock()
        self.policy.on_worker_down(w, now)
        expected = graceful or w.state == "draining" or self._closing  # it was leaving anyway
        level = logging.INFO if expected else logging.WARNING
        log.log(level, "worker gone: %s", reason, extra={"worker_id": w.worker_id, "local_ip": w.ip})
        requeued = 0
        for job in w.inflight.values():
            if job.spec.idempotent and job.deadline > now and not self._closing:
                job.attempt += 1
                if job.spec.require_ip is None:  # another IP when one can take it (the module's promise)
                    prefer = None if job.spec.prefer_ip == w.ip else job.spec.prefer_ip
                    job.spec = replace(job.spec, avoid_ip=w.ip, prefer_ip=prefer)
                self._enqueue(job)
                requeued += 1
            else:
                why = "non-idempotent job in flight on a worker that died" if job.spec.idempotent is False else reason
                self._finish(job, Outcome(result="worker_lost", error=f"{w.ip}: {why}"), w)
        w.inflight.clear()
        if requeued:
            log.info("requeued %d idempotent job(s) from %s", requeued, w.worker_id, extra={"local_ip": w.ip})
        for hook in self.worker_down_hooks:
            hook(w, reason)
        self.schedule_pump()
