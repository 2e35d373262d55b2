"""Jobs that wait for one IP are parked, and asked about again only when that IP may take them.

The farm's policy parks a job held by a cooldown, a busy worker or a missing one, not by a pace
(see ``FarmPolicy._pick_pinned``), so most of these tests wait on those. A job held by a pace
stays queued for one pump, is parked from the next, and is not asked about again before its slot
(the last tests).

The hub core on the in-memory transport with a manual clock: each test pumps as often as it
likes (as answers arriving for other IPs would make the driver do) and counts the policy's
questions, or checks that parking changed nothing a job is promised.
"""

from __future__ import annotations

import pytest

from broker.core import HubCore
from broker.jobs import HttpRequest
from broker.parking import RECHECK
from broker.protocol import Dispatch, Outcome
from broker.testing import LeastLoadedPolicy, ManualClock, MemoryTransport, MemoryWorker
from broker.types import Blocked, Job, JobSpec, WorkerInfo
from galileo.policy.allocator import FarmPolicy

HB = 1.0


def spec(**kw: object) -> JobSpec:
    return JobSpec(HttpRequest(url="http://127.0.0.1/"), upstream="u", **kw)  # type: ignore[arg-type]


class Counting(FarmPolicy):
    """The farm's policy, counting how often the hub asks it."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.asked = 0

    def pick(self, job: Job, workers: dict[str, WorkerInfo], now: float) -> WorkerInfo | Blocked:
        self.asked += 1
        return super().pick(job, workers, now)


def farm(
    rate: float | None, ips: list[str], capacity: int = 64
) -> tuple[HubCore, Counting, ManualClock, list[MemoryWorker]]:
    """A hub with ``ips``' workers; ``rate``: the pace each IP is told (None: none, learnt)."""
    clock, transport = ManualClock(), MemoryTransport()
    policy = Counting(known_rates=None if rate is None else {"u": rate})
    core = HubCore(policy, transport, clock=clock, heartbeat_interval=HB)
    workers = [MemoryWorker(core, transport, ip, capacity=capacity).register() for ip in ips]
    return core, policy, clock, workers


async def test_jobs_waiting_for_their_busy_ips_are_asked_about_once_per_answer_not_at_every_pump() -> None:
    """8 IPs whose workers take one job at a time, each with 6 jobs preferring it, answered 0.1 s
    after they leave; the hub pumped every millisecond for 2 s. Asked at every pump, that was up to
    40 questions a pump (80,000 in all)."""
    ips = [f"10.0.0.{i}" for i in range(1, 9)]
    core, policy, clock, workers = farm(None, ips, capacity=1)
    futures = [core.submit(spec(prefer_ip=ip, timeout=30.0)) for ip in ips for _ in range(6)]
    out: list[tuple[float, MemoryWorker, Dispatch]] = []
    for _ in range(2000):
        core.pump()
        for w in workers:
            out += [(clock.now, w, d) for d in w.jobs()]
        for sent in [o for o in out if clock.now - o[0] >= 0.1 - 1e-9]:
            out.remove(sent)
            sent[1].reply(sent[2])
        clock.advance(0.001)
    assert all(f.result().result == "ok" for f in futures) and core.queued == 0
    # A question per answer (48) and per bucket and re-check (8 buckets, 0.6 s each, 4 a second).
    assert policy.asked < 150


async def test_a_parked_job_leaves_when_its_ips_cooldown_ends() -> None:
    """Pumped only when the hub's wake says: the job parked while its IP cools goes at the end of
    the cooldown, not before and not a re-check later."""
    core, _, clock, (w,) = farm(None, ["10.0.0.1"])
    start = clock.now
    first = core.submit(spec(require_ip="10.0.0.1", timeout=10.0))
    core.pump()
    (sent,) = w.jobs()
    w.reply(sent, Outcome(result="rate_limited", status=429, retry_after=1.0))
    assert first.result().result == "rate_limited"
    waiting = core.submit(spec(require_ip="10.0.0.1", timeout=10.0))
    until = core.policy.cooling("10.0.0.1", "u", clock.now)  # type: ignore[attr-defined]
    assert until is not None and until >= start + 1.0
    wake = core.pump()
    went = None
    while went is None:
        assert wake > clock.now
        clock.now = wake
        wake = core.pump()
        if w.jobs():
            went = clock.now
    assert went == pytest.approx(until)
    assert not waiting.done()


