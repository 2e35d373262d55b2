"""Telling a concurrency cap from a rate limit, for one (IP, upstream) pair.

A concurrency cap of K refuses a request exactly when K of the caller's requests are being
served as it arrives; a rate limit refuses whatever is being served. What was being served
when a request arrived is known after the fact: the pair's successes sent before it and
answered after it (an answer leaves the upstream about ``NET`` before it reaches its worker). Both
times are the worker's own where it says them (``Outcome.sent`` and ``latency``): the coordinator's
would add the hop to the worker and back and its own lag, several milliseconds on a busy host,
against a cap's slot that frees every few (4 slots at 50 ms: one per 12 ms). So each
answer gets a *held* count (give or take one: an answer crossing the network as a request
arrives), and at a steady pace (within 5 %) the two kinds of limit look different: under a cap
a refusal finds more held than successes usually do; under a rate limit refusals and successes
find the same. Three of the last four refusals above the median success (of at least 6 at the
pace) make a cap: one more than that median on the coordinator's clock, and on the worker's the
fewest any of the three found (a success that counted an answer crossing the network as held pulls
the median down: at 50 ms, caps of 3 for a cap of 4). On the worker's clock the counts are exact enough
for a sharper test: under a cap every refusal finds more held than any success did (K against at
most K - 1), so two refusals running that each find more than every one of the last 16 or more
successes make a cap of what they found (the fewer): successes at a pace under the cap's rate may
never find K - 1 held, and one more than what they found would be a cap too low. A pace told at
98 % of what a cap carries meets a refusal only when latency jitter bunches its requests, about
once a minute at 300 ms. In virtual time (16 addresses, 3 seeds) three such refusals left 3 to 5
pairs of 16 without a cap after 150 s (0.966-0.967 of K / latency); with two running, 47 of 48
pairs found it (0.973-0.980). Over the rate zoo in virtual time (9 shapes, 50-300 ms, learned and
told, 4 and 16 addresses, 2016 pairs) this test found no cap. The only false one came from the
median rule, as before, under a bucket with a second of burst at 50 ms. Both rules count only
successes already answered. A refusal that comes back in under half the pair's floor latency was
refused at once, by a gateway in front of the upstream (an API gateway, a CDN, a proxy such as
Envoy's): the requests it found held are still being served, so it is judged later, when a success
sent after it is answered, and a cap found then makes the refusals the rate learner heard meanwhile
another limit's (:meth:`RateLearner.unbound`). Judged when it came back, such a refusal found
nothing held: in virtual time (4 addresses, a cap of 4, ``refuse=at_once``) no cap was found, and
a pace told K / latency at 50 ms reached 0.14 of it with 7 % 429s (each refusal cools a second);
judged late, every cap was found and it reached 0.96, as with refusals that take the latency. A
false one (a rate limit ρ at latency L keeps about ρ·L in
flight, so at a steady pace the two can look alike) costs little as long as the pace
stays smooth: while the cap holds the pair back, the pair does not count as saturated, so the
rate learner does not prove faster paces the cap alone made clean (:attr:`Pacer.at_cap`).

A refusal whose ``Retry-After`` is seconds long (2 s or more) is not put to it
(:meth:`Pacer.refused`): it says when a spent budget comes back (a window, a penalty box), where a
cap's slot frees as soon as an answer leaves. A box tripped by a bunch of sends finds more held
than the successes did, just as a cap's refusal does: without this, 7 of 64 pairs under a 5 s box
at 300 ms found caps that were not there.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["CapFinder"]

EVIDENCE = 3  # of the last LOOKED refusals this many above the median success
LOOKED = 4
OVER = 2  # ... or this many running above every success remembered
MIN_OVER = 16  # ... of at least this many
MIN_SUCCESSES = 6  # ... of which at least this many at the same pace
RECENT = 64  # successes whose held count is remembered
PACE_CHANGE = 0.05  # a pace this much away from theirs makes them stale
NET = 0.001  # seconds: about this long from an answer leaving the upstream to its worker reading it
ANSWERS = 512  # answered successes kept to count what was held
PENDING = 8  # refusals answered at once, waiting for what they found held to be answered ...
AT_ONCE = 0.5  # ... that is, in under this share of the pair's floor latency


class CapFinder:
    """Finds (and then holds) one pair's concurrency cap from its answers."""

    def __init__(self) -> None:
        self.cap: int | None = None
        self.votes: deque[int] = deque(maxlen=LOOKED)  # what refusals found held above the median success (0: not)
        self.over: deque[int] = deque(maxlen=OVER)  # what refusals found held above every success (0: not)
        self.pending: deque[float] = deque(maxlen=PENDING)  # send times of refusals not judged yet
        self._answers: deque[tuple[float, float]] = deque(maxlen=ANSWERS)  # (sent, answered) of successes
        self._held: deque[int] = deque(maxlen=RECENT)  # what each recent success found held
        self._pace = 0.0  # the pace those successes were sent at
        self._worker = False  # whether the times are the worker's (Outcome.sent) or the coordinator's

    def held(self, sent_at: float, floor: float) -> int:
        """Successes sent before ``sent_at`` and still being served when it arrived."""
        net = min(NET, floor / 4)
        n = 0
        for sent, answered in reversed(self._answers):
            if answered <= sent_at + net:
                break  # answered in order: every older one was too
            n += sent < sent_at
        return n

    def _clock(self, worker: bool) -> None:
        """Times on the worker's clock and the coordinator's are never compared: a change starts over."""
        if worker != self._worker:
            self._worker = worker
            self._answers.clear()
            self._held.clear()
            self.votes.clear()
            self.over.clear()
            self.pending.clear()

    def ok(self, span: tuple[float, float], pace: float, floor: float, worker: bool = False) -> bool:
        """A success sent and answered at ``span``: on its worker's clock (``worker``), or else on ours.
        True when a refusal judged late (:meth:`refused`) found the cap now."""
        self._clock(worker)
        if not math.isclose(pace, self._pace, rel_tol=PACE_CHANGE):
            self._held.clear()  # a new pace: what successes found before says nothing about it
            self._pace = pace
        self._held.append(self.held(span[0], floor))
        self._answers.append(span)
        found = False
        # Answered in order: a success sent after a refusal is answered once all sent before it were.
        while self.pending and self.pending[0] < span[0] and self.cap is None:
            found = self._judge(self.pending.popleft(), floor)
        if self.cap is not None:
            self.pending.clear()
        return found

    def refused(self, span: tuple[float, float], floor: float, paced: bool, worker: bool = False) -> bool:
        """A 429 that was news, sent and answered at ``span`` (on its worker's clock where ``worker``).
        True when it is the cap's doing (a cap found now counts).

        One answered in under half the pair's floor latency was refused at once (a gateway in front
        of the upstream says no before forwarding): what it found held is still being served, so it
        is judged later, when a success sent after it is answered (:meth:`ok`)."""
        if self.cap is not None or not paced:
            return False
        self._clock(worker)
        if span[1] - span[0] < AT_ONCE * floor:
            self.pending.append(span[0])
            return False
        return self._judge(span[0], floor)

    def _judge(self, sent_at: float, floor: float) -> bool:
        if len(self._held) < MIN_SUCCESSES:
            return False
        ranked = sorted(self._held)
        usual, top = ranked[len(ranked) // 2], ranked[-1]
        found = self.held(sent_at, floor)
        self.votes.append(found if found > usual else 0)
        # On the worker's clock a cap's refusal finds more held than any success did: twice running,
        # with enough successes to say so, that is a cap (a rate limit's refusals seldom do).
        self.over.append(found if self._worker and len(ranked) >= MIN_OVER and found > top else 0)
        if len(self.over) == self.over.maxlen and all(self.over):
            self.cap = min(self.over)  # what a cap's refusal finds held is the cap itself
            return True
        voted = [v for v in self.votes if v]
        if len(voted) >= EVIDENCE:
            # On the worker's clock what they found is the cap (a success that counted an answer
            # crossing the network can pull the median under K - 1); on ours it is blurred by the hop.
            self.cap = min(voted) if self._worker else usual + 1
            return True
        return False
