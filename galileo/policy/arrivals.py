"""Late arrivals at a told pace: the request a window after a late one waits for it.

A told rate R is paced at 98 % of it, evenly. That leaves a one-second window 20 ms of slack: a
request that reaches the upstream more than 20 ms late (a stall on its way: a process the host
descheduled, a busy event loop, ours or the upstream's, a queue in the network) is logged there
that late, and the request R sends after it falls within the same second of the upstream's log.
Under a sliding window that is a 429; under a penalty box it is the box, seconds of the budget.

The lateness shows in the answer: it comes back late by as much (a delay on the way back shows
too, and holds a send back for nothing). So an :class:`ArrivalGuard` reads each answer's latency
against the fast ones (the lowest tenth of the last 64: the send it holds may reach the upstream
as fast as they did, so that is what its lateness counts against; measured against the upper
quartile, a 16-address run at 50 ms still met the box, by 5 ms) and, when the request sent ``R``
sends before the next one (at ``s``) was answered ``d`` late, holds the next one until
``s + d + 1 s``: never within one second of where the late one was logged. That costs only the
lateness beyond the slack, once, and nothing while arrivals keep time.

Where the latency itself spreads (an upstream whose answers take 50 to 500 ms as it computes
them), most of the spread is not lateness at all: the guard may hold sends back for at most
``budget`` (0.8 %) of the time, reckoned over the last minute, so a told pace keeps 97 % of R
whatever the latencies do (a hold is cut short where it would pass that).

A learnt pace that has met a penalty box is guarded the same way, with the refused pace's
budget (see :mod:`galileo.policy.learning`): :meth:`ArrivalGuard.rerate` follows it as it moves.

Pure policy with an injected clock, as the rest of :mod:`galileo.policy`.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import deque

__all__ = ["ArrivalGuard"]

SAMPLES = 64  # answers the usual latency is the lowest tenth of ...
RECOMPUTE = 16  # ... recomputed after this many new ones (after each while there are fewer)
MIN_SAMPLES = 4  # no hold before this many answers: no usual latency to be late against
KEEP_SPANS = 4  # sends remembered (their times, and latencies once answered): this many windows' budgets ...
KEEP_MIN = 64  # ... and at least this many (an answer to an older send only adds to the latencies)
SPENT_MEMORY = 60.0  # seconds: the time held back is reckoned over about this long (exponential decay)
MARGIN = 0.005  # seconds added to each hold: the one-way delays' own jitter (a late request's, its successor's)


class ArrivalGuard:
    """Holds the send one window after a late-arriving request, for one told budget of ``rate``/s."""

    def __init__(self, rate: float, window: float = 1.0, budget: float = 0.008) -> None:
        self.window = window
        self.span = max(1, math.floor(rate * window + 1e-9))  # requests the budget allows per window
        self.budget = budget
        self.sends = 0  # requests sent, ever: the next one's place
        self._keep = max(KEEP_MIN, KEEP_SPANS * self.span)
        self._sent = array("d")  # send times of the last requests, oldest first ...
        self._took = array("d")  # ... their latencies (nan until answered) ...
        self._first = 0  # ... and the place of the first of them
        self._lat: deque[float] = deque(maxlen=SAMPLES)
        self._usual = math.nan
        self._fresh = 0
        self._spent = 0.0  # seconds held back, decayed over SPENT_MEMORY
        self._spent_at = 0.0
        self.held = 0.0  # seconds held back, ever

    def rerate(self, rate: float | None) -> None:
        """The budget is now ``rate``/s (a learnt one moved), or unknown (None: hold nothing). The
        send a window's budget after a late one is counted from here on."""
        self.span = 0 if rate is None else max(1, math.floor(rate * self.window + 1e-9))
        self._keep = max(self._keep, KEEP_SPANS * self.span)

    def hold(self, now: float, slot: float) -> float | None:
        """The time the next send may not go before, if the one a window's budget before it was
        late. ``slot``: when the pace alone lets it go; it is held past that by no more than what
        the budget has left."""
        i = self.sends - self.span - self._first
        if i < 0 or not self.span or len(self._lat) < MIN_SAMPLES:
            return None
        late = self._took[i] - self._usual  # nan (not answered yet) compares false
        if not late > 0:
            return None
        left = self.budget * SPENT_MEMORY - self._decayed(now)
        if left <= 0:
            return None
        return min(self._sent[i] + late + self.window + MARGIN, slot + left)

    def dispatched(self, now: float, slot: float) -> None:
        """A request went at ``now``; the pace alone would have let it go at ``slot``."""
        hold = self.hold(now, slot)
        if hold is not None and hold > slot and now <= hold + MARGIN:
            self._spend(now, hold - slot)  # the pace was ready; the guard held it back this long
        self._sent.append(now)
        self._took.append(math.nan)
        self.sends += 1
        if len(self._sent) > 2 * self._keep:
            del self._sent[: self._keep], self._took[: self._keep]
            self._first += self._keep

    def answered(self, now: float, sent_at: float) -> None:
        """An answer (a success or a refusal) to the request sent at ``sent_at``."""
        took = now - sent_at
        if took <= 0:
            return  # no send time known: no latency either
        self._lat.append(took)
        i = bisect.bisect_right(self._sent, sent_at) - 1
        if i >= 0 and self._sent[i] == sent_at and math.isnan(self._took[i]):
            self._took[i] = took  # (else sent before the sends kept, or not through the guard)
        self._fresh += 1
        if self._fresh >= RECOMPUTE or len(self._lat) < RECOMPUTE:
            self._fresh = 0
            ordered = sorted(self._lat)
            self._usual = ordered[len(ordered) // 10]

    def _spend(self, now: float, held: float) -> None:
        self._spent = self._decayed(now) + held
        self._spent_at = now
        self.held += held

    def _decayed(self, now: float) -> float:
        return self._spent * math.exp(-(now - self._spent_at) / SPENT_MEMORY) if self._spent else 0.0
