"""The batch pipeline: per IP, as many batches in flight as Little's law says its budget needs.

A batch quotes its buy legs, then each buy's sell legs on the buy's IP: ``stages`` that run
one after the other, each holding jobs of some upstreams in flight. For each upstream ``u``
a batch sends ``demand[u]`` quotes. Per IP and upstream the farm reports a
:class:`~galileo.client.Lane`: pace ``R`` (requests/s), or a concurrency cap ``C`` while its
pacer is still ramping, and latency ``L`` (dispatch to answer).

* A batch takes ``T = sum over stages of the slowest L in the stage`` to quote.
* Spending the IP's pace on this batch's quotes starts ``R / demand[u]`` batches a second;
  by Little's law that keeps ``R x T / demand[u]`` batches in flight.
* Under a cap instead of a pace, the cap is spread over the batch's jobs: a batch holds
  ``demand[u] x L / T`` jobs of ``u`` in flight on average, so ``C x T / (demand[u] x L)``.
* The window is the smallest of these over the batch's upstreams (the one that binds),
  plus headroom (a quarter, and one batch) so that a pacing slot never finds the IP idle:
  jobs beyond the budget wait in the farm's queue for the IP's next slot, a few ms each.
  Under a cap the headroom is what lets the pacer see it is saturated and double the cap;
  it is withheld while the pair's answers take over twice their floor (the upstream queues:
  an upstream without a limit is not pushed until its latency explodes).

So throughput does not fall as latency grows: at 150 ms and 20 req/s per IP, a blind batch
(two quotes) takes 0.3 s and the IP keeps ~5 in flight instead of 1. The sell leg still runs
on its buy leg's IP (the engine prefers it; see :mod:`galileo.policy.allocator`).

The windows are read from the farm at most every ``RECHECK`` seconds; between looks a batch
that ends frees its slot at once. A failing batch ends alone; the others go on.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

from galileo.client import FarmClient, Lane
from galileo.strategy.plan import QuoteBatchPlan

__all__ = ["BatchPipeline", "BatchShape", "batch_window"]

log = logging.getLogger("galileo.strategy")

RECHECK = 0.05  # seconds between looks at the farm's lanes (cooldowns ending, paces learned)
HEADROOM = 0.25  # extra share of the window, so a pacing slot never finds the IP idle
SPARE = 1  # and one batch more: the gaps between a batch's stages, coordinator jitter
MAX_WINDOW = 64  # batches per IP, whatever an unlimited upstream would take


@dataclass(frozen=True, slots=True)
class BatchShape:
    """What one batch asks of the farm: quotes per upstream, and the upstreams of each stage in order."""

    demand: Mapping[str, int]
    stages: tuple[tuple[str, ...], ...]

    @property
    def primary(self) -> str:
        """The upstream whose eligible IPs take batches: the first stage's first HTTP upstream."""
        return next(u for stage in self.stages for u in stage)


def batch_window(shape: BatchShape, lanes: Mapping[str, Lane]) -> int:
    """Batches one IP should keep in flight, given its lanes (upstreams it is not eligible for are left out)."""
    stages = [[lanes[u].latency for u in stage if u in lanes] for stage in shape.stages]
    took = sum(max(stage, default=0.0) for stage in stages)
    raw = math.inf
    push = True
    for u, n in shape.demand.items():
        lane = lanes.get(u)
        if lane is None or n <= 0:
            continue
        if math.isfinite(lane.rate):
            raw = min(raw, lane.rate * took / n)
        if lane.cap is not None:
            share = n * lane.latency / took if took > 0 and lane.latency > 0 else n / len(shape.stages)
            if lane.cap / share < raw:
                raw, push = lane.cap / share, not lane.queueing
    if not math.isfinite(raw):
        return MAX_WINDOW
    if not push:
        return max(1, min(MAX_WINDOW, math.ceil(raw)))
    return max(1, min(MAX_WINDOW, math.ceil(raw * (1 + HEADROOM)) + SPARE))


class BatchPipeline:
    """Feeds ``run_batch(plan, ip)`` from ``plans``, each eligible IP up to its window at once."""

    def __init__(
        self,
        farm: FarmClient,
        shape: BatchShape,
        plans: Iterator[QuoteBatchPlan],
        run_batch: Callable[[QuoteBatchPlan, str], Awaitable[None]],
    ) -> None:
        self.farm = farm
        self.shape = shape
        self.plans = plans
        self.run_batch = run_batch
        self.running: dict[str, int] = {}  # ip -> batches in flight there
        self.windows: dict[str, int] = {}  # ip -> its window at the last look (eligible IPs only)
        self.started = 0
        self.failed = 0
        self.assignments: list[tuple[int, str]] = []  # (batch id, ip), most recent last (bounded)
        self._ips: list[str] = []
        self._cursor = 0
        self._looked = -math.inf
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._exhausted = False

    def look(self) -> None:
        """Read every lane of the batch's upstreams; the IPs eligible for the primary one take batches."""
        by_ip: dict[str, dict[str, Lane]] = {}
        for upstream in self.shape.demand:
            for lane in self.farm.eligible(upstream):
                by_ip.setdefault(lane.ip, {})[upstream] = lane
        primary = self.shape.primary
        self._ips = sorted(ip for ip, lanes in by_ip.items() if primary in lanes)
        self.windows = {ip: batch_window(self.shape, by_ip[ip]) for ip in self._ips}

    def _fill(self) -> None:
        """Start batches round robin over the IPs, one at a time, until each is at its window."""
        ips = self._ips
        while ips:
            first = self._cursor % len(ips)
            progressed = False
            for ip in ips[first:] + ips[:first]:
                if self.running.get(ip, 0) >= self.windows.get(ip, 0):
                    continue
                plan = next(self.plans, None)
                if plan is None:
                    self._exhausted = True
                    return
                self._start(plan, ip)
                progressed = True
            if not progressed:
                return

    def _start(self, plan: QuoteBatchPlan, ip: str) -> None:
        self.running[ip] = self.running.get(ip, 0) + 1
        self.started += 1
        self._cursor += 1
        self.assignments.append((plan.batch_id, ip))
        if len(self.assignments) > 4096:
            del self.assignments[:2048]
        task = asyncio.create_task(self._guarded(plan, ip), name=f"batch-{plan.batch_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, plan: QuoteBatchPlan, ip: str) -> None:
        try:
            await self.run_batch(plan, ip)
        except asyncio.CancelledError:
            raise
        except Exception:  # one batch's bug must not stop the others
            self.failed += 1
            log.exception("batch %d failed", plan.batch_id, extra={"local_ip": ip, "batch_id": plan.batch_id})
        finally:
            left = self.running.get(ip, 1) - 1
            if left:
                self.running[ip] = left
            else:
                self.running.pop(ip, None)
            self._changed.set()

    @property
    def in_flight(self) -> int:
        return sum(self.running.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set (or the plans run out and every batch has finished)."""
        loop = asyncio.get_running_loop()
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                now = loop.time()
                if now - self._looked >= RECHECK:
                    self._looked = now
                    self.look()
                self._fill()
                if self._exhausted and not self._tasks:
                    return
                self._changed.clear()
                waiter = asyncio.create_task(self._changed.wait())
                # A finishing batch wakes us at once; a cooldown ending or a pace learned is seen at the re-check.
                await asyncio.wait({waiter, stopper}, timeout=RECHECK, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        finally:
            stopper.cancel()

    async def drain(self, timeout: float) -> None:
        """Wait for running batches (up to ``timeout``), then cancel what is left."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
