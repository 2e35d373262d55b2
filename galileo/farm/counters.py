"""Cumulative per-IP counts of every attempt, by upstream and result, kept by the coordinator.

Workers report rolling 60 s views for latency; these counts are the farm's own ledger, the one
``galileo farm stats`` prints and tests compare with what the simulator saw.
"""

from __future__ import annotations

from collections import Counter

from broker.protocol import Outcome
from broker.types import Job, WorkerInfo

__all__ = ["IpCounters"]


class IpCounters:
    """``counts[ip][(upstream, result)]``, fed by the hub's attempt hook."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[tuple[str, str]]] = {}

    def on_attempt(self, job: Job, worker: WorkerInfo, outcome: Outcome) -> None:
        self.counts.setdefault(worker.ip, Counter())[(job.upstream, outcome.result)] += 1

    def by_result(self, ip: str) -> Counter[str]:
        out: Counter[str] = Counter()
        for (_, result), n in self.counts.get(ip, Counter()).items():
            out[result] += n
        return out

    def by_upstream(self, ip: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (upstream, result), n in self.counts.get(ip, Counter()).items():
            out.setdefault(upstream, {})[result] = n
        return out
