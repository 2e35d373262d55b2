"""Telling a concurrency cap from a rate limit, for one (IP, upstream) pair.

A concurrency cap of K refuses a request exactly when K of the caller's requests are being
served as it arrives; a rate limit refuses whatever is being served. What was being served
when a request arrived is known after the fact: the pair's successes sent before it and
answered after it (an answer leaves the upstream about ``NET`` before it reaches its worker). Both
times are the worker's own where it says them (``Outcome.sent`` and ``latency``): the coordinator's
would add the hop to the worker and back and its own lag, several milliseconds on a busy host,
against a cap's slot that frees every few (4 slots at 50 ms: one per 12 ms). So each request, a
success or a refusal, gets a *held* count (give or take one: an answer crossing the network as a
request arrives).

**When it is counted.** A request is counted once every request sent before it has most likely
been answered: when an answer comes in more than the longest latency of the last 64 successes
after it was sent (:meth:`CapFinder._settle`). Counted when it came back, it would miss what was
still out: a refusal a gateway in front of the upstream answers at once (an API gateway, a CDN, a
proxy: ``refuse=at_once`` in the simulator) found nothing held, and under a latency with a long
tail a slow request sent before it was often still out. In virtual time, 4 addresses: under a cap
of 4 refusing at once no cap was found, and a pace told K / latency at 50 ms read 0.14 of it with
7 % 429s (each refusal cools a second); with 50 ms of lognormal jitter on 50 ms the cap was read
as 3 on half the pairs (0.86). A cap found by a refusal counted late turns the refusals the rate
learner heard meanwhile into another limit's (:meth:`RateLearner.unbound`, which also gives a told
pace back the share they trimmed).

**What makes a cap.** At a steady pace (within 5 %) the two kinds of limit look different: under
a cap a refusal finds K held and no success more than K - 1 (but for crossings); under a rate
limit refusals find what successes find, a little more after a bunch of sends. Three of the last
four refusals that each found more than 90 % of the recent successes did (of at least 6 at the
pace) make a cap: on the worker's clock the fewest any of them found, and only if no more than 5 %
of the successes found as many; on the coordinator's clock, where counts are blurred, one more than
the median success. With a latency that varies a rate limit's refusals found more than the median
often enough: votes over the median made caps of 7-9 under a bucket of 20/s at 300 ms plus 150 ms of
jitter (0.74 of its rate; now none, 0.99). On the worker's clock two refusals running that each
found more held than all but one of the last 16 or more successes (one crossing) make a cap of
what they found (the fewer), on the same 5 % condition: a pace told at 98 % of what a cap carries
meets a refusal only when jitter bunches its requests, about once a minute at 300 ms, and three
left pairs without a cap for minutes. In virtual time: told at 16 addresses and 300 ms, 48 of 48
caps by 150 s (0.980); over the rate zoo (9 shapes, 50-300 ms, learned and told, 4 addresses,
refusals delayed and at once, 864 pairs) no cap. A false one (a rate limit ρ at latency L keeps
about ρ·L in flight, so at a steady pace the two can look alike) costs little as long as the pace
stays smooth: while the cap holds the pair back, the pair does not count as saturated, so the
rate learner does not prove faster paces the cap alone made clean (:attr:`Pacer.at_cap`).

**A cap found is tried again.** A cap found from a rate limit's refusals would hold the pair at
that rate for good: held by its cap, the pair is not saturated, and its rate learner never proves
a faster pace. In virtual time a bucket of 20/s halved for a minute at 300 ms left every pair with
a cap of 3 (what 10/s keeps in flight there) and at half its budget after the limit came back. So a
cap that has held its pair back for :data:`PROBE_EVERY` seconds is tried with one more in flight
(:meth:`CapFinder.probe`). Kept once that many were out at once (on the worker's clock) with no
refusal for :data:`PROBE_CLEAN` seconds, and the next one tried as soon as it holds the pair back
again; a real cap refuses it at once (that refusal, and any of a request sent while it was tried,
is the cap's: it neither cools the pair nor teaches its pace), and the next try waits twice as long,
up to :data:`PROBE_MAX`. Tried while a faster pace is tried too, a refusal gives no verdict.

A refusal whose ``Retry-After`` is seconds long (2 s or more) is not put to it
(:meth:`Pacer.refused`): it says when a spent budget comes back (a window, a penalty box), where a
cap's slot frees as soon as an answer leaves. A box tripped by a bunch of sends finds more held
than the successes did, just as a cap's refusal does: without this, 7 of 64 pairs under a 5 s box
at 300 ms found caps that were not there.

Nor is a refusal while the rate learner measures (:class:`galileo.policy.learning.RateLearner`, phase
``learn``): it paces 1.5 times what succeeds to keep the budget spent on purpose, so its refusals
are the pace's own. Under a one-token bucket whose interval is shorter than the latency that pace
looks like a cap: every other request is refused, each refusal finds the success before it still
out, and the successes, thinned, find none. In virtual time (4 and 16 addresses, no ``Retry-After``)
every pair under 5/s at 300 ms and 10/s at 150 ms found a cap of one (10/s at 300 ms and 20/s, two),
and was held to what it carries for good (0.58-0.71 of the rate): held by the cap, the learner never
finished measuring, and the cap's try (after 300 s) sent its one more at once, closer to the last
request than the token's interval, and was refused. Now 0.84-0.95. A real cap without
``Retry-After`` is no longer found while measuring: paced as the rate it allows, it reads
0.966-0.986 of K / latency at 150 and 300 ms (0.987-0.993 before).
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["CapFinder"]

EVIDENCE = 3  # of the last LOOKED refusals this many above nearly every success (TOP)
LOOKED = 4
OVER = 2  # ... or this many running above every success remembered but CROSSINGS
MIN_OVER = 16  # ... of at least this many
MIN_SUCCESSES = 6  # ... of which at least this many at the same pace
RECENT = 64  # successes whose held count is remembered
PACE_CHANGE = 0.05  # a pace this much away from theirs makes them stale
NET = 0.001  # seconds: about this long from an answer leaving the upstream to its worker reading it
ANSWERS = 512  # answered successes kept to count what was held
QUEUED = 1024  # answers and refusals waiting for their counts to settle ...
SETTLE = 1.0  # ... for this many times the longest recent latency after they were sent
TOP = 0.9  # a refusal votes for a cap when it found more held than this share of recent successes ...
CROSSED = 0.05  # ... and on the worker's clock no more than this share found as many (answers crossing)
CROSSINGS = 1  # two refusals running above all successes but this many make a cap (on the worker's clock)
PROBE_EVERY = 300.0  # seconds held at a cap before one more in flight is tried ...
PROBE_MAX = 2400.0  # ... doubling after each refusal of it, up to this ...
PROBE_CLEAN = 5.0  # ... and kept once that many were out at once and it ran this long without one ...
PROBE_GIVE_UP = 60.0  # ... or given up (the cap as it was) if that many were never out in this long
PROBE_SPANS = 256  # successes sent while trying, kept to tell how many were out at once


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most of these (sent, answered) spans that were out at one moment at the upstream: an answer
    leaves it about :data:`NET` before its worker reads it, so one sent that close to it crossed it."""
    edges = sorted([(sent, 1) for sent, _ in spans] + [(answered - NET, -1) for _, answered in spans])
    most = out = 0
    for _, step in edges:
        out += step
        most = max(most, out)
    return most


