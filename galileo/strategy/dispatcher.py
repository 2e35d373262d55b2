"""The batch dispatcher: as many batches at once as there are eligible IPs, no knobs.

An IP is eligible for a quote upstream when its worker is ready and the (IP, upstream) pair
is neither cooling down nor suspended. Each eligible IP runs one batch at a time (its buy leg,
then its sell leg); the next batch starts on it the moment it is free. With fewer IPs than
batches, batches queue; with more, the IPs take batches in round-robin order, so spare IPs
rotate. A failing batch ends alone; the others go on. Nothing sleeps for a tuned interval:
the only wait is for an IP to free up (or, when every IP is cooling, a short re-check).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from galileo.strategy.plan import QuoteBatchPlan

__all__ = ["BatchDispatcher", "PoolView"]

log = logging.getLogger("galileo.strategy")

RECHECK = 0.05  # seconds between looks at the pool while no IP is eligible


class PoolView(Protocol):
    def eligible_ips(self, upstream: str) -> list[str]:
        """IPs that may take a job of ``upstream`` now, in a stable order."""
        ...


class BatchDispatcher:
    """Feeds ``run_batch(plan, ip)`` from ``plans``, one batch per eligible IP at a time."""

    def __init__(
        self,
        pool: PoolView,
        upstream: str,
        plans: Iterator[QuoteBatchPlan],
        run_batch: Callable[[QuoteBatchPlan, str], Awaitable[None]],
    ) -> None:
        self.pool = pool
        self.upstream = upstream
        self.plans = plans
        self.run_batch = run_batch
        self.busy: dict[str, int] = {}  # ip -> batch id running there
        self.started = 0
        self.failed = 0
        self.assignments: list[tuple[int, str]] = []  # (batch id, ip), most recent last (bounded)
        self._cursor = 0
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._exhausted = False

    def _free_ips(self) -> list[str]:
        eligible = self.pool.eligible_ips(self.upstream)
        n = len(eligible)
        if n == 0:
            return []
        start = self._cursor % n
        ordered = eligible[start:] + eligible[:start]
        return [ip for ip in ordered if ip not in self.busy]

    def _start(self, plan: QuoteBatchPlan, ip: str, eligible_count: int) -> None:
        self.busy[ip] = plan.batch_id
        self.started += 1
        self.assignments.append((plan.batch_id, ip))
        if len(self.assignments) > 4096:
            del self.assignments[:2048]
        self._cursor = (self._cursor + 1) % max(1, eligible_count)
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
            self.busy.pop(ip, None)
            self._changed.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set (or the plans run out and every batch has finished)."""
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                free = self._free_ips()
                eligible_count = len(free) + len(self.busy)
                for ip in free:
                    plan = next(self.plans, None)
                    if plan is None:
                        self._exhausted = True
                        break
                    self._start(plan, ip, eligible_count)
                if self._exhausted and not self._tasks:
                    return
                self._changed.clear()
                waiter = asyncio.create_task(self._changed.wait())
                # A finishing batch wakes us at once; an IP whose cooldown ends is seen at the re-check.
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
