"""A farm in virtual time: the real :class:`FarmPolicy` against limiter objects, for pacing tests.

A discrete-event simulation, deterministic for a seed, that runs a minute of traffic in well
under a second. The client side is the farm's own policy (pick, dispatch, outcome: pacing,
cooldowns, the allocator) over fake workers; demand is saturated (a job is always waiting,
as under the round-trip engine's pipeline). The upstream side is anything with
``arrive(ip, now) -> Reply`` and ``release(ip, now)``: :class:`SimUpstream` wraps the
simulator's own limiter objects (``galileo.sim.limiter``) and its latency model, and a test
may bring shapes of its own.

A request leaves the coordinator at dispatch (its worker holds it ``job.hold`` seconds more, up
to its pacing slot), reaches the upstream ``send`` seconds later (``send_jitter`` of scheduling
noise on top), is judged there when it arrives, in the order requests arrive (the answers and
releases in between come first), and its answer comes back
``delay`` seconds after that. ``stalls=(every, length)``: once in each ``every`` seconds (at a
seeded random moment) the upstream stops reading for ``length`` seconds, and judges what arrived
meanwhile when it resumes, all at once (a host that descheduled it, a busy event loop).
``worker_stalls=(every, length)``: the same for each worker (each at moments of its own): a job
dispatched to it meanwhile is read when it resumes, then held (``job.hold``) and spaced after its
last send (``job.gap``, as :class:`workers.executor.Executor` spaces them). ``timers_late``: the
mean of how late (exponentially drawn) every timer wakes, the coordinator's wake-ups for a slot and
a worker's hold and spacing waits alike, as a busy host's do (0: on time). ``hop``: seconds from the
coordinator to a worker and back again, each way (ZeroMQ and two event loops; 0: none): a job reaches
its worker that long after dispatch, and an answer the coordinator that long after the worker. A job
with a concurrency cap (``job.cap``) goes only while fewer than that many of its worker's requests
are out (sent and not yet answered to the worker), as :mod:`workers.slots` keeps them. Each outcome
says when its worker sent it and how long the answer took to come back to the worker
(``Outcome.sent``, ``latency``), as a worker does; ``says_sent=False``: neither (the upstream's delay
as latency), as before round 35. The
clock starts at ``START`` (a monotonic clock is never 0, and the hub reads a ``sent_at`` of 0 as
"never sent"); times in a :class:`Run` are relative.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import zlib
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from broker.jobs import HttpRequest
from broker.protocol import Outcome
from broker.types import Job, JobSpec, WorkerInfo
from galileo.policy.allocator import FarmPolicy
from galileo.sim.latency import LatencyModel, parse_latency
from galileo.sim.limiter import Limiter, build, parse_limiters, refusal_header
from tests.conftest import fake_worker
from workers.executor import spaced_at, spaced_wait

__all__ = ["Gateway", "Reply", "Run", "SimUpstream", "Upstream", "simulate"]

UPSTREAM = "u"
START = 1000.0
_SPEC = JobSpec(HttpRequest(url="http://u/"), upstream=UPSTREAM, timeout=10.0)


@dataclass(frozen=True, slots=True)
class Reply:
    """The upstream's answer to one request: admitted or not, and after how long it leaves."""

    ok: bool
    delay: float = 0.0
    retry_after: float | None = None
    penalty: bool = False  # this refusal put the caller in a penalty box


class Upstream(Protocol):
    def arrive(self, ip: str, now: float) -> Reply: ...

    def release(self, ip: str, now: float) -> None: ...


class SimUpstream:
    """The simulator's limiter (one, or one per IP) and latency, judged as ``galileo sim`` does.

    ``scope`` is read from the spec: per IP, or one budget (``key``, ``global``) for every IP.
    A refusal carries ``Retry-After`` as the simulator's header says it (whole seconds, at
    least 1) unless the spec has ``retry_after=no``, and after the latency drawn for it unless the
    refusing limit says ``refuse=at_once`` (a gateway's: then at once). Limits stack with ``&`` as the simulator's
    do: every one must admit, a refused request still spent the rate budgets before it (only
    slots are given back), and the refusing limit says what the refusal carries.
    """

    def __init__(
        self,
        spec: str,
        *,
        latency: str = "0",
        seed: int = 1,
        per_ip: dict[str, str] | None = None,
    ) -> None:
        self.stack = [(build(one), one.scope in ("key", "global")) for one in parse_limiters(spec)]
        self.per_ip = {  # an IP's own limits, keyed by that IP whatever their scope
            ip: [(build(one), False) for one in parse_limiters(text)] for ip, text in (per_ip or {}).items()
        }
        self.latency = LatencyModel(parse_latency(latency), seed, "u")

    def _limits(self, ip: str) -> list[tuple[Limiter, Hashable]]:
        stack = self.per_ip.get(ip, self.stack)
        return [(limiter, "k" if shared else ip) for limiter, shared in stack]

    def arrive(self, ip: str, now: float) -> Reply:
        delay = self.latency.sample()
        taken: list[tuple[Limiter, Hashable]] = []
        wait = 0.0
        for limiter, key in self._limits(ip):
            d = limiter.admit(key, now)
            if not d.ok:
                for held, held_key in taken:
                    held.release(held_key, now)
                said = refusal_header(limiter.spec, d)  # what the live simulator's refusal would say
                ra = float(said[1]) if said is not None else None
                return Reply(False, 0.0 if limiter.spec.at_once else delay, ra, d.reason == "penalty")
            taken.append((limiter, key))
            wait = max(wait, d.wait)  # in a queue's line (the ``queue`` shape), before it is served
        return Reply(True, delay + wait)

    def release(self, ip: str, now: float) -> None:
        for limiter, key in self._limits(ip):
            limiter.release(key, now)


