"""A worker's own count of its requests out to each upstream, and the queue of jobs a cap holds back.

An upstream with a concurrency cap frees a slot when an answer leaves it. The coordinator hears of
that answer a few milliseconds after this worker does (the result's trip, its loop, the next
dispatch's trip back), and at 50 ms a request those milliseconds are 8 % of what a cap of K
carries (K / latency). So a job of a capped pair (``Dispatch.cap``) may come to its worker before a
slot is free; the worker sends it the moment its own count of requests out to that upstream is
under the cap, and the coordinator lets a capped pair carry a little more than the cap, queued
here, not at the upstream.

Every request a worker sends to an upstream is counted, capped or not, from the send until its
answer is read (or the request fails); a job waiting here is not. Waiters go first come, first
served: a slot that comes back while jobs wait is handed to the first of them, still counted, so a
job that reaches the gate before the woken one runs (its hold just ended) cannot take it and send
the woken one to the back. A waiter stopped after it was handed a slot (its budget ran out, the
worker stops) hands it on. Memory: an entry per upstream with requests out or jobs waiting, no more
than the worker's jobs in flight.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Slots"]


class Slots:
    """Requests out per upstream, and the jobs waiting for one of them to come back."""

    def __init__(self) -> None:
        self.out: dict[str, int] = {}
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    async def take(self, upstream: str, cap: int) -> None:
        """Wait until fewer than ``cap`` requests to ``upstream`` are out (0 or less: no cap), or a
        slot is handed over, counting one more. Pair every return with :meth:`give_back`."""
        if not 0 < cap <= self.out.get(upstream, 0):
            self.out[upstream] = self.out.get(upstream, 0) + 1
            return
        handed = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(upstream, deque())
        queue.append(handed)
        try:
            await handed  # the slot comes counted: give_back left it so
        except BaseException:
            if handed.done() and not handed.cancelled():  # handed a slot, then stopped: on to the next
                self.give_back(upstream)
            elif handed in queue:  # stopped while it waited: it waits no more
                queue.remove(handed)
                if not queue and self._waiting.get(upstream) is queue:
                    del self._waiting[upstream]
            raise

    def give_back(self, upstream: str) -> None:
        """A request to ``upstream`` came back (or failed): its slot goes to the first waiter, still
        counted, or is free."""
        queue = self._waiting.get(upstream)
        while queue:
            handed = queue.popleft()
            if not handed.done():
                handed.set_result(None)
                if not queue:
                    del self._waiting[upstream]
                return
        if queue is not None:
            del self._waiting[upstream]
        n = self.out.get(upstream, 0) - 1
        if n > 0:
            self.out[upstream] = n
        else:
            self.out.pop(upstream, None)

    def waiting(self, upstream: str) -> int:
        """Jobs waiting for a slot of ``upstream``."""
        return len(self._waiting.get(upstream, ()))
