"""An in-memory :class:`galileo.client.FarmClient`, on the running loop's clock.

Each (IP, upstream) pair starts one job every ``1 / rate`` seconds (later jobs wait their
turn, as the farm's pacer makes them) and answers ``latency`` seconds after it starts. A job
runs on its ``require_ip`` / ``prefer_ip`` (unless that IP is cooling), else on the IP whose
pace frees soonest (as a hashed send spills), then the one with the fewest jobs.
``answer(spec, ip)`` gives the outcome's value (a Quote, a BundleAccepted ...), or a
``JobOutcome`` to return as it is. Run it under :func:`tests.virtualtime.run_virtual`
and an hour of traffic takes milliseconds.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import Counter
from collections.abc import Callable, Sequence

from broker.protocol import Event
from broker.results import ResultValue
from broker.types import JobOutcome, JobSpec
from galileo.client import EventHook, Lane

__all__ = ["FakeFarm"]

Answer = Callable[[JobSpec, str], ResultValue | JobOutcome | None]


class FakeFarm:
    def __init__(
        self,
        ips: Sequence[str],
        *,
        rate: float = math.inf,
        latency: float = 0.0,
        cap: int | None = None,
        answer: Answer | None = None,
    ) -> None:
        self.ips = list(ips)
        self.rate = rate
        self.latency = latency
        self.cap = cap
        self.answer = answer or (lambda spec, ip: None)
        self.cooling: set[str] = set()
        self.jobs: list[tuple[float, JobSpec, str]] = []  # (started, spec, ip)
        self.inflight: Counter[str] = Counter()  # ip -> jobs at the upstream now
        self.hooks: list[EventHook] = []
        self._next: dict[tuple[str, str], float] = {}
        self._ids = itertools.count(1)

    def eligible(self, upstream: str) -> list[Lane]:
        return [Lane(ip, upstream, self.rate, self.cap, self.latency) for ip in self.ips if ip not in self.cooling]

    def watch_events(self, hook: EventHook) -> None:
        self.hooks.append(hook)

    def emit(self, spec: JobSpec, ip: str, event: Event) -> None:
        for hook in self.hooks:
            hook(spec, ip, event)

    def submit(self, spec: JobSpec) -> asyncio.Future[JobOutcome]:
        return asyncio.ensure_future(self.run(spec))

    def _ip_for(self, spec: JobSpec) -> str:
        if spec.require_ip is not None:
            return spec.require_ip
        if spec.prefer_ip is not None and spec.prefer_ip in self.ips and spec.prefer_ip not in self.cooling:
            return spec.prefer_ip
        usable = [ip for ip in self.ips if ip not in self.cooling] or self.ips
        # The IP whose pace frees soonest (a hashed send spills there), then the least busy.
        return min(usable, key=lambda ip: (self._next.get((ip, spec.upstream), 0.0), self.inflight[ip]))

    async def run(self, spec: JobSpec) -> JobOutcome:
        loop = asyncio.get_running_loop()
        now = loop.time()
        ip = self._ip_for(spec)
        start = now
        if math.isfinite(self.rate):
            key = (ip, spec.upstream)
            start = max(now, self._next.get(key, now))
            self._next[key] = start + 1.0 / self.rate
            await asyncio.sleep(start - now)
        self.jobs.append((start, spec, ip))
        self.inflight[ip] += 1
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.inflight[ip] -= 1
        got = self.answer(spec, ip)
        if isinstance(got, JobOutcome):
            return got
        return JobOutcome(
            job_id=next(self._ids),
            result="ok",
            task=spec.task,
            upstream=spec.upstream,
            ip=ip,
            latency=self.latency,
            value=got,
        )
