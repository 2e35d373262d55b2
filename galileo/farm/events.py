"""The network event log: one structured line per job attempt, as the hub hears of it.

Every attempt is logged at DEBUG. A non-ok attempt is logged at INFO instead, so an operator
sees failures without debug logging; but a 429 storm must not flood the log, so INFO lines
for ``rate_limited`` are limited to one per (IP, upstream) per second, the line that gets
through saying how many were folded into it (``suppressed``), and the rest stay at DEBUG.

Fields: ``local_ip``, ``ip_task_kind`` (the job's task), ``upstream``, ``result``,
``status``, ``latency_ms``, ``error``, plus ``job_id`` and ``attempt``. Nothing secret is
logged: payloads and headers never are, and the formatter redacts registered secrets anyway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from broker.hub import Hub
from broker.protocol import Outcome
from broker.types import Job, WorkerInfo

__all__ = ["NetworkEventLog"]


class NetworkEventLog:
    """An attempt hook for :class:`~broker.hub.Hub`: ``NetworkEventLog().attach(farm.hub)``."""

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rate_limited_every: float = 1.0,
    ) -> None:
        self.log = logger or logging.getLogger("galileo.net")
        self.clock = clock
        self.rate_limited_every = rate_limited_every
        self._last_info: dict[tuple[str, str], float] = {}  # (ip, upstream) -> when a 429 was last at INFO
        self._folded: dict[tuple[str, str], int] = {}  # 429s kept at DEBUG since then

    def attach(self, hub: Hub) -> None:
        hub.attempt_hooks.append(self.on_attempt)

    def on_attempt(self, job: Job, worker: WorkerInfo, outcome: Outcome) -> None:
        result = outcome.result
        level = logging.DEBUG if result == "ok" else logging.INFO
        suppressed = 0
        if result == "rate_limited":
            key = (worker.ip, job.upstream)
            now = self.clock()
            if now - self._last_info.get(key, float("-inf")) >= self.rate_limited_every:
                self._last_info[key] = now
                suppressed = self._folded.pop(key, 0)
            else:
                self._folded[key] = self._folded.get(key, 0) + 1
                level = logging.DEBUG
        if not self.log.isEnabledFor(level):
            return
        fields: dict[str, object] = {
            "local_ip": worker.ip,
            "ip_task_kind": job.task,
            "upstream": job.upstream,
            "result": result,
            "status": outcome.status,
            "latency_ms": round(outcome.latency * 1000.0, 3),
            "error": outcome.error,
            "job_id": job.id,
            "attempt": job.attempt,
        }
        if suppressed:
            fields["suppressed"] = suppressed
        self.log.log(level, "attempt %s", result, extra=fields)
