"""What the strategies and landing need of the farm, and of the metrics: two small typed seams.

A floor below strategy and landing (with :mod:`galileo.upstreams`): both talk to the farm
through :class:`FarmClient` and report through :class:`StrategyMetrics`, never through the
farm's hub or policy. The running :class:`~galileo.farm.coordinator.Farm` satisfies
``FarmClient`` and :class:`~galileo.metrics.FarmMetrics` satisfies ``StrategyMetrics``; tests
give in-memory ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from broker.protocol import Event
from broker.types import JobOutcome, JobSpec
from galileo.policy.allocator import Lane

__all__ = [
    "NULL_METRICS",
    "EventHook",
    "FarmClient",
    "Lane",
    "StrategyMetrics",
    "TitanConnectionState",
    "TitanReport",
    "TitanSource",
]

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


@dataclass(frozen=True, slots=True)
class TitanConnectionState:
    """One Titan connection as the metrics show it. ``token`` names the env var, never the token."""

    token: str
    ip: str | None
    open: bool
    streams: int
    limit: int  # streams the server lets it hold (GetInfo's concurrentStreams, or less when it said so)


@dataclass(frozen=True, slots=True)
class TitanReport:
    """Titan's connections and streams at one moment, and what was refused or lost since the start."""

    connections: tuple[TitanConnectionState, ...] = ()
    refusals: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (token, reason) -> count
    disconnects: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (token, reason) -> count
    quote_age: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (pair, size) -> seconds


TitanSource = Callable[[], TitanReport]
"""Read at scrape time (in the coordinator's loop): the Titan streams of one engine."""


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

    def titan_source(self, source: TitanSource) -> None:
        """Export what ``source`` reports (connections, streams, refusals, quote ages) at each scrape."""
        ...


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

    def titan_source(self, source: TitanSource) -> None:
        pass


NULL_METRICS: StrategyMetrics = _NullMetrics()