async def test_an_answer_from_a_busy_ip_frees_its_parked_job_at_the_next_pump() -> None:
    """No pace, capacity 1: the job waits for a credit, with no time to wake at. The answer for the
    job in flight is the event that frees it."""
    core, policy, clock, (w,) = farm(None, ["10.0.0.1"], capacity=1)
    futures = [core.submit(spec(prefer_ip="10.0.0.1")) for _ in range(3)]
    assert core.pump() == pytest.approx(clock.now + RECHECK)  # nothing to wait for but a re-check
    (first,) = w.jobs()
    asked = policy.asked
    for _ in range(10):
        clock.advance(0.001)
        core.pump()
    assert policy.asked == asked and w.jobs() == []  # parked: not asked again
    w.reply(first)
    core.pump()
    (second,) = w.jobs()
    w.reply(second)
    core.pump()
    (third,) = w.jobs()
    w.reply(third)
    assert [f.result().result for f in futures] == ["ok"] * 3


async def test_parked_jobs_do_not_hide_the_queue_behind_them_from_a_free_ip() -> None:
    """100 jobs for a busy IP, queued ahead of one for any IP. The hub looks at 64 held jobs per
    pump: without parking, the last one never reached a second IP that had nothing to do."""
    core, _, clock, (a, b) = farm(None, ["10.0.0.1", "10.0.0.2"], capacity=1)
    a_jobs = [core.submit(spec(require_ip="10.0.0.1", timeout=10.0)) for _ in range(100)]
    core.pump()
    assert len(a.jobs()) == 1 and b.jobs() == []
    clock.advance(0.5)
    anyone = core.submit(spec(timeout=20.0))
    clock.advance(0.1)
    core.pump()
    assert len(b.jobs()) == 1  # the job for any IP went to the free one
    assert not anyone.done()  # dispatched, not yet answered
    assert sum(f.done() for f in a_jobs) == 0


async def test_a_parked_job_expires_at_its_deadline_with_one_outcome() -> None:
    core, _, clock, (w,) = farm(None, ["10.0.0.1"], capacity=1)
    first = core.submit(spec(require_ip="10.0.0.1", timeout=20.0))
    late = core.submit(spec(require_ip="10.0.0.1", timeout=3.0))
    core.pump()
    assert len(w.jobs()) == 1
    clock.advance(0.5)
    wake = core.pump()
    assert wake <= clock.now + RECHECK  # it is looked at again well before its deadline
    clock.advance(2.6)
    core.pump()
    assert late.done() and late.result().result == "expired"
    assert core.queued == 0 and core.counts["expired"] == 1
    assert not first.done()


async def test_closing_cancels_parked_jobs_exactly_once() -> None:
    core, _, _, (w,) = farm(None, ["10.0.0.1"], capacity=1)
    futures = [core.submit(spec(prefer_ip="10.0.0.1")) for _ in range(5)]
    core.pump()
    (sent,) = w.jobs()
    assert core.queued == 4
    core.begin_close()
    assert [f.result().result for f in futures[1:]] == ["cancelled"] * 4
    assert core.queued == 0 and core.counts["cancelled"] == 4
    w.reply(sent)
    assert futures[0].result().result == "ok"