class CapFinder:
    """Finds (and then holds) one pair's concurrency cap from its answers."""

    def __init__(self) -> None:
        self.cap: int | None = None
        self.votes: deque[int] = deque(maxlen=LOOKED)  # what refusals found held above TOP of successes (0: not)
        self.over: deque[int] = deque(maxlen=OVER)  # what refusals found held above all successes but
        # CROSSINGS (0: not)
        self._queue: deque[tuple[float, float | None]] = deque(maxlen=QUEUED)  # (sent, its pace; None:
        # a refusal) not counted yet
        self._took: deque[float] = deque(maxlen=RECENT)  # latencies of recent successes
        self._horizon = 0.0  # ... the longest of them
        self._answers: deque[tuple[float, float]] = deque(maxlen=ANSWERS)  # (sent, answered) of successes
        self._held: deque[int] = deque(maxlen=RECENT)  # what each recent success found held
        self._pace = 0.0  # the pace those successes were sent at
        self._worker = False  # whether the times are the worker's (Outcome.sent) or the coordinator's
        self.probing: tuple[int, float] | None = None  # (the cap before, since when) while one more is tried
        self.probe_every = PROBE_EVERY
        self._wait = PROBE_EVERY  # ... and after a refused one (a kept one is followed at once: it may be low by more)
        self._spans: list[tuple[float, float]] = []  # (sent, answered) of successes sent while trying
        self._refused_try = (math.inf, math.inf)  # (from, to): sends of the last try a refusal ended

    # --- a cap found is tried again ------------------------------------------------------

    def probe(self, now: float, held_since: float) -> None:
        """The cap has held the pair back since ``held_since``: after :attr:`probe_every`, one more in
        flight is tried. A cap found from a rate limit's refusals (a limit that fell and came back, a
        bunch of sends) would otherwise hold the pair at its rate for good: a pair held by its cap is
        not saturated, so its rate learner never proves a faster pace. A real cap refuses the one more
        at once, and is tried again less often."""
        if self.cap is not None and self.probing is None and now - held_since >= self.probe_every:
            self.probing = (self.cap, now)
            self.cap += 1
            self._spans.clear()

    def probed(self, now: float, sent_at: float, span: tuple[float, float] | None) -> bool:
        """A success sent at ``sent_at`` (our clock), sent and answered at ``span`` on its worker's
        clock. True when the one more tried is kept: as many as it allows were out at once (on the
        worker's clock: the coordinator's count holds jobs waiting at the worker) and it ran
        :data:`PROBE_CLEAN` without a refusal. Never out (a pace held them back), it is given up after
        :data:`PROBE_GIVE_UP`, the cap as it was (and tried again as often)."""
        if self.probing is None:
            return False
        before, since = self.probing
        if span is not None and sent_at >= since and len(self._spans) < PROBE_SPANS:
            self._spans.append(span)
        if now - since < PROBE_CLEAN:
            return False
        if _most_at_once(self._spans) > before:
            self.probing, self.probe_every = None, PROBE_CLEAN
            return True
        if now - since >= PROBE_GIVE_UP or len(self._spans) >= PROBE_SPANS:
            self.cap, self.probing, self.probe_every = before, None, self._wait
        return False

    def probe_refused(self, sent_at: float, now: float) -> bool:
        """A 429 that was news, of a request sent at ``sent_at``: True when it refused the one more tried
        (the cap is back as it was, and tried again half as often), or was sent while it was tried (the
        same: more than one went before the first refusal came back)."""
        if self._in_refused_try(sent_at):
            return True
        if self.probing is None or sent_at < self.probing[1]:
            return False
        self.cap = self.probing[0]
        self._refused_try = (self.probing[1], now)
        self.probing = None
        self._wait = self.probe_every = min(PROBE_MAX, 2 * self._wait)
        return True

    def abandon(self) -> None:
        """A refusal while one more was tried that the pace more likely earned (a faster pace was being
        tried too): no verdict; the cap as it was, tried again as soon as it holds the pair back."""
        if self.probing is not None:
            self.cap, self.probing, self.probe_every = self.probing[0], None, PROBE_CLEAN

    def _in_refused_try(self, sent_at: float) -> bool:
        start, end = self._refused_try
        return start <= sent_at <= end

    def trying(self, sent_at: float) -> bool:
        """Whether a request sent at ``sent_at`` went while one more than the cap was tried."""
        return (self.probing is not None and sent_at >= self.probing[1]) or self._in_refused_try(sent_at)

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
            self._queue.clear()
            self._took.clear()
            self._horizon = 0.0

    def ok(self, span: tuple[float, float], pace: float, floor: float, worker: bool = False) -> bool:
        """A success sent and answered at ``span``: on its worker's clock (``worker``), or else on ours.
        True when a refusal counted now (see :meth:`_settle`) found the cap."""
        if self.cap is not None:
            return False  # found: nothing more to count
        self._clock(worker)
        self._took.append(span[1] - span[0])
        self._horizon = max(self._took)
        self._answers.append(span)
        self._queue.append((span[0], pace))
        return self._settle(span[1], floor)

    def refused(self, span: tuple[float, float], floor: float, paced: bool, worker: bool = False) -> bool:
        """A 429 that was news, sent and answered at ``span`` (on its worker's clock where ``worker``).
        True when it is the cap's doing (a cap found now counts); it may be counted only later.
        ``paced``: the pair's rate learner holds a pace (neither opening nor measuring, whose refusals
        are the pace's own); only then does a refusal say anything of a cap."""
        if self.cap is not None or not paced:
            return False
        self._clock(worker)
        self._queue.append((span[0], None))
        return self._settle(span[1], floor)

    def _settle(self, now: float, floor: float) -> bool:
        """Count the requests whose count has settled: one sent at ``s`` once ``now`` (the latest
        answer) is past ``s`` and the longest latency of the recent successes, when every request
        sent before it was most likely answered. Counted when it came back instead, a refusal a
        gateway answered at once found nothing held, and under a latency with a long tail a request
        found too few (a slow one sent before it still out): caps one low, or none."""
        found, queue, wait = False, self._queue, SETTLE * self._horizon
        while queue and queue[0][0] + wait <= now + 1e-9 and self.cap is None:
            sent, pace = queue.popleft()
            if pace is None:  # a refusal
                found = self._judge(sent, floor)
                continue
            if not math.isclose(pace, self._pace, rel_tol=PACE_CHANGE):
                # A new pace: what successes found before says nothing about it (a refusal counted
                # before it, sent at the old pace, was judged on them).
                self._held.clear()
                self._pace = pace
            self._held.append(self.held(sent, floor))
        if self.cap is not None:
            queue.clear()
        return found

    @staticmethod
    def _possible(cap: int, ranked: list[int]) -> bool:
        """Under a cap no success finds as many held, but for an answer crossing the network."""
        return sum(h >= cap for h in ranked) <= CROSSED * len(ranked)

    def _judge(self, sent_at: float, floor: float) -> bool:
        if len(self._held) < MIN_SUCCESSES:
            return False
        ranked = sorted(self._held)
        usual, most = ranked[len(ranked) // 2], ranked[int(TOP * (len(ranked) - 1))]
        found = self.held(sent_at, floor)
        self.votes.append(found if found > most else 0)
        # On the worker's clock a cap's refusal finds more held than any success did (but for
        # CROSSINGS): twice running, with enough successes to say so, that is a cap (a rate limit's
        # refusals seldom do).
        reached = sum(h >= found for h in ranked)  # successes that found as many (under a cap: crossings)
        self.over.append(found if self._worker and len(ranked) >= MIN_OVER and reached <= CROSSINGS else 0)
        if len(self.over) == self.over.maxlen and all(self.over) and self._possible(min(self.over), ranked):
            self.cap = min(self.over)  # what a cap's refusal finds held is the cap itself
            return True
        voted = [v for v in self.votes if v]
        if len(voted) >= EVIDENCE:
            # On the worker's clock what they found is the cap (a success that counted an answer
            # crossing the network can pull the median under K - 1); on ours it is blurred by the hop.
            cap = min(voted) if self._worker else usual + 1
            if self._worker and not self._possible(cap, ranked):
                return False  # successes found as many held: a rate limit's refusals after a bunch
            self.cap = cap
            return True
        return False
