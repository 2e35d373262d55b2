"""What the hub and its policy share: jobs as the coordinator holds them, workers, outcomes.

These never cross the wire. A :class:`Job` is the coordinator's record of a submission (with
its deadline, affinity and future); a :class:`WorkerInfo` is what the hub knows of a live
worker; a :class:`JobOutcome` is the one terminal answer every submission gets.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from broker.jobs import JobPayload
from broker.protocol import Outcome, ResultName, UpstreamStats
from broker.results import ResultValue

__all__ = ["Blocked", "Job", "JobOutcome", "JobSpec", "Policy", "WorkerInfo"]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job as a caller describes it.

    ``upstream`` names the thing a rate limit belongs to (``jupiter``, ``jito:frankfurt``).
    ``prefer_ip`` keeps a job on an IP unless that IP is cooling; ``require_ip`` runs it on
    that IP or not at all (it waits, then expires); ``avoid_ip`` steers it away when another
    IP can take it; ``hash_key`` ties it to an IP by rendezvous hashing.
    ``idempotent`` jobs are re-dispatched on another IP when their worker dies.
    """

    payload: JobPayload
    upstream: str
    timeout: float = 5.0
    idempotent: bool = True
    prefer_ip: str | None = None
    require_ip: str | None = None
    avoid_ip: str | None = None
    hash_key: str | None = None
    task: str = ""  # a label for metrics and logs (quote_buy, lander, ...); defaults to the kind


@dataclass(slots=True, eq=False)
class Job:
    """The hub's record of one submitted job."""

    id: int
    spec: JobSpec
    kind: str
    deadline: float  # monotonic seconds
    submitted: float
    future: asyncio.Future[JobOutcome]
    attempt: int = 0
    tried: list[str] = field(default_factory=list)  # IPs of earlier attempts
    sent_at: float = 0.0  # when it was dispatched
    hold: float = 0.0  # ... and how long its worker holds it before sending (the policy's plan: its pacing slot)
    gap: float = 0.0  # ... and at least this long after its worker's last send to the upstream (0: no such floor)
    cap: int = 0  # ... and only while fewer than this many of its worker's requests to the upstream are out (0: any)
    lag_at_send: float = 0.0  # the hub's own accumulated loop lag when it was sent (see HubCore.tick)

    @property
    def upstream(self) -> str:
        return self.spec.upstream

    @property
    def task(self) -> str:
        return self.spec.task or self.kind


@dataclass(slots=True, eq=False)
class WorkerInfo:
    """A registered worker process as the hub sees it. ``credit`` is how many more jobs it may take.

    ``worker_id`` names its slot, ``incarnation`` the process; ``principal`` is the CURVE key
    (z85) it connected with, ``b""`` on a local socket.
    """

    routing_id: bytes
    worker_id: str
    ip: str
    family: str
    bind: bool
    host: str
    pid: int
    capacity: int
    registered: float
    last_seen: float
    via: int = 0  # which of the hub's sockets the worker is connected through
    last_sent: float = 0.0
    state: str = "ready"  # ready | draining
    inflight: dict[int, Job] = field(default_factory=dict)
    loop_lag_ms: float = 0.0
    rss: int = 0
    bad_frames: int = 0  # as the worker reports it: frames from us it could not read
    stats: dict[str, UpstreamStats] = field(default_factory=dict)
    done: int = 0
    incarnation: str = ""
    principal: bytes = b""

    @property
    def credit(self) -> int:
        return self.capacity - len(self.inflight) if self.state == "ready" else 0


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """The single terminal answer to a submitted job."""

    job_id: int
    result: ResultName
    task: str
    upstream: str
    ip: str | None = None  # the IP of the last attempt, if it was dispatched
    worker_id: str | None = None
    status: int = 0
    latency: float = 0.0  # upstream service time, as the worker measured it
    retry_after: float | None = None
    error: str = ""
    value: ResultValue | None = None
    attempts: int = 0
    total: float = 0.0  # submit -> outcome, seconds

    @property
    def ok(self) -> bool:
        return self.result == "ok"

    @classmethod
    def of(cls, job: Job, outcome: Outcome, worker: WorkerInfo | None, now: float) -> JobOutcome:
        return cls(
            job_id=job.id,
            result=outcome.result,
            task=job.task,
            upstream=job.upstream,
            ip=worker.ip if worker else (job.tried[-1] if job.tried else None),
            worker_id=worker.worker_id if worker else None,
            status=outcome.status,
            latency=outcome.latency,
            retry_after=outcome.retry_after,
            error=outcome.error,
            value=outcome.value,
            attempts=job.attempt + (1 if job.sent_at else 0),
            total=now - job.submitted,
        )


@dataclass(frozen=True, slots=True)
class Blocked:
    """The policy's answer when no worker can take a job now.

    ``until``: when it may be possible (a cooldown or pacing slot ends), or None to wait for a
    change (a credit returns, a worker registers). ``upstream_wide``: every job of this
    upstream is blocked the same way, so the hub stops looking at the rest of its queue.
    ``expire``: this job will never be worth sending (too little of its time is left): the hub
    ends it now, ``expired``, instead of keeping it at the head of the queue, where it would hold
    back the jobs behind it until its deadline.
    ``pinned``: the job waits for this IP alone (its ``require_ip``, or its ``prefer_ip`` while
    that IP is eligible), and so does every job pinned the same way to it, until ``until`` or
    until something happens to that IP (an answer, its worker coming, going or draining). The
    hub then parks them and asks again only then (:mod:`broker.parking`). None: no such promise.
    """

    until: float | None = None
    upstream_wide: bool = True
    expire: bool = False
    pinned: str | None = None


class Policy(Protocol):
    """Which worker runs a job, and what an outcome teaches. Pure: no sockets, clock passed in."""

    def pick(self, job: Job, workers: dict[str, WorkerInfo], now: float) -> WorkerInfo | Blocked:
        """Choose among registered workers (keyed by worker id), or say why not and until when."""
        ...

    def on_dispatch(self, job: Job, worker: WorkerInfo, now: float) -> None: ...

    def on_outcome(self, job: Job, worker: WorkerInfo, outcome: Outcome, now: float) -> None: ...

    def on_worker_up(self, worker: WorkerInfo, now: float) -> None: ...

    def on_worker_down(self, worker: WorkerInfo, now: float) -> None: ...
