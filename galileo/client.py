"""What the strategies and landing need of the farm, and of the metrics: two small typed seams.

A floor below strategy and landing (with :mod:`galileo.upstreams`): both talk to the farm
through :class:`FarmClient` and report through :class:`StrategyMetrics`, never through the
farm's hub or policy. The running :class:`~galileo.farm.coordinator.Farm` satisfies
``FarmClient`` and :class:`~galileo.metrics.FarmMetrics` satisfies ``StrategyMetrics``; tests
give in-memory ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from broker.protocol import Event
from broker.types import JobOutcome, JobSpec
from galileo.policy.allocator import Lane

__all__ = ["NULL_METRICS", "EventHook", "FarmClient", "Lane", "StrategyMetrics"]

EventHook = Callable[[JobSpec, str, Event], None]
"""Called with the job's spec, the IP serving it and the event (a Titan stream update)."""


class FarmClient(Protocol):
    """The farm as its callers see it: run jobs, ask which IPs can carry an upstream, hear events."""

    def submit(self, spec: JobSpec) -> asyncio.Future[JobOutcome]:
        """Queue a job; the future resolves exactly once, with its terminal outcome."""
        ...

    async def run(self, spec: JobSpec) -> JobOutcome:
        """``await submit(spec)``."""
        ...

    def eligible(self, upstream: str) -> list[Lane]:
        """The IPs eligible for ``upstream`` now (ready, not cooling, not suspended), by IP, with their budgets."""
        ...

    def watch_events(self, hook: EventHook) -> None:
        """Call ``hook`` for every event a running job reports (stream updates)."""
        ...


class StrategyMetrics(Protocol):
    """The series strategies and landers move (see :class:`galileo.metrics.FarmMetrics`)."""

    def quote(self, strategy: str, mint: str, result: str) -> None: ...

    def opportunity(self, strategy: str, mint: str, *, profit_lamports: int) -> None: ...

    def lander_endpoint(self, lander: str, endpoint: str) -> None: ...

    def lander_would_send(self, lander: str, endpoint: str) -> None: ...

    def lander_attempt(self, lander: str, endpoint: str) -> None: ...

    def lander_success(self, lander: str, endpoint: str) -> None: ...

    def lander_landed(self, lander: str, endpoint: str) -> None: ...

    def opportunity_skipped(self, strategy: str, reason: str) -> None: ...

    def round_trip(self, strategy: str, mint: str, *, expected_lamports: int, realised_lamports: int) -> None: ...


class _NullMetrics:
    """Metrics that go nowhere: for benchmarks and tests that read the strategy's own stats."""

    def quote(self, strategy: str, mint: str, result: str) -> None:
        pass

    def opportunity(self, strategy: str, mint: str, *, profit_lamports: int) -> None:
        pass

    def lander_endpoint(self, lander: str, endpoint: str) -> None:
        pass

    def lander_would_send(self, lander: str, endpoint: str) -> None:
        pass

    def lander_attempt(self, lander: str, endpoint: str) -> None:
        pass

    def lander_success(self, lander: str, endpoint: str) -> None:
        pass

    def lander_landed(self, lander: str, endpoint: str) -> None:
        pass

    def opportunity_skipped(self, strategy: str, reason: str) -> None:
        pass

    def round_trip(self, strategy: str, mint: str, *, expected_lamports: int, realised_lamports: int) -> None:
        pass


NULL_METRICS: StrategyMetrics = _NullMetrics()
