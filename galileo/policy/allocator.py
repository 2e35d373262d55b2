"""The farm's policy: which worker takes a job, and what each outcome teaches.

For a job of upstream U, an IP is *eligible now* when its worker is ready with credit, the
(IP, U) pair is not cooling, the IP is not suspended, and the pair's pacer allows a send.

* ``require_ip``: that IP when eligible, else wait (the job expires if it never is).
* ``prefer_ip``: that IP if eligible; if it is cooling, suspended or gone, any other; if it is
  merely busy or paced, the job waits for it (a sell leg stays on its buy leg's IP).
* ``hash_key``: the IPs ranked by rendezvous hash for the key; the first that is not cooling
  owns the job (waiting for it while it is busy), so an endpoint stays on its IP and moves
  to the next-ranked one only while its own cools down.
* otherwise: the least loaded of the first few eligible IPs in round-robin order (in-flight /
  capacity; ties go to the rotation), so spare IPs rotate and a pick stays O(1) however many
  IPs there are; ``avoid_ip`` is honoured when another IP is eligible.

When nothing is eligible the policy says until when (the earliest cooldown or pacing slot).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from broker.protocol import Outcome
from broker.types import Blocked, Job, WorkerInfo
from galileo.policy.cooldown import CooldownBook
from galileo.policy.hashing import hrw_rank
from galileo.policy.pacing import PaceBook

__all__ = ["FarmPolicy"]

log = logging.getLogger("galileo.policy")

SAMPLE = 4  # eligible IPs compared per pick: least loaded among them, O(1) per job

CooldownHook = Callable[[str, str, str, float], None]  # ip, upstream, reason, seconds
SuspendHook = Callable[[str, str], None]  # ip, why


class FarmPolicy:
    """Implements :class:`broker.types.Policy` with cooldowns, pacing and rendezvous hashing."""

    def __init__(
        self,
        *,
        known_rates: dict[str, float] | None = None,
        cooldowns: CooldownBook | None = None,
        pacing: PaceBook | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.cooldowns = cooldowns or CooldownBook(rng=rng)
        self.pacing = pacing or PaceBook(known_rates)
        self._turn = 0
        self._rank_cache: dict[str, list[str]] = {}
        self._members: frozenset[str] = frozenset()
        self.cooldown_hooks: list[CooldownHook] = []
        self.suspend_hooks: list[SuspendHook] = []

    # --- eligibility ------------------------------------------------------------------

    def cooling(self, ip: str, upstream: str, now: float) -> float | None:
        return self.cooldowns.cooling_until(ip, upstream, now)

    def _ready_at(self, w: WorkerInfo, upstream: str, now: float) -> float | None:
        """None when ``w`` can take a ``upstream`` job now; else when it might (inf: unknown)."""
        if len(w.inflight) >= w.capacity:
            return float("inf")
        cool = self.cooldowns.cooling_until(w.ip, upstream, now)
        if cool is not None:
            return cool
        pacer = self.pacing.get(w.ip, upstream, now)
        if pacer.phase == "open" and pacer.inflight < pacer.open_cap:
            return None
        at = pacer.next_at(now)
        if at is not None:
            pacer.blocked(now)
        return at  # inf: at its concurrency cap, a returning job frees a slot

    # --- Policy ---------------------------------------------------------------------

    def pick(self, job: Job, workers: dict[str, WorkerInfo], now: float) -> WorkerInfo | Blocked:
        spec = job.spec
        upstream = job.upstream
        if spec.require_ip is not None:
            mine = next((w for w in workers.values() if w.ip == spec.require_ip and w.state == "ready"), None)
            if mine is None:
                return Blocked(upstream_wide=False)
            at = self._ready_at(mine, upstream, now)
            if at is None:
                return mine
            return Blocked(until=None if at == float("inf") else at, upstream_wide=False)
        if spec.prefer_ip is not None:
            mine = next((w for w in workers.values() if w.ip == spec.prefer_ip and w.state == "ready"), None)
            if mine is not None and self.cooling(mine.ip, upstream, now) is None:
                at = self._ready_at(mine, upstream, now)
                if at is None:
                    return mine
                return Blocked(until=None if at == float("inf") else at, upstream_wide=False)
        if spec.hash_key is not None:
            return self._pick_hashed(spec.hash_key, workers, upstream, now)
        return self._pick_least_loaded(workers, upstream, now, spec.avoid_ip)

    def _pick_hashed(self, key: str, workers: dict[str, WorkerInfo], upstream: str, now: float) -> WorkerInfo | Blocked:
        by_ip = {w.ip: w for w in workers.values() if w.state == "ready"}
        earliest = float("inf")
        for ip in self._ranking(key, by_ip):
            cool = self.cooling(ip, upstream, now)
            if cool is not None:
                earliest = min(earliest, cool)
                continue
            at = self._ready_at(by_ip[ip], upstream, now)
            if at is None:
                return by_ip[ip]
            return Blocked(until=None if at == float("inf") else at, upstream_wide=False)
        return Blocked(until=None if earliest == float("inf") else earliest, upstream_wide=False)

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
            if w.state != "ready":
                continue
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
        self.pacing.get(worker.ip, job.upstream, now).dispatched(now)

    def on_outcome(self, job: Job, worker: WorkerInfo, outcome: Outcome, now: float) -> None:
        ip, upstream = worker.ip, job.upstream
        self.pacing.record(ip, upstream, outcome.result, now, job.sent_at)
        started = self.cooldowns.record(
            ip, upstream, outcome.result, outcome.status, outcome.retry_after, now, job.sent_at
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
        self.pacing.lost(worker.ip)

    def forget_ip(self, ip: str) -> None:
        """An IP left the pool for good: drop its cooldowns and pacing."""
        self.cooldowns.forget(ip)
        self.pacing.forget(ip)
