"""The farm's policy: which worker takes a job, and what each outcome teaches.

One definition of *eligible*, used by every pick and by the farm's :meth:`lanes` view: an IP
is eligible for upstream U when its worker is ready and the (IP, U) pair is neither cooling
nor suspended (:meth:`FarmPolicy.eligible`). It may take a job *now* when, besides, its
worker has credit and the pair's pacer allows a send.

* ``require_ip``: that IP when it may, else wait (the job expires if it never may).
* ``prefer_ip``: that IP if it may; if it is not eligible (cooling, suspended, gone), any
  other; if it is merely busy or paced, the job waits for it (a sell leg stays on its buy
  leg's IP).
* ``hash_key``: the IPs ranked by rendezvous hash for the key; the first eligible one that
  may take the job now gets it, so a key (a bundle to one region) stays on one IP while that
  IP has budget, and spills to the next-ranked IP when it is paced or cooling instead of
  waiting for it.
* otherwise: the least loaded of the first few eligible IPs in round-robin order (in-flight /
  capacity; ties go to the rotation), so spare IPs rotate and a pick stays O(1) however many
  IPs there are; ``avoid_ip`` is honoured when another IP is eligible.

When nothing is eligible the policy says until when (the earliest cooldown or pacing slot).

A pair on a told pace whose slot is at most :data:`LEAD` away may take a job now: the job
carries the rest of the wait as its ``hold``, which its worker keeps before sending, and the pace
counts the send at the slot. So the hub is woken ``LEAD`` before such a slot, and a wake up to
that late still sends on time. A learnt pace is not led: it is learnt from the sends the farm
makes, late ones included (at 64 addresses and 50 ms, led or not made no difference to it, and
the worker's extra timer cost 5 % more CPU per answer).

:meth:`FarmPolicy.lanes` tells a caller what each eligible IP can carry for an upstream: the
pair's pace, its concurrency cap, and the latency of its recent answers, so a strategy keeps
as much in flight as Little's law says the budget needs (:class:`Lane`).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from broker.protocol import Outcome
from broker.types import Blocked, Job, WorkerInfo
from galileo.policy.cooldown import CooldownBook
from galileo.policy.hashing import hrw_rank
from galileo.policy.pacing import PaceBook, Pacer

__all__ = ["FarmPolicy", "Lane"]

log = logging.getLogger("galileo.policy")

SAMPLE = 4  # eligible IPs compared per pick: least loaded among them, O(1) per job
# A job left with less than this share of its timeout (it waited in the queue behind more than
# the upstreams' budget) is not dispatched: it would spend a pacing slot, time out at the
# upstream and cool an innocent IP. It expires now instead: held to its deadline at the head of
# the queue (the soonest deadline first), such jobs filled the hub's scan of the queue and the
# pacing slots they passed up went unused.
MIN_LEFT_SHARE = 0.25
# A pair on a told pace whose next slot is at most this far off may take its job now: the job goes
# with the rest of the wait as its ``hold``, and the worker sends it at the slot. The coordinator
# shares its cores with the workers and wakes late now and then (1 ms at the median, 20-35 ms at
# p99 with 64 workers on 2 cores): a send made more than the pace's ``catch_up`` late loses the rest
# of its lateness (before round 34 all of it: 3 % of a told pace at 64 addresses and 300 ms).
LEAD = 0.010

CooldownHook = Callable[[str, str, str, float], None]  # ip, upstream, reason, seconds
SuspendHook = Callable[[str, str], None]  # ip, why


@dataclass(frozen=True, slots=True)
class Lane:
    """What one eligible IP can carry for one upstream, now.

    ``rate``: requests/s its pacer lets through (inf: not paced). ``cap``: at most this many
    in flight (the pacer's ramp while it has not met a limit), None when the pace is the
    limit. ``latency``: seconds from dispatch to answer, averaged over recent answers (0
    before the first); ``floor``: the lowest it has been lately, so latency well above it
    means requests queue somewhere (more in flight would only wait longer).
    """

    ip: str
    upstream: str
    rate: float
    cap: int | None
    latency: float
    floor: float = 0.0

    @property
    def queueing(self) -> bool:
        """Answers take over twice the pair's floor: in flight beyond this only adds delay."""
        return self.floor > 0 and self.latency > 2 * self.floor

    @property
    def window(self) -> float:
        """Jobs in flight this pair's budget needs, by Little's law: pace x latency (capped)."""
        by_rate = self.rate * self.latency if math.isfinite(self.rate) else math.inf
        return min(by_rate, math.inf if self.cap is None else float(self.cap))


class FarmPolicy:
    """Implements :class:`broker.types.Policy` with cooldowns, pacing and rendezvous hashing.

    ``known_rates``: told rates per IP; ``keyed``: upstreams whose budget an API key shares over
    every IP; ``known_shared``: told budgets so shared (by upstream or family, as :class:`PaceBook`).
    """

    def __init__(
        self,
        *,
        known_rates: dict[str, float] | None = None,
        keyed: Iterable[str] = (),
        known_shared: dict[str, float] | None = None,
        cooldowns: CooldownBook | None = None,
        pacing: PaceBook | None = None,
        rng: random.Random | None = None,
        lead: float = LEAD,
    ) -> None:
        self.cooldowns = cooldowns or CooldownBook(rng=rng)
        self.pacing = pacing or PaceBook(known_rates, keyed=keyed, known_shared=known_shared)
        self.lead = lead
        self._turn = 0
        self._rank_cache: dict[str, list[str]] = {}
        self._members: frozenset[str] = frozenset()
        self._by_ip: dict[str, WorkerInfo] = {}  # first worker of each IP, checked against the hub's dict on use
        self.cooldown_hooks: list[CooldownHook] = []
        self.suspend_hooks: list[SuspendHook] = []

    # --- eligibility ------------------------------------------------------------------

    def cooling(self, ip: str, upstream: str, now: float) -> float | None:
        return self.cooldowns.cooling_until(ip, upstream, now)

    def _ineligible_until(self, w: WorkerInfo, upstream: str, now: float) -> float | None:
        """None when ``w`` is eligible for ``upstream``; else until when it is not (inf: no telling)."""
        if w.state != "ready":
            return float("inf")
        return self.cooldowns.cooling_until(w.ip, upstream, now)

    def eligible(self, w: WorkerInfo, upstream: str, now: float) -> bool:
        """The one definition: ``w`` is ready and its (IP, upstream) pair is not cooling or suspended."""
        return self._ineligible_until(w, upstream, now) is None

    def lanes(self, workers: dict[str, WorkerInfo], upstream: str, now: float) -> list[Lane]:
        """Every eligible IP's :class:`Lane` for ``upstream``, ordered by IP."""
        pacers = [self.pacing.get(w.ip, upstream, now) for w in workers.values() if self.eligible(w, upstream, now)]
        ips = [w.ip for w in workers.values() if self.eligible(w, upstream, now)]
        shared = self.pacing.group(upstream)
        out = []
        for ip, p in zip(ips, pacers, strict=True):
            rate, cap = p.allowance()
            if shared is not None and shared.phase != "open":
                rate = min(rate, shared.rate / len(pacers))  # one budget for every IP: each carries its share
            out.append(Lane(ip, upstream, rate, cap, p.latency, p.floor))
        out.sort(key=lambda lane: lane.ip)
        return out

    def _ready_at(self, w: WorkerInfo, upstream: str, now: float) -> float | None:
        """None when ``w`` may take an ``upstream`` job now: eligible, with credit, and paced to send.

        Else when it might (inf: when a job returns or the worker is ready again).
        """
        until = self._held_until(w, upstream, now)
        return until if until is not None else self._paced_until(w, upstream, now)

    def _held_until(self, w: WorkerInfo, upstream: str, now: float) -> float | None:
        """None when ``w`` is eligible for ``upstream`` and has credit; else until when not (inf: when
        a job returns or the worker is ready again)."""
        until = self._ineligible_until(w, upstream, now)
        if until is not None:
            return until
        return float("inf") if len(w.inflight) >= w.capacity else None

    def _paced_until(self, w: WorkerInfo, upstream: str, now: float) -> float | None:
        """None when the pair's pace lets it send now (or within its lead); else when it will."""
        at = self.pacing.next_at(w.ip, upstream, now)
        if at is None:
            return None
        pacer = self.pacing.get(w.ip, upstream, now)
        pacer.blocked(now)
        # Its slot is near: it goes now, held by the worker (on_dispatch). inf: at its concurrency
        # cap, a returning job frees a slot.
        until = at - self._lead(pacer)  # the same sum as in on_dispatch: waking at it, the pair may go
        return None if until <= now else until

    def _lead(self, pacer: Pacer) -> float:
        """How long before its slot a pair may take a job: ``lead`` where its pace (or its shared
        budget's) was told. A learnt pace is learnt from the sends the farm makes, late ones and all."""
        group = pacer.group
        told = pacer.learner.told is not None or (group is not None and group.told is not None)
        return self.lead if told else 0.0

    # --- Policy ---------------------------------------------------------------------

    def pick(self, job: Job, workers: dict[str, WorkerInfo], now: float) -> WorkerInfo | Blocked:
        spec = job.spec
        upstream = job.upstream
        if job.deadline - now < MIN_LEFT_SHARE * spec.timeout:
            return Blocked(upstream_wide=False, expire=True)  # starved by the queue: expire, not time out upstream
        shared = self.pacing.group(upstream)
        if shared is not None and (at := shared.next_at(now)) is not None:
            shared.blocked(now)
            lead = self.lead if shared.told is not None else 0.0
            if (until := at - lead) > now:  # the upstream's one budget is paced: no IP may send before then
                return Blocked(until=until)
        if spec.require_ip is not None:
            mine = self._worker_at(spec.require_ip, workers)
            if mine is None:
                return Blocked(upstream_wide=False, pinned=spec.require_ip)
            return self._pick_pinned(mine, upstream, now)
        if spec.prefer_ip is not None:
            mine = self._worker_at(spec.prefer_ip, workers)
            if mine is not None and self.eligible(mine, upstream, now):
                return self._pick_pinned(mine, upstream, now)
        if spec.hash_key is not None:
            return self._pick_hashed(spec.hash_key, workers, upstream, now)
        return self._pick_least_loaded(workers, upstream, now, spec.avoid_ip)

    def _pick_pinned(self, w: WorkerInfo, upstream: str, now: float) -> WorkerInfo | Blocked:
        """``w`` if it may take the job now, else how long the job waits for its IP alone. The hub
        may park it (``pinned``) while a cooldown or a worker without credit holds it, not a pace: a
        paced pair's next job stays in the queue for that pump, and the hub asks about it again at
        its slot (or when something happens to the IP; see :mod:`broker.parking`). At 64 addresses and
        300 ms, parked, a learnt pace on a 5 s fixed window learnt 0.865-0.912 of N·R against
        0.925-0.965, and a told pace under a penalty box met 13-23 boxes a run against 1-5 (see
        docs/networking/multi_ip.md)."""
        held = self._held_until(w, upstream, now)
        if held is not None:
            return Blocked(until=None if held == float("inf") else held, upstream_wide=False, pinned=w.ip)
        at = self._paced_until(w, upstream, now)
        if at is None:
            return w
        return Blocked(until=None if at == float("inf") else at, upstream_wide=False)

    def _worker_at(self, ip: str, workers: dict[str, WorkerInfo]) -> WorkerInfo | None:
        """The first of ``workers`` on ``ip``, in O(1) while the pool stands still.

        The index is rebuilt when its answer is no longer the worker ``workers`` holds under that
        id (gone, or superseded by a new process) or when the IP is not in it.
        """
        w = self._by_ip.get(ip)
        if w is not None and workers.get(w.worker_id) is w:
            return w
        index: dict[str, WorkerInfo] = {}
        for w in workers.values():
            index.setdefault(w.ip, w)
        self._by_ip = index
        return index.get(ip)

    def _pick_hashed(self, key: str, workers: dict[str, WorkerInfo], upstream: str, now: float) -> WorkerInfo | Blocked:
        """The first IP in ``key``'s ranking that may take the job now; a paced or cooling one is passed over."""
        by_ip = {w.ip: w for w in workers.values() if w.state == "ready"}
        earliest = float("inf")
        for ip in self._ranking(key, by_ip):
            at = self._ready_at(by_ip[ip], upstream, now)
            if at is None:
                return by_ip[ip]
            earliest = min(earliest, at)
        # Every IP was asked: no other job of this upstream can go either, until the earliest slot.
        return Blocked(until=None if earliest == float("inf") else earliest)

    def _ranking(self, key: str, by_ip: dict[str, WorkerInfo]) -> list[str]:
        members = frozenset(by_ip)
        if members != self._members:
            self._members = members
            self._rank_cache.clear()
        ranked = self._rank_cache.get(key)
        if ranked is None:
            ranked = self._rank_cache[key] = hrw_rank(key, members)
        return ranked

    def _pick_least_loaded(
        self, workers: dict[str, WorkerInfo], upstream: str, now: float, avoid: str | None
    ) -> WorkerInfo | Blocked:
        ws = list(workers.values())
        n = len(ws)
        if n == 0:
            return Blocked()
        self._turn = turn = (self._turn + 1) % n
        best: WorkerInfo | None = None
        best_load = 2.0
        fallback: WorkerInfo | None = None
        earliest = float("inf")
        found = 0
        for i in range(n):
            w = ws[(turn + i) % n]
            at = self._ready_at(w, upstream, now)
            if at is not None:
                if at < earliest:
                    earliest = at
                continue
            if w.ip == avoid:
                fallback = w
                continue
            load = len(w.inflight) / w.capacity
            if load < best_load:
                best, best_load = w, load
            found += 1
            if found >= SAMPLE:
                break
        chosen = best or fallback
        if chosen is not None:
            return chosen
        return Blocked(until=None if earliest == float("inf") else earliest)

    def on_dispatch(self, job: Job, worker: WorkerInfo, now: float) -> None:
        """A job left for ``worker``. Picked up to ``lead`` before its pair's slot, it is planned at the
        slot: its worker holds it until then (``job.hold``), and the pace counts the send there. On a
        pace of its own, the job also carries an interval (``job.gap``, see :meth:`_spacing`): its
        worker sends no two of the pair's jobs closer than that (but for its timers' jitter), however
        late it read them, so what queued while the OS held it up goes at that rate, not in a bunch.
        Under a learnt concurrency cap it carries the cap (``job.cap``): its worker sends it only while
        fewer of its requests to the upstream are out."""
        ip, upstream = worker.ip, job.upstream
        pacer = self.pacing.get(ip, upstream, now)
        lead = self._lead(pacer)
        if lead:  # a learnt pace is never led: its slot need not be read again
            at = self.pacing.next_at(ip, upstream, now)
            if at is not None and now < at and at - lead <= now:
                job.hold = at - now
                now = at
        if spacing := self._spacing(pacer):
            job.gap = 1.0 / spacing  # its worker sends no two of the pair's jobs closer
        if pacer.cap is not None:
            job.cap = pacer.cap  # its worker sends it only while fewer are out (it may carry more: Pacer.carried)
        self.pacing.dispatched(ip, upstream, now)

    @staticmethod
    def _spacing(pacer: Pacer) -> float:
        """The rate a pair's worker may send what queued in it at (0: as it comes): its told rate; or
        the fastest pace it proved, or the pace it tries, whichever is faster (a learnt pace keeps a
        margin below what it proved, so what queued catches up; a pace being tried is not held back).
        0 while nothing is known (no pace yet, or still measuring the limit), under a learnt
        concurrency cap (its freed slots may go at once) or a shared budget (its pace is every IP's)."""
        learner = pacer.learner
        if pacer.grouped or pacer.cap is not None:
            return 0.0
        if learner.told is not None:
            return learner.told
        if learner.phase != "hold" or not math.isfinite(learner.rate):
            return 0.0
        return max(learner.lo, learner.rate)

    def on_outcome(self, job: Job, worker: WorkerInfo, outcome: Outcome, now: float) -> None:
        ip, upstream = worker.ip, job.upstream
        decided = job.sent_at or None  # when it was dispatched; it left its worker ``hold`` later ...
        waited = outcome.waited if 0.0 < outcome.waited < math.inf else 0.0  # ... and a slot under its cap later
        sent_at = None if decided is None else min(now, decided + job.hold + waited)
        started = None
        limited = outcome.result == "rate_limited"
        # A 429 of a request already in flight (or held by its worker) when the last one came is the
        # same event: no news, no more cooling (unless it names a later time). A paced pair's first 429
        # adjusts the pace instead.
        # A 429 of one more in flight than the pair's cap, tried on purpose, says what the cap is: no
        # cooling (unless it says a spent budget comes back in seconds: a window's or a box's, no cap's).
        probe = limited and sent_at is not None and self.pacing.trying_cap(ip, upstream, sent_at, outcome.retry_after)
        if not probe and (
            not (limited and decided is not None and self.pacing.is_echo(ip, upstream, decided))
            or outcome.retry_after is not None
        ):
            started = self.cooldowns.record(
                ip,
                upstream,
                outcome.result,
                outcome.status,
                outcome.retry_after,
                now,
                job.sent_at,
                paced=limited and self.pacing.paced(ip, upstream),
            )
        cooled = started[1] if started is not None and started[0] == "rate_limited" else 0.0
        # On its worker's clock, when the request went and its answer came: a cap's slots are told from
        # these (hop and coordinator lag left out), never against this clock.
        went, took = outcome.sent, outcome.latency
        span = (went, went + took) if 0.0 < went < math.inf and 0.0 <= took < math.inf else None
        self.pacing.record(
            ip,
            upstream,
            outcome.result,
            now,
            sent_at,
            retry_after=outcome.retry_after,
            cooled=cooled,
            decided=decided,
            span=span,
        )
        if started is None:
            return
        reason, seconds = started
        if reason == "bind_error":
            log.warning("suspending %s: %s", ip, outcome.error, extra={"local_ip": ip, "upstream": upstream})
            for suspend in self.suspend_hooks:
                suspend(ip, outcome.error or "bind_error")
        for hook in self.cooldown_hooks:
            hook(ip, upstream, reason, seconds)

    def on_worker_up(self, worker: WorkerInfo, now: float) -> None:
        pass

    def on_worker_down(self, worker: WorkerInfo, now: float) -> None:
        self.pacing.lost(worker.ip, [job.upstream for job in worker.inflight.values()])

    def forget_ip(self, ip: str) -> None:
        """An IP left the pool for good: drop its cooldowns and pacing."""
        self.cooldowns.forget(ip)
        self.pacing.forget(ip)