async def test_a_preferred_ip_that_starts_draining_lets_its_parked_jobs_go_elsewhere() -> None:
    """A sell leg waits for its buy leg's IP only while that IP is eligible. The worker's
    heartbeat saying it drains is an event on that IP: its parked jobs are asked about again."""
    core, _, clock, (a, b) = farm(None, ["10.0.0.1", "10.0.0.2"], capacity=1)
    futures = [core.submit(spec(prefer_ip="10.0.0.1", timeout=10.0)) for _ in range(2)]
    core.pump()
    assert len(a.jobs()) == 1
    clock.advance(0.1)
    a.beat(draining=True)
    core.pump()
    assert len(b.jobs()) == 1  # not when a's job is answered, or at a re-check
    assert not futures[1].done()


class Stubborn(LeastLoadedPolicy):
    """Says a job pinned to an IP waits for it until told otherwise, by a means the hub cannot see."""

    def __init__(self) -> None:
        super().__init__()
        self.open = False
        self.asked = 0

    def pick(self, job: Job, workers: dict[str, WorkerInfo], now: float) -> WorkerInfo | Blocked:
        self.asked += 1
        if self.open:
            return next(iter(workers.values()))
        return Blocked(upstream_wide=False, pinned=job.spec.require_ip)


async def test_a_parked_answer_is_asked_again_within_the_recheck_whatever_happens() -> None:
    clock, transport = ManualClock(), MemoryTransport()
    policy = Stubborn()
    core = HubCore(policy, transport, clock=clock, heartbeat_interval=HB)
    w = MemoryWorker(core, transport, "10.0.0.1").register()
    future = core.submit(spec(require_ip="10.0.0.1", timeout=10.0))
    core.pump()
    asked = policy.asked
    policy.open = True  # an operator unsuspended the IP, say
    clock.advance(RECHECK / 2)
    core.pump()
    assert policy.asked == asked and w.jobs() == []
    clock.advance(RECHECK / 2)
    core.pump()
    assert len(w.jobs()) == 1 and not future.done()


# --- jobs waiting for their IP's pace: queued, and asked about once per slot -----------------


async def test_jobs_waiting_for_their_ips_pace_are_asked_about_once_per_slot_not_at_every_pump() -> None:
    """4 IPs told 10/s, each with 6 jobs preferring it, never answered; the hub pumped every
    millisecond. Each job still leaves its worker at its pacing slot, led as before; but the policy
    is asked about an IP's next job once per slot (and at the re-check), not at every pump: asked at
    every pump, that was 2,400 questions over 0.6 s (64 addresses on 2 cores asked 29 per job)."""
    ips = [f"10.0.0.{i}" for i in range(1, 5)]
    core, policy, clock, workers = farm(10.0, ips)
    start, interval = clock.now, 1 / 9.8  # a told pace keeps 98 % of the rate
    for ip in ips:
        for _ in range(6):
            core.submit(spec(prefer_ip=ip, timeout=30.0))
    sent: dict[str, list[float]] = {ip: [] for ip in ips}
    for _ in range(600):
        core.pump()
        for ip, w in zip(ips, workers, strict=True):
            sent[ip] += [clock.now + d.hold for d in w.jobs()]
        clock.advance(0.001)
    for ip in ips:
        assert sent[ip] == pytest.approx([start + k * interval for k in range(6)], abs=1e-6)
    assert core.queued == 0
    # Per IP and slot: the question that sends a job and the one that finds the next must wait;
    # and the re-check (the slots are closer than that here).
    assert policy.asked <= 4 * (2 * 6 + 1)


