"""The original bot's allocator (Go0p/galileo ``src/network/allocator.rs``) as a farm policy.

It exists to be measured against: ``galileo bench ratelimit`` runs it beside :class:`FarmPolicy`.
What it does, as the Rust code does it:

* round robin from one global counter: each pick starts its scan at the next IP;
* an IP is skipped while it cools down, or while it holds ``inflight_limit`` jobs (the
  semaphore per IP: 1 by default, 2 in the shipped ``galileo.yaml``);
* a 429 cools the IP for a flat 500 ms; a timeout, a network error, a 408 or a 5xx for a flat
  250 ms; a new cooldown overwrites the old deadline; there is no escalation and no pacing;
* any other outcome, success included, clears the IP's cooldown (the Rust lease applies
  Success on drop), so a concurrent success on the same IP erases a fresh 429 cooldown;
* cooldowns are per IP, not per (IP, upstream).

When no IP can take a job, the Rust acquirer that asked either sleeps until the earliest
cooldown ends (if any IP is cooling), even if a permit frees up meanwhile, or spins with
``yield_now`` until one does. Here a queued job is that acquirer: it is held until the
cooldown it saw ends (``sleep_on_cooldown``), or retried as soon as any job finishes.
"""

from __future__ import annotations

from collections import Counter

from broker.protocol import Outcome
from broker.types import Blocked, Job, WorkerInfo
from galileo.policy.allocator import FarmPolicy

__all__ = ["OriginalBotPolicy"]

RATE_LIMITED_COOLDOWN = 0.5
TIMEOUT_COOLDOWN = 0.25


def cooldown_of(outcome: Outcome) -> tuple[str, float] | None:
    """(reason, seconds) of the cooldown the original starts for ``outcome``; None clears it."""
    result = outcome.result
    if result == "rate_limited":
        return ("rate_limited", RATE_LIMITED_COOLDOWN)
    if result in ("timeout", "network_error", "bind_error"):
        return (result, TIMEOUT_COOLDOWN)
    if result == "http_error" and (outcome.status == 408 or outcome.status >= 500):
        return ("server_error", TIMEOUT_COOLDOWN)
    return None


class OriginalBotPolicy(FarmPolicy):
    """Round robin, a per-IP in-flight limit, flat per-IP cooldowns cleared by any success.

    It subclasses :class:`FarmPolicy` only for the bookkeeping a :class:`~galileo.farm.Farm`
    touches (hooks, an empty cooldown book); every :class:`~broker.types.Policy` method is its own.
    """

    def __init__(
        self,
        inflight_limit: int = 1,
        rate_limited_cooldown: float = RATE_LIMITED_COOLDOWN,
        timeout_cooldown: float = TIMEOUT_COOLDOWN,
        sleep_on_cooldown: bool = True,
    ) -> None:
        super().__init__()
        self.inflight_limit = max(1, inflight_limit)  # the Rust code: unwrap_or(1).max(1)
        self.rate_limited_cooldown = rate_limited_cooldown
        self.timeout_cooldown = timeout_cooldown
        self.sleep_on_cooldown = sleep_on_cooldown
        self.asleep: dict[int, float] = {}  # job id -> when its acquirer wakes
        self.rotation = 0
        self.cooling_until: dict[str, float] = {}
        self.started: Counter[str] = Counter()  # cooldowns started, by reason
        self.cleared = 0  # cooldowns a success ended early

    def pick(self, job: Job, workers: dict[str, WorkerInfo], now: float) -> WorkerInfo | Blocked:
        wake = self.asleep.get(job.id)
        if wake is not None:
            if now < wake:
                return Blocked(until=wake, upstream_wide=False)
            del self.asleep[job.id]
        ws = [w for w in workers.values() if w.state == "ready"]
        n = len(ws)
        if n == 0:
            return Blocked()
        start = self.rotation
        self.rotation += 1
        earliest = float("inf")
        for i in range(n):
            w = ws[(start + i) % n]
            until = self.cooling_until.get(w.ip, 0.0)
            if until > now:
                earliest = min(earliest, until)
                continue
            if len(w.inflight) < min(self.inflight_limit, w.capacity):
                return w
        if earliest == float("inf"):
            return Blocked()  # every IP busy, none cooling: the Rust loop spins until a permit frees
        if self.sleep_on_cooldown:
            if len(self.asleep) > 50_000:  # jobs that expired asleep
                self.asleep = {k: v for k, v in self.asleep.items() if v > now}
            self.asleep[job.id] = earliest
            return Blocked(until=earliest, upstream_wide=False)
        return Blocked(until=earliest)

    def on_dispatch(self, job: Job, worker: WorkerInfo, now: float) -> None:
        self.asleep.pop(job.id, None)  # no pacing

    def on_outcome(self, job: Job, worker: WorkerInfo, outcome: Outcome, now: float) -> None:
        cooldown = cooldown_of(outcome)
        if cooldown is None:
            if self.cooling_until.pop(worker.ip, 0.0) > now:
                self.cleared += 1
            return
        reason, _ = cooldown
        seconds = self.rate_limited_cooldown if reason == "rate_limited" else self.timeout_cooldown
        self.cooling_until[worker.ip] = now + seconds  # overwrites: never max()ed with a running one
        self.started[reason] += 1
        for hook in self.cooldown_hooks:
            hook(worker.ip, job.upstream, reason, seconds)

    def on_worker_down(self, worker: WorkerInfo, now: float) -> None:
        self.cooling_until.pop(worker.ip, None)

    def forget_ip(self, ip: str) -> None:
        self.cooling_until.pop(ip, None)
