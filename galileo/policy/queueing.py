"""Keeping a learnt concurrency cap from holding an upstream's queue full, for one (IP, upstream) pair.

Some limiters queue before they refuse: nginx's ``limit_req`` with a ``burst`` and no ``nodelay``
holds each request until its slot at the rate and refuses only those past the burst, and many
gateways and servers do the like. To the cap finder (:mod:`galileo.policy.concurrency`) such a
limiter is a concurrency cap, and rightly: what its refusals find held is the same every time,
the burst plus what the rate keeps in flight, and more in flight is refused. But a pair at that
cap keeps the queue full, and every answer waits out the whole burst. In virtual time, 4
addresses, a queue of 20 at 20/s: the cap found was 26 at 300 ms, and answers took 1.3 s instead of
0.3 s. The rate was all there; the quotes were a second old.

So, while a pair with a learnt cap is held by it, its answers are looked at in rounds of
:data:`ROUND` successes sent since the last change. The median latency of a round (the worker's
own: send to answer, no wait for a slot) against the pair's floor (what a request takes unloaded,
:attr:`galileo.policy.pacing.Pacer.floor`) says whether requests queue:

* over :data:`QUEUED` times the floor, the pair carries what Little's law says the rate needs:
  the cap times floor / latency, and one more (at least one fewer than before). That is a trial:
  the next round (of requests sent once what was in flight has been answered) keeps the trim if
  the successes came at least :data:`KEPT` as fast over it as over the last round (a queue: the
  same rate, with shorter waits; jobs sent on to the worker before the trim still go out at the
  old cap, and their answers count towards the rate, not the latency). Else the trim goes back,
  and that round's latency is the pair's floor from then on: the upstream is slower now, or slower
  under load, and more in flight was not waiting in a queue;
* under :data:`CLEAR` times the floor, a trimmed pair carries one more, up to the cap found:
  a floor read low, or a queue that has gone, does not hold the pair below its budget.

A cap that does not queue (a gateway counting requests in flight) answers at its floor and is
never trimmed. A latency spike now and then does not move a median.
"""

from __future__ import annotations

import math

__all__ = ["QueueTrim"]

ROUND = 32  # successes per look, all sent since the last change and while the cap held the pair
QUEUED = 2.0  # a median latency over this many times the floor: the upstream queues ...
CLEAR = 1.25  # ... under this, a trimmed pair may carry one more
KEPT = 0.95  # a trim is kept if its round's successes came this share as fast as the round's before


class QueueTrim:
    """How many of one pair's requests may be in flight below its learnt cap (None: the cap)."""

    def __init__(self) -> None:
        self.limit: int | None = None
        self.trims = 0  # trims tried, kept or not
        self._since = -math.inf  # successes sent before this are not counted (a change since)
        self._took: list[float] = []
        self._start = 0.0  # when the round's first success came
        self._others = 0  # successes answered in the round that were sent before the last change
        self._trial: float | None = None  # what the pair got before the trim on trial, requests/s ...
        self._before: int | None = None  # ... and its limit then

    def ok(self, now: float, sent_at: float, took: float, floor: float, cap: int) -> float | None:
        """A success sent at ``sent_at`` (our clock) that took ``took`` (its worker's clock) while
        the pair was held at its cap ``cap``. Returns a new floor for the pair when a trim found no
        queue (the latency is the upstream's own), else None."""
        if not math.isfinite(took) or took <= 0:
            return None
        if sent_at < self._since:
            # Sent before the change, it says nothing of its latency; but answered in a round, it came
            # at the rate the upstream serves the pair, and counts towards that.
            self._others += bool(self._took)
            return None
        if not self._took:
            self._start, self._others = now, 0
        self._took.append(took)
        if len(self._took) < ROUND:
            return None
        ranked = sorted(self._took)
        self._took.clear()
        median = ranked[len(ranked) // 2]
        limit = cap if self.limit is None else min(self.limit, cap)
        got = (ROUND + self._others - 1) / (now - self._start) if now > self._start else math.inf  # successes/s
        if self._trial is not None:
            before, self._trial = self._trial, None
            if got < KEPT * before:  # the rate fell with the trim: it was not waiting in a queue
                self.limit = self._before
                self._since = now
                return median
            return None
        if floor <= 0:
            return None
        if median > QUEUED * floor and limit > 1:
            self._trial, self._before = got, self.limit
            self.limit = max(1, min(limit - 1, math.ceil(limit * floor / median) + 1))
            self.trims += 1
            # The queue drains as the answers to what is in flight come back: what is sent meanwhile
            # still waits behind them, and would read as a trim that cost the rate.
            self._since = now + median
        elif self.limit is not None and median < CLEAR * floor:
            self.limit = self.limit + 1 if self.limit + 1 < cap else None
            self._since = now
        return None
