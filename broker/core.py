"""The hub without sockets: registry, queues, liveness, credits and outcomes, as a state machine.

Messages come in through :meth:`HubCore.receive`, go out through a :class:`Transport`, and
time comes from an injected clock, so identity, eviction and ordering are plain unit tests
(:mod:`broker.testing` has an in-memory transport and a manual clock).
:class:`broker.hub.Hub` is this core behind ZeroMQ sockets and an asyncio loop.

Its promises:

* every submitted job gets exactly one :class:`JobOutcome`;
* a job is dispatched only to a worker with credit, chosen by the :class:`Policy`;
* a job whose deadline passes while queued ends ``expired``, and so does a dispatched one
  whose worker, alive, still has not answered 2 s after it (a lost result, a stuck handler);
* a worker that dies (silent for 3 heartbeats, gone from the transport, or seen exiting by its
  supervisor: :meth:`HubCore.lost`) takes its in-flight jobs with it: idempotent ones are
  queued again, avoiding that IP, while their deadline allows; the others end ``worker_lost``;
* a late or duplicate result is dropped and counted, never delivered twice;
* silence is counted in the hub's own awake time: a stall of the hub's loop (a slow callback,
  a swapped-out process) is not its workers' silence, and neither kills them nor expires jobs
  whose results are waiting to be read;
* a worker is its slot (``worker_id``) and its process (``incarnation``). A new process for a
  slot never evicts the one before: that one is drained, keeps its connection, and its
  results are delivered. The same process on a new connection is a reconnect;
* a worker id belongs to the principal that registered or reserved it (the CURVE key it
  connected with, or the local socket), and every message is judged by the key that sent it,
  never by the routing id a peer chose: no peer can take another key's or a local worker's id.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Final, Protocol

from broker.auth import fingerprint
from broker.parking import Entry, Parking, pin_of
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
    Ready,
    Result,
)
from broker.types import Job, JobOutcome, JobSpec, Policy, WorkerInfo

__all__ = ["LOCAL", "HubCore", "Peer", "Transport"]

log = logging.getLogger("broker.hub")

Peer = tuple[int, bytes]  # (which of the hub's sockets, the peer's routing id there)
LOCAL: Final = b""  # the principal of every peer on a socket without CURVE: this host's own processes

AttemptHook = Callable[[Job, WorkerInfo, Outcome], None]
FinalHook = Callable[[Job, JobOutcome], None]
WorkerHook = Callable[[WorkerInfo, str], None]
EventHook = Callable[[Job, WorkerInfo, Event], None]

_RETRY_ON = frozenset({"bind_error"})  # local-origin failures another IP will not have
_QUEUE_SCAN_LIMIT = 64  # jobs with their own affinity asked about and held per upstream and pump ...
_QUEUE_HELD_LIMIT = 1024  # ... and held in all (a job whose IP's pace already said wait is parked, not held)
_RESULT_GRACE = 2.0  # seconds past its deadline a dispatched job waits for a result: the worker times out first
MAX_WORKERS_PER_KEY = 256  # registered processes per remote key: bounded memory whatever a host sends
_MAX_STATS = 256  # upstreams of a worker's rolling stats kept
_MAX_OWNERS = 65_536  # worker ids remembered with their principal
_WARN_EVERY = 60.0  # seconds between two warnings about the same identity problem


class Transport(Protocol):
    """Where the core's messages go. ``send`` never blocks; a peer that cannot be reached is
    reported back through :meth:`HubCore.unreachable`."""

    def send(self, peer: Peer, msg: Message) -> None: ...

    def forget(self, peer: Peer) -> None:
        """Drop whatever still waits to go to ``peer`` (it is gone)."""
        ...


def _nothing() -> None:
    pass


def _who(principal: bytes) -> str:
    return "this host" if principal == LOCAL else f"the key {fingerprint(principal)}"


class HubCore:
    """The coordinator's side of the farm's wire, without the wire. :meth:`submit` jobs, feed it
    messages with :meth:`receive`, call :meth:`tick` four times a heartbeat and :meth:`pump`
    soon after ``on_pump_due`` is called."""

    def __init__(
        self,
        policy: Policy,
        transport: Transport,
        *,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        max_queued: int = 50_000,
    ) -> None:
        self.policy = policy
        self.transport = transport
        self.clock = clock
        self.hb_interval = heartbeat_interval
        self.max_queued = max_queued
        self.on_pump_due: Callable[[], None] = _nothing  # the driver calls pump() soon after
        self.workers: dict[str, WorkerInfo] = {}  # the current process of each slot: what the policy sees
        self._conns: dict[Peer, WorkerInfo] = {}  # every registered process, current or being replaced
        self._owners: dict[str, bytes] = {}  # worker id -> the principal it belongs to
        self._per_key: Counter[bytes] = Counter()
        self._revoked: set[bytes] = set()
        self._queues: dict[str, list[Entry]] = {}
        self._parking = Parking()  # queued jobs that wait for one IP, asked again when it may take them
        self._queued = 0
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._closing = False
        self._next_beat = 0.0
        self._last_tick = clock()
        self.lag_total = 0.0  # seconds the hub's own loop ran late, since it started
        self._warned: dict[str, float] = {}
        self.expected_workers = 0  # set by the supervisor: 0 and no worker => reject at once
        self.bad_frames: Counter[str] = Counter()
        self.late_results = 0
        self.counts: Counter[str] = Counter()  # final results by name
        self.attempt_hooks: list[AttemptHook] = []
        self.final_hooks: list[FinalHook] = []
        self.worker_up_hooks: list[WorkerHook] = []
        self.worker_down_hooks: list[WorkerHook] = []
        self.event_hooks: list[EventHook] = []

    # --- submitting ------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> asyncio.Future[JobOutcome]:
        """Queue a job; the future resolves exactly once, with its terminal outcome."""
        now = self.clock()
        kind = type(spec.payload).__struct_config__.tag
        job = Job(
            id=next(self._ids),
            spec=spec,
            kind=kind if isinstance(kind, str) else "job",
            deadline=now + spec.timeout,
            submitted=now,
            future=asyncio.get_running_loop().create_future(),
        )
        if self._closing:
            self._finish(job, Outcome(result="cancelled", error="farm shutting down"), None)
        elif self._queued >= self.max_queued:
            self._finish(job, Outcome(result="rejected", error=f"queue full ({self.max_queued} jobs)"), None)
        elif not self.workers and self.expected_workers == 0:
            self._finish(job, Outcome(result="rejected", error="no IP at all: the farm has no workers"), None)
        elif (
            job.upstream not in self._queues
            and job.upstream not in self._parking
            and isinstance(choice := self.policy.pick(job, self.workers, now), WorkerInfo)
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
        self.on_pump_due()

    @property
    def queued(self) -> int:
        return self._queued

    def queued_by_upstream(self) -> dict[str, int]:
        counts = {k: len(v) for k, v in self._queues.items() if v}
        for upstream in self._parking.upstreams():
            counts[upstream] = counts.get(upstream, 0) + self._parking.count(upstream)
        return counts

    @property
    def connections(self) -> list[WorkerInfo]:
        """Every registered worker process: the current one of each slot, and any being replaced."""
        return list(self._conns.values())

    # --- dispatching -----------------------------------------------------------------

    def pump(self) -> float:
        """Dispatch what can be dispatched. Returns when to pump again if nothing else happens
        (a cooldown or pacing slot ends, a queued job's deadline), ``inf`` for never.

        A job the policy says waits for its IP alone is parked (:mod:`broker.parking`): it is
        asked about again when that IP may take it, not at every pump. A job pinned to an IP whose
        pace said wait stays queued, the IP's later jobs wait behind it out of the queue, and it is
        not asked about again until the wait is over or something happens to the IP."""
        now = self.clock()
        wake = float("inf")
        parking = self._parking
        for upstream in list(dict.fromkeys([*self._queues, *parking.upstreams()])):
            queue = self._queues.setdefault(upstream, [])
            parking.release_due(upstream, queue, now)
            self._expire(upstream, queue, now)
            held: list[Entry] = []
            stayed = 0  # jobs the policy was asked about and held
            while queue and stayed < _QUEUE_SCAN_LIMIT and len(held) < _QUEUE_HELD_LIMIT:
                entry = heapq.heappop(queue)
                job = entry[2]
                pin = pin_of(job)
                if pin is not None:
                    if parking.joins(upstream, pin, entry):
                        continue  # its IP is already known to wait: nothing to ask
                    if (paced := parking.paced_until(upstream, pin, now)) is not None:
                        # Its IP's pace said wait, so it says to this job too: set aside until then.
                        parking.park(upstream, pin, entry, paced, now)
                        continue
                choice = self.policy.pick(job, self.workers, now)
                if isinstance(choice, WorkerInfo):
                    self._queued -= 1
                    self._send_job(job, choice, now)
                elif choice.expire:
                    self._end_queued(job, f"too little time left after {now - job.submitted:.3f}s queued")
                elif pin is not None and choice.pinned == pin[0]:
                    parking.park(upstream, pin, entry, choice.until, now)
                    continue
                else:
                    held.append(entry)
                    stayed += 1
                    if pin is not None and not choice.upstream_wide:
                        parking.pace(upstream, pin, job, choice.until, now)
                    if choice.until is not None:
                        wake = min(wake, choice.until)
                    if choice.upstream_wide:
                        break
                    continue
                if pin is not None:
                    parking.went(upstream, pin)
                    parking.left(upstream, pin, job, queue)  # its bucket's next job takes its place
            for entry in held:
                heapq.heappush(queue, entry)
            wake = min(wake, parking.wake(upstream))
            if queue:
                wake = min(wake, queue[0][0])  # the head's deadline: expire it on time
            else:
                del self._queues[upstream]
        return wake

    def _expire(self, upstream: str, queue: list[Entry], now: float) -> None:
        while queue and queue[0][0] <= now:
            _, _, job = heapq.heappop(queue)
            self._end_queued(job, f"deadline passed while queued ({now - job.submitted:.3f}s)")
            if (pin := pin_of(job)) is not None:
                self._parking.left(upstream, pin, job, queue)

    def _end_queued(self, job: Job, why: str) -> None:
        """``job``, taken off its queue, never went: it ends ``expired``."""
        self._queued -= 1
        self._finish(job, Outcome(result="expired", error=why), None)

    def _send_job(self, job: Job, worker: WorkerInfo, now: float) -> None:
        worker.inflight[job.id] = job
        job.sent_at = now
        job.hold = job.gap = 0.0
        job.cap = 0
        job.lag_at_send = self.lag_total
        job.tried.append(worker.ip)
        self.policy.on_dispatch(job, worker, now)  # it may plan the send a little later (job.hold)
        msg = Dispatch(
            job_id=job.id,
            attempt=job.attempt,
            kind=job.kind,
            upstream=job.upstream,
            timeout=max(0.001, job.deadline - now),
            payload=job.spec.payload,
            hold=job.hold,
            gap=job.gap,
            cap=job.cap,
        )
        self._send(worker, msg, now)

    def _send(self, worker: WorkerInfo, msg: Message, now: float) -> None:
        self.transport.send((worker.via, worker.routing_id), msg)
        worker.last_sent = now

    # --- what the driver and the supervisor tell the core -----------------------------

    def unreachable(self, peer: Peer, reason: str) -> None:
        """The transport could not hand a message to ``peer``: it is gone."""
        worker = self._conns.get(peer)
        if worker is not None:
            self._worker_lost(worker, f"send failed: {reason}")

    def too_large(self, peer: Peer, msg: Message, why: str) -> None:
        """``msg`` for ``peer`` cannot travel (over the frame limit, or not encodable)."""
        self.bad_frames["unsendable"] += 1
        worker = self._conns.get(peer)
        if worker is None or not isinstance(msg, Dispatch):
            return
        job = worker.inflight.pop(msg.job_id, None)
        if job is not None:
            outcome = Outcome(result="rejected", error=f"job too large for the wire: {why}")
            self.policy.on_outcome(job, worker, outcome, self.clock())
            self._finish(job, outcome, worker)
            self.on_pump_due()

    def lost(self, worker_id: str, reason: str, pid: int | None = None) -> None:
        """``worker_id``'s process (the current one, or the one with ``pid``) is gone: its
        supervisor saw it exit. Act now, not 3 heartbeats later."""
        if pid is None:
            w = self.workers.get(worker_id)
        else:
            w = next((c for c in self._conns.values() if c.worker_id == worker_id and c.pid == pid), None)
        if w is not None:
            self._worker_lost(w, reason)

    def retire(self, worker_id: str, reason: str = "retired") -> None:
        """Stop giving ``worker_id`` jobs; it finishes what it has, says Bye and exits."""
        w = self.workers.get(worker_id)
        if w is None or w.state == "draining":
            return
        w.state = "draining"
        self._parking.wake_ip(w.ip)
        self._send(w, Drain(reason=reason), self.clock())

    def reserve(self, worker_id: str, principal: bytes = LOCAL) -> None:
        """``worker_id`` belongs to ``principal`` (by default this host) before it ever registers.
        A peer of another principal holding it is dropped."""
        self._own(worker_id, principal)
        for w in [c for c in self._conns.values() if c.worker_id == worker_id and c.principal != principal]:
            self._warn(
                f"id:{worker_id}",
                "worker id %s is reserved for %s; dropping %s's",
                worker_id,
                _who(principal),
                _who(w.principal),
            )
            self._worker_lost(w, f"the id {worker_id} is reserved for {_who(principal)}")

    def revoke(self, principal: bytes, reason: str) -> None:
        """``principal``'s key is no longer allowed: drop its workers and ignore what it sends.

        Each is told to drain (a process started after that is refused at its handshake)."""
        self._revoked.add(principal)
        now = self.clock()
        for w in [c for c in self._conns.values() if c.principal == principal]:
            self._worker_lost(w, reason)
            self._send(w, Drain(reason=reason), now)
        for wid in [k for k, v in self._owners.items() if v == principal]:
            del self._owners[wid]

    def restore(self, principal: bytes) -> None:
        """``principal``'s key is allowed again."""
        self._revoked.discard(principal)

    # --- receiving -------------------------------------------------------------------

    def receive(self, peer: Peer, msgs: list[Message], principal: bytes = LOCAL) -> None:
        """Messages from ``peer``, sent with ``principal``'s key (``LOCAL`` on a local socket)."""
        if principal in self._revoked:
            self.bad_frames["revoked_key"] += len(msgs)
            return
        now = self.clock()
        for msg in msgs:
            self._on_message(peer, principal, msg, now)

    def _on_message(self, peer: Peer, principal: bytes, msg: Message, now: float) -> None:
        if isinstance(msg, Ready):
            self._on_ready(peer, principal, msg, now)
            return
        worker = self._conns.get(peer)
        if worker is None:
            if isinstance(msg, Dispatch | Drain | Disconnect):
                self.bad_frames["wrong_direction"] += 1
                return
            # A worker from before a coordinator restart: ask it to register again.
            self.bad_frames["unknown_worker"] += 1
            self.transport.send(peer, Disconnect())
            return
        if worker.principal != principal:  # a routing id taken over by another key
            self.bad_frames["wrong_key"] += 1
            return
        worker.last_seen = now
        if isinstance(msg, Result):
            self._on_result(worker, msg, now)
        elif isinstance(msg, Heartbeat):
            worker.loop_lag_ms = msg.loop_lag_ms
            if msg.draining and worker.state != "draining":
                worker.state = "draining"
                self._parking.wake_ip(worker.ip)
            worker.rss = msg.rss
            worker.bad_frames = msg.bad_frames
            if msg.stats is not None:
                stats = msg.stats
                worker.stats = stats if len(stats) <= _MAX_STATS else dict(itertools.islice(stats.items(), _MAX_STATS))
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

    def _on_ready(self, peer: Peer, principal: bytes, msg: Ready, now: float) -> None:
        wid = msg.worker_id
        if msg.capacity < 1:
            self.bad_frames["bad_ready"] += 1
            return
        owner = self._owners.get(wid)
        if owner is not None and owner != principal:
            self.bad_frames["id_taken"] += 1
            self._warn(
                f"id:{wid}",
                "refused %s registering as %s: that worker id belongs to %s",
                _who(principal),
                wid,
                _who(owner),
            )
            return
        conn = self._conns.get(peer)
        if conn is not None and conn.worker_id != wid:
            self._worker_lost(conn, f"its connection registered again as {wid}")
            conn = None
        old = self.workers.get(wid)
        if old is not None and old.incarnation == msg.incarnation:
            if old is conn:  # the same process repeating itself on the same connection: nothing changed
                old.capacity = msg.capacity
                self._send(old, Heartbeat(), now)
                return
            self._worker_lost(old, "reconnected on a new socket (it dropped what it had in flight)")
        elif old is not None:
            self._supersede(old, now)
        if principal != LOCAL and self._per_key[principal] >= MAX_WORKERS_PER_KEY:
            self.bad_frames["too_many_workers"] += 1
            self._warn(
                f"many:{principal!r}", "refused a worker of %s: it has %d already", _who(principal), MAX_WORKERS_PER_KEY
            )
            return
        w = WorkerInfo(
            routing_id=peer[1],
            worker_id=wid,
            ip=msg.ip,
            family=msg.family,
            bind=msg.bind,
            host=msg.host,
            pid=msg.pid,
            capacity=msg.capacity,
            registered=now,
            last_seen=now,
            via=peer[0],
            incarnation=msg.incarnation,
            principal=principal,
        )
        self.workers[wid] = w
        self._conns[peer] = w
        self._per_key[principal] += 1
        self._own(wid, principal)
        self.policy.on_worker_up(w, now)
        self._parking.wake_ip(w.ip)
        log.info("worker ready", extra={"worker_id": wid, "local_ip": w.ip, "pid": w.pid, "host": w.host})
        for hook in self.worker_up_hooks:
            hook(w, "ready")
        self._send(w, Heartbeat(), now)
        self.on_pump_due()

    def _supersede(self, old: WorkerInfo, now: float) -> None:
        """A new process registers for ``old``'s slot: ``old`` takes no more jobs, but keeps its
        connection, so what it finishes is delivered and its Bye (or death) settles the rest."""
        del self.workers[old.worker_id]
        log.info(
            "a new process registered for %s; the old one (pid %d) finishes its %d job(s)",
            old.worker_id,
            old.pid,
            len(old.inflight),
            extra={"worker_id": old.worker_id, "local_ip": old.ip},
        )
        if old.state != "draining":
            old.state = "draining"
            self._send(old, Drain(reason="a new process took this worker's slot"), now)

    def _own(self, worker_id: str, principal: bytes) -> None:
        owners = self._owners
        owners.pop(worker_id, None)
        owners[worker_id] = principal  # newest last: the oldest are forgotten first
        if len(owners) > _MAX_OWNERS:
            registered = {w.worker_id for w in self._conns.values()}
            for wid in [k for k in owners if k not in registered][: len(owners) - _MAX_OWNERS]:
                del owners[wid]

    def _on_result(self, worker: WorkerInfo, msg: Result, now: float) -> None:
        job = worker.inflight.get(msg.job_id)
        if job is None or job.attempt != msg.attempt:
            self.late_results += 1
            return
        del worker.inflight[msg.job_id]
        worker.done += 1
        self._parking.wake_ip(worker.ip)  # a credit came back and the policy learnt something
        outcome = msg.outcome
        self.policy.on_outcome(job, worker, outcome, now)
        for hook in self.attempt_hooks:
            hook(job, worker, outcome)
        if outcome.result in _RETRY_ON and job.spec.idempotent and job.deadline > now and not self._closing:
            job.attempt += 1
            self._enqueue(job)
        else:
            self._finish(job, outcome, worker)
        self.on_pump_due()

    def _finish(self, job: Job, outcome: Outcome, worker: WorkerInfo | None) -> None:
        if job.future.done():
            return
        final = JobOutcome.of(job, outcome, worker, self.clock())
        self.counts[final.result] += 1
        for hook in self.final_hooks:
            hook(job, final)
        job.future.set_result(final)

    # --- liveness --------------------------------------------------------------------

    def tick(self) -> None:
        """Heartbeats out, dead workers declared, overdue jobs ended. Call 4 times a heartbeat.

        When this call comes late, the hub's loop was busy or stopped for that long: the lateness
        is added to every worker's allowance, so silence that overlaps the hub's own stall is
        never counted against a worker (its messages are waiting in the socket, unread).
        """
        now = self.clock()
        period = self.hb_interval / 4
        lag = now - self._last_tick - period
        self._last_tick = now
        if lag > 0:
            self.lag_total += lag
            for w in self._conns.values():
                w.last_seen = min(now, w.last_seen + lag)
        limit = self.hb_interval * HEARTBEAT_LIVENESS
        lag_total = self.lag_total
        freed = False
        # One heartbeat round for every worker at once, and workers answer at once (see the link):
        # at idle the coordinator then wakes a few times a second, not once per worker.
        beat = now >= self._next_beat
        if beat:
            self._next_beat = now + self.hb_interval * 7 / 8  # every 4th tick, despite timer jitter
        for w in list(self._conns.values()):
            if now - w.last_seen > limit:
                self._worker_lost(w, f"no heartbeat for {now - w.last_seen:.1f}s")
                continue
            if beat:
                self._send(w, Heartbeat(), now)
            overdue = [j for j in w.inflight.values() if now - (lag_total - j.lag_at_send) > j.deadline + _RESULT_GRACE]
            for job in overdue:
                del w.inflight[job.id]
                gave_up = Outcome(result="expired", error=f"{w.ip}: no result by the deadline")
                self.policy.on_outcome(job, w, gave_up, now)  # the policy counts its in-flight jobs too
                self._finish(job, gave_up, w)
                self._parking.wake_ip(w.ip)
                freed = True
        if self._queued or freed:
            self.on_pump_due()

    def _worker_lost(self, w: WorkerInfo, reason: str, graceful: bool = False) -> None:
        peer = (w.via, w.routing_id)
        if self._conns.get(peer) is not w:
            return
        del self._conns[peer]
        self._per_key[w.principal] -= 1
        if self._per_key[w.principal] <= 0:
            del self._per_key[w.principal]
        if self.workers.get(w.worker_id) is w:
            del self.workers[w.worker_id]
        if not graceful:
            self.transport.forget(peer)
        now = self.clock()
        self.policy.on_worker_down(w, now)
        self._parking.wake_ip(w.ip)
        expected = graceful or w.state == "draining" or self._closing  # it was leaving anyway
        level = logging.INFO if expected else logging.WARNING
        log.log(level, "worker gone: %s", reason, extra={"worker_id": w.worker_id, "local_ip": w.ip, "pid": w.pid})
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
        self.on_pump_due()

    def _warn(self, key: str, msg: str, *args: object) -> None:
        """A warning at most once a minute per ``key``: a misbehaving peer cannot flood the log."""
        now = self.clock()
        if now - self._warned.get(key, float("-inf")) < _WARN_EVERY:
            return
        if len(self._warned) > 1024:
            self._warned.clear()
        self._warned[key] = now
        log.warning(msg, *args)

    # --- closing ---------------------------------------------------------------------

    def begin_close(self, reason: str = "farm shutting down") -> None:
        """Cancel every queued job and drain every worker; new submissions are cancelled."""
        self._closing = True
        for queue in self._queues.values():
            for _, _, job in queue:
                self._finish(job, Outcome(result="cancelled", error=reason), None)
        for job in self._parking.drain():
            self._finish(job, Outcome(result="cancelled", error=reason), None)
        self._queues.clear()
        self._queued = 0
        now = self.clock()
        for w in list(self._conns.values()):
            if w.state != "draining":
                w.state = "draining"
                self._send(w, Drain(reason=reason), now)

    @property
    def inflight_total(self) -> int:
        return sum(len(w.inflight) for w in self._conns.values())

    def end_close(self) -> None:
        """Cancel what is still in flight: the farm shut down before it was answered."""
        for w in list(self._conns.values()):
            for job in list(w.inflight.values()):
                self._finish(job, Outcome(result="cancelled", error="farm shut down first"), w)
            w.inflight.clear()
