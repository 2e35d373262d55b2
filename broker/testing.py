"""A plain policy for tests of the wire and for tools that need no cooldowns.

The farm's real policy (cooldowns per IP and upstream, learned pacing, rendezvous hashing)
lives in ``galileo.policy``; this one only honours credit and affinity, so broker tests do
not depend on it.
"""

from __future__ import annotations

from broker.protocol import Outcome
from broker.types import Blocked, Job, WorkerInfo

__all__ = ["LeastLoadedPolicy"]


class LeastLoadedPolicy:
    """Most free credit wins, round robin on ties; ``prefer_ip`` waits for its IP while it lives."""

    def __init__(self) -> None:
        self._turn = 0

    def pick(self, job: Job, workers: dict[str, WorkerInfo], now: float) -> WorkerInfo | Blocked:
        spec = job.spec
        pinned = spec.require_ip or spec.prefer_ip
        if pinned is not None:
            mine = [w for w in workers.values() if w.ip == pinned]
            if mine:
                free = [w for w in mine if w.credit > 0]
                return free[0] if free else Blocked(upstream_wide=False)
            if spec.require_ip is not None:
                return Blocked(upstream_wide=False)
        candidates = [w for w in workers.values() if w.credit > 0]
        if spec.avoid_ip is not None and any(w.ip != spec.avoid_ip for w in candidates):
            candidates = [w for w in candidates if w.ip != spec.avoid_ip]
        if not candidates:
            return Blocked()
        self._turn += 1
        n = len(candidates)
        best = max(range(n), key=lambda i: (candidates[i].credit, -((i - self._turn) % n)))
        return candidates[best]

    def on_dispatch(self, job: Job, worker: WorkerInfo, now: float) -> None:
        pass

    def on_outcome(self, job: Job, worker: WorkerInfo, outcome: Outcome, now: float) -> None:
        pass

    def on_worker_up(self, worker: WorkerInfo, now: float) -> None:
        pass

    def on_worker_down(self, worker: WorkerInfo, now: float) -> None:
        pass