class Gateway(SimUpstream):
    """The simulator's limits as a gateway in front of them may present them: every refusal says
    ``Retry-After: 1`` whatever the limit (``says_one_second``, as many gateways do), and each IP's
    windows reset ``offsets[ip]`` seconds later than the clock's (a window that starts at an IP's first
    request)."""

    def __init__(
        self, spec: str, *, says_one_second: bool = True, offsets: dict[str, float] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(spec, **kwargs)
        self.says_one_second, self.offsets = says_one_second, offsets or {}

    def arrive(self, ip: str, now: float) -> Reply:
        reply = super().arrive(ip, now + self.offsets.get(ip, 0.0))
        return Reply(False, reply.delay, 1.0, reply.penalty) if self.says_one_second and not reply.ok else reply

    def release(self, ip: str, now: float) -> None:
        super().release(ip, now + self.offsets.get(ip, 0.0))


@dataclass
class Run:
    """What the farm got in the counted window (after ``warmup``), and over the whole run."""

    seconds: float
    ok: Counter[str] = field(default_factory=Counter)  # per IP, counted window
    limited: Counter[str] = field(default_factory=Counter)
    penalties: int = 0  # penalty-box entries over the whole run
    penalties_counted: int = 0  # ... and in the counted window
    max_inflight: int = 0
    latencies: list[float] = field(default_factory=list)  # answers in the counted window
    series: list[tuple[float, int, int]] = field(default_factory=list)  # (second, ok, 429), whole run

    @property
    def ok_per_s(self) -> float:
        return sum(self.ok.values()) / self.seconds

    @property
    def share_429(self) -> float:
        done = sum(self.ok.values()) + sum(self.limited.values())
        return sum(self.limited.values()) / done if done else 0.0

    def ratio(self, budget: float) -> float:
        """Successes/s over ``budget`` requests/s (N·R, or a key's budget)."""
        return self.ok_per_s / budget


def simulate(
    upstream: Upstream,
    ips: Sequence[str],
    *,
    seconds: float = 60.0,
    warmup: float = 20.0,
    policy: FarmPolicy | None = None,
    known: float | None = None,
    seed: int = 1,
    send: float = 0.0005,
    send_jitter: float = 0.001,
    capacity: int = 256,
    demand: Callable[[float], float] | None = None,
    on_second: Callable[[float, FarmPolicy], Any] | None = None,
    stalls: tuple[float, float] | None = None,
    worker_stalls: tuple[float, float] | None = None,
    timers_late: float = 0.0,
    hop: float = 0.0,
    says_sent: bool = True,
) -> Run:
    """Keep the farm saturated for ``seconds`` of virtual time; count after ``warmup``.

    ``demand(now)``: jobs per second offered (default: always one waiting). ``known``: the
    told rate per IP (``rate_limit_per_ip``). ``on_second`` is called once per virtual second.
    """
    rng = random.Random(seed)
    policy = policy or FarmPolicy(known_rates={UPSTREAM: known} if known else None, rng=random.Random(seed))
    workers = {f"w/{ip}": fake_worker(ip, capacity) for ip in ips}
    run = Run(seconds - warmup)
    events: list[tuple[float, int, int, Any]] = []  # (time, seq, kind, payload)
    seq = itertools.count()
    ids = itertools.count(1)
    ANSWER, RELEASE, WAKE, OFFER, ARRIVE, SEND, HEARD = 0, 1, 2, 3, 4, 5, 6
    wake_at = math.inf
    backlog = math.inf if demand is None else 0.0
    per_second: dict[int, list[int]] = {}
    timers = random.Random(seed * 7919 + 1)  # a stream of its own: other draws stay as they were

    def late() -> float:
        return timers.expovariate(1 / timers_late) if timers_late > 0 else 0.0

    def stalled(at: float, every: float, length: float, salt: int) -> float:
        """When a reader stalled once per ``every`` (at a moment seeded by ``salt``) reads ``at``."""
        k = math.floor((at - START) / every)
        start = START + k * every + random.Random(salt * 1_000_003 + k).uniform(0, every - length)
        return start + length if start <= at < start + length else at

    def judged_at(arrival: float) -> float:
        return arrival if stalls is None else stalled(arrival, *stalls, seed)

    last_sent: dict[str, float] = {}

    def leaves_worker(job: Job, w: WorkerInfo, now: float) -> float:
        """When ``w``'s worker sends ``job``, dispatched ``now``: read (after its stall), held, spaced."""
        now += hop
        read = now if worker_stalls is None else stalled(now, *worker_stalls, zlib.crc32(f"{seed}/{w.ip}".encode()))
        went = read + job.hold + (late() if job.hold > 0 else 0.0)
        if job.gap > 0:
            last = last_sent.get(w.ip)
            wait = None if last is None else spaced_wait(last, job.gap, went)
            if wait is not None:
                went += wait + late()
            last_sent[w.ip] = spaced_at(last if wait is not None else None, job.gap, went)
        return went

    def pump(now: float) -> None:
        nonlocal wake_at, backlog
        while backlog >= 1:
            job = Job(next(ids), _SPEC, "http", now + _SPEC.timeout, now, None)  # type: ignore[arg-type]
            choice = policy.pick(job, workers, now)
            if not isinstance(choice, WorkerInfo):
                until = choice.until
                if until is not None and until < wake_at:
                    wake_at = until
                    heapq.heappush(events, (until + late(), next(seq), WAKE, None))
                return
            backlog -= 1
            job.sent_at = now
            choice.inflight[job.id] = job
            policy.on_dispatch(job, choice, now)
            went = leaves_worker(job, choice, now)  # held until its slot, spaced after its last send
            if job.cap > 0:  # and sent only while under its cap: decided when its worker would send it
                heapq.heappush(events, (went, next(seq), SEND, (job, choice)))
            else:
                goes(went, job, choice)
            run.max_inflight = max(run.max_inflight, len(choice.inflight))

    out: Counter[str] = Counter()  # per IP: requests its worker sent and has not heard the answer of
    queued: dict[str, list[tuple[float, Job, WorkerInfo]]] = {}  # per IP: jobs its worker holds for a slot
    waited: dict[int, float] = {}  # per job: how long its worker held it so (Outcome.waited)

    went_at: dict[int, float] = {}  # per job: when its worker sent it (Outcome.sent)

    def goes(went: float, job: Job, w: WorkerInfo) -> None:
        out[w.ip] += 1
        went_at[job.id] = went
        arrival = went + send + rng.expovariate(1 / send_jitter) if send_jitter else went + send
        # The upstream judges it when it arrives, after what happens meanwhile (answers, releases).
        heapq.heappush(events, (judged_at(arrival), next(seq), ARRIVE, (job, w)))

    def heard(now: float, ip: str) -> None:
        out[ip] -= 1
        waiting = queued.get(ip)
        if waiting:
            due, job, w = waiting.pop(0)
            waited[job.id] = now - due
            goes(now, job, w)

    def arrive(arrival: float, job: Job, w: WorkerInfo) -> None:
        reply = upstream.arrive(w.ip, arrival)
        if reply.penalty:
            run.penalties += 1
            run.penalties_counted += arrival >= warmup
        leaves = arrival + reply.delay
        if reply.ok:
            heapq.heappush(events, (leaves, next(seq), RELEASE, w.ip))
        heapq.heappush(events, (leaves + send, next(seq), HEARD, w.ip))
        heapq.heappush(events, (leaves + send + hop, next(seq), ANSWER, (job, w, reply)))

    seconds += START
    warmup += START
    if demand is not None:
        heapq.heappush(events, (START, next(seq), OFFER, None))
    next_second = START + 1.0
    pump(START)
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if now >= seconds:
            break
        while on_second is not None and now >= next_second:
            on_second(next_second - START, policy)
            next_second += 1.0
        if kind == RELEASE:
            upstream.release(payload, now)
            continue
        if kind == ARRIVE:
            arrive(now, *payload)
            continue
        if kind == SEND:
            job, w = payload
            if out[w.ip] >= job.cap:
                queued.setdefault(w.ip, []).append((now, job, w))
            else:
                goes(now, job, w)
            continue
        if kind == HEARD:
            heard(now, payload)
            continue
        if kind == WAKE:
            if now >= wake_at:
                wake_at = math.inf
            pump(now)
            continue
        if kind == OFFER:
            assert demand is not None
            backlog = min(backlog + demand(now - START) * 0.01, 1e6)
            heapq.heappush(events, (now + 0.01, next(seq), OFFER, None))
            pump(now)
            continue
        job, w, reply = payload
        del w.inflight[job.id]
        held = waited.pop(job.id, 0.0)
        went = went_at.pop(job.id)
        sent, took = (went, now - hop - went) if says_sent else (0.0, reply.delay)  # as its worker saw it
        if reply.ok:
            outcome = Outcome(result="ok", status=200, latency=took, waited=held, sent=sent)
        else:
            outcome = Outcome(
                result="rate_limited", status=429, latency=took, retry_after=reply.retry_after, waited=held, sent=sent
            )
        policy.on_outcome(job, w, outcome, now)
        second = per_second.setdefault(int(now - START), [0, 0])
        second[0 if reply.ok else 1] += 1
        if now >= warmup:
            if reply.ok:
                run.ok[w.ip] += 1
                run.latencies.append(now - job.sent_at)
            else:
                run.limited[w.ip] += 1
        pump(now)
    run.series = [(float(s), ok, no) for s, (ok, no) in sorted(per_second.items())]
    return run