class OneAtATime(LeastLoadedPolicy):
    """Lets each worker carry one job; the next waits for its IP, without the promise of a cooldown
    (so the hub may not park it): as a learnt concurrency cap or a pace that an answer moves."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def pick(self, job: Job, workers: dict[str, WorkerInfo], now: float) -> WorkerInfo | Blocked:
        self.asked += 1
        w = next(w for w in workers.values() if w.ip == job.spec.require_ip)
        return w if not w.inflight else Blocked(upstream_wide=False)


async def test_a_job_waiting_for_its_ip_is_asked_about_again_when_its_ip_answers() -> None:
    """The policy said the IP's next job waits, with no time (a slot comes back when an answer
    does): the hub asks about it again at the next pump after that answer, and not before, but
    for the re-check."""
    clock, transport = ManualClock(), MemoryTransport()
    policy = OneAtATime()
    core = HubCore(policy, transport, clock=clock, heartbeat_interval=HB)
    w = MemoryWorker(core, transport, "10.0.0.1").register()
    futures = [core.submit(spec(require_ip="10.0.0.1", timeout=10.0)) for _ in range(2)]
    core.pump()
    (first,) = w.jobs()
    asked = policy.asked
    for _ in range(10):
        clock.advance(RECHECK / 20)
        core.pump()
    assert policy.asked == asked and w.jobs() == []
    w.reply(first)
    core.pump()
    (second,) = w.jobs()
    w.reply(second)
    core.pump()
    assert [f.result().result for f in futures] == ["ok", "ok"]
    clock.advance(RECHECK)  # and one with no answer to wait for is asked about within the re-check
    core.submit(spec(require_ip="10.0.0.1", timeout=10.0))
    core.submit(spec(require_ip="10.0.0.1", timeout=10.0))
    core.pump()
    assert len(w.jobs()) == 1
    asked = policy.asked
    clock.advance(RECHECK)
    core.pump()
    assert policy.asked == asked + 1 and w.jobs() == []


async def test_jobs_behind_one_ips_pace_do_not_hide_a_free_ip_from_the_hub() -> None:
    """2,000 jobs wait for one IP's pace (told 10/s), all due before a job for another, free IP:
    that job still goes at the first pump. Behind its pace, an IP's first job stays in the queue and
    the rest wait behind it out of the queue's scans, so a pump looks at each waiting IP once."""
    core, policy, clock, (busy, free) = farm(10.0, ["10.0.0.1", "10.0.0.2"])
    for _ in range(2000):
        core.submit(spec(prefer_ip="10.0.0.1", timeout=30.0))
    other = core.submit(spec(prefer_ip="10.0.0.2", timeout=60.0))
    wake = core.pump()
    assert len(busy.jobs()) == 1 and len(free.jobs()) == 1 and not other.done()
    # The first job went as it was submitted; the second was asked about then and at the pump.
    assert core.queued == 1999 and policy.asked <= 4
    for _ in range(3):  # at each slot: the head goes, and the next one is asked about
        clock.now = wake
        wake = core.pump()
        assert len(busy.jobs()) == 1
    assert core.queued == 1996 and policy.asked <= 4 + 2 * 3


async def test_a_pump_before_the_slots_looks_at_no_job_waiting_for_a_pace() -> None:
    """64 IPs told 10/s, each with 3 jobs preferring it. Once a pace has said wait, the IP's next job
    is set aside with the rest until its slot: the pumps in between pop nothing off the queue and
    ask nothing (kept in the queue, each IP's next job was popped and pushed back at every pump: a
    pump's cost grew with the IPs, and pumps with the jobs, N² in all)."""
    ips = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(64)]
    core, policy, clock, workers = farm(10.0, ips)
    for ip in ips:
        for _ in range(3):
            core.submit(spec(prefer_ip=ip, timeout=30.0))
    wake = core.pump()  # each IP's first job goes; its second is asked about, and waits for the slot
    assert all(len(w.jobs()) == 1 for w in workers)
    clock.advance(0.001)
    core.pump()
    asked = policy.asked
    for _ in range(20):
        clock.advance(0.001)
        core.pump()
        assert core._queues.get("u", []) == [] and core.queued == 2 * len(ips)
    assert policy.asked == asked
    clock.now = wake  # the slot: each IP's second job goes (led, held by its worker until the slot)
    core.pump()
    assert all(len(w.jobs()) == 1 for w in workers) and core.queued == len(ips)
