"""Pacing per (IP, upstream), and per upstream when one budget is shared by every IP.

Each (IP, upstream) pair is a :class:`Pacer`: a :class:`~galileo.policy.learning.RateLearner`
for its rate (told, or learnt from 429s whatever the limiter's shape), plus two limits on
requests in flight (and a third, one at a time, while its learner probes a budget held spent:
:attr:`~galileo.policy.learning.RateLearner.probing`):

* **the opening ramp**: before any limit is met, at most 8 in flight, doubled every 0.5 s the
  pair is saturated while its answers are not queueing (slower than twice what they take
  unloaded: sent with fewer than 2 in flight), and halved when they take four times that, so a
  new farm does not greet an upstream with 256 requests per IP, an upstream that never says
  429 is at full concurrency within seconds, and one that queues instead of refusing (a leaky
  bucket that delays, a server that slows under load) is not pushed into ever longer waits;
* **a concurrency cap**, when the refusals say the limit is on requests being served, not on
  their rate (:mod:`galileo.policy.concurrency`); the rate learner then starts over under it.
  A cap frees its slots as answers come, in bunches: a send it held past the pace's slot keeps
  one interval of the schedule (the next may go at once), so the pace does not hold back the
  slot the cap frees next as well (told R = K / latency at 16 addresses and 150 ms: 0.866 of it
  in round 20's bench, 0.934 in round 21's; learned 0.891 and 0.932). The worker hears an answer
  milliseconds before the coordinator does, so a capped pair carries a quarter of its cap more
  (at least one: :func:`ahead`), each such job marked with the cap (``Dispatch.cap``): it waits at
  its worker and goes the moment the worker's own count of requests out is under the cap
  (:mod:`workers.slots`). Waiting for the coordinator to see the slot free cost a cap of 4 at 50 ms
  8 % of K / latency (0.917 of it at 4 addresses, against 0.96 on a pace of K / latency).
  Where the upstream queues at the cap (a limiter that holds requests in line before it refuses:
  what its refusals find held is its burst plus what its rate keeps in flight), the pair carries
  only what the rate needs (:mod:`galileo.policy.queueing`), so its answers do not wait out the burst.

A **shared budget** (an API key's, or a global one) is paced by one learner for the upstream
(the :class:`PaceBook`'s group), fed by every IP's refusals: more IPs must not be used to
exceed a limit that is per account. It is assumed where the operator configured an API key
for the upstream (``keyed``), and detected where it was not: refusals at a proven pace (a
*surprise*: nothing this pair did changed) on several IPs within a short time (3, or
half of the IPs, within 60 s or two limiter time scales) mean someone else spends this
pair's budget. The group then starts from what the pairs were pacing in all, and the pairs
stop pacing themselves (cooldowns stay per pair). Windows are not told apart this way: per-IP
windows aligned to the clock all fill at the same moment too, so a shared window is assumed only
where an API key says so, and a pair whose limiter said it remembers seconds (a ``Retry-After`` of
2 s or more, or a first refusal run of 5 s without one: ``RateLearner.own_window``) is left out. A
pair refused for seconds *while paced*, each ``Retry-After`` short, is not: the other IPs spending
its budget do that (16 IPs on one global bucket at 0 ms: 10 pairs were left out for it, the budget
was never found, and the farm got 0.42 of it with 5 % 429s). Nor is a surprise after 20 s converged
and clean, or 20 s after the last one taken for the jitter's tail (``RateLearner.tail``): arrival
jitter's tail refuses each IP's converged pace alone, once in 17 to 470 s, and at 4 IPs three such
within a minute took per-IP buckets for one budget (3 of 16 seeds, two of them at 0.84 and 0.85 of
N·R). A surprise sooner after the last is counted, though the margin takes it as the tail's too: a
shared budget refuses an IP again and again. A budget the IPs share refuses them while they still
climb: 24 virtual-time runs of a global bucket found it as before (round 47: one at 4 IPs 10 s
later). What the IPs got together when it is found is the shared pace's floor.

A shared budget the operator **told** (``rate_limit_per_key``: ``known_shared``) is paced by a
told learner from the first request: 98 % of it, trimmed by refusals to no less than 96.5 %,
never learnt. Its pairs are grouped from the start; a pair with a told rate of its own as well
keeps pacing at it, and the group paces them all together: both limits hold. Its 429s go to the
limit that binds: its own where its told pace times the IPs is under the budget's, else the budget's
(which would otherwise hold back every IP for one IP's refusal).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from collections.abc import Iterable

from galileo.policy.concurrency import CapFinder
from galileo.policy.learning import PACE, Heard, PaceRules, RateLearner
from galileo.policy.queueing import QueueTrim

__all__ = ["PaceBook", "Pacer", "ahead"]

log = logging.getLogger("galileo.policy")

LATENCY_WEIGHT = 0.2  # EWMA weight of the newest answer: ~5 answers of memory, a latency shift shows in ~1 s
LIGHT = 2  # a request sent with fewer of the pair's in flight measures the upstream unloaded (its floor)
LIGHT_KEPT = 256  # such send times kept until their success comes ...
LIGHT_MEMORY = 120.0  # ... and a full set forgets those older than this (no answer takes that long)
KEYED_IPS = 3  # surprises on this many IPs (or half of them: arrival jitter surprises IPs one at a time too) ...
KEYED_WINDOW = 60.0  # ... within this many seconds (or two limiter time scales): a shared budget
KEYED_SETTLED = 5.0  # a surprise counts only on a pair whose pace held this long (and 2 trust periods):
KEYED_TRUSTS = 2.0  # the overshoot of its own last step up would have shown by then
KEYED_SPREAD = 20.0  # ... and those IPs' surprises spread over this many seconds: one at a time, as a
# shared budget refuses whoever sends next, not all at once, as when every IP's limit moves together
DISSOLVE = 0.75  # a detected shared budget refused below this share of what every IP got when it was found ...
RECHECK_SHARED = 300.0  # ... was per-IP limits after all: the IPs pace themselves again, and for this many
# seconds their surprises are not taken for a shared budget
OK_SECONDS = 10  # successes per upstream are counted over this many whole seconds
AHEAD_SHARE = 0.25  # a capped pair carries this share of its cap more (at least one), waiting at its worker


def ahead(cap: int) -> int:
    """Jobs a pair with a learnt cap of ``cap`` may have waiting at its worker for a slot: enough that
    a slot the worker frees is taken at once, while the next job is on its way from the coordinator."""
    return max(1, math.ceil(cap * AHEAD_SHARE))


class Pacer:
    """One (IP, upstream) pair: its rate learner, in-flight limits and latency."""

    def __init__(self, rules: PaceRules, now: float, told: float | None = None) -> None:
        self.rules = rules
        self.learner = RateLearner(rules, now, told)
        self.inflight = 0  # jobs of this pair dispatched and not yet answered
        self.open_cap = rules.open_inflight
        self.ramped_at = now
        self.caps = CapFinder()
        self.queue = QueueTrim()  # in flight below the cap, where the upstream queues at it
        self._held_at = -math.inf  # when the cap last held a request back ...
        self._capped_since = -math.inf  # ... and since when it has, with no pause (or probe) since
        self.group: RateLearner | None = None  # the upstream's shared budget, which paces it instead
        self.latency = 0.0  # EWMA of dispatch -> answer, s (0 before the first answer)
        self.floor = 0.0  # EWMA of the same for requests sent while little was in flight: unloaded, jitter and all
        self._light: set[float] = set()  # send times of requests sent so

    @property
    def cap(self) -> int | None:
        """A learnt concurrency cap, if the refusals said there is one: what they found, or less
        where the upstream queues at it (:mod:`galileo.policy.queueing`)."""
        cap, limit = self.caps.cap, self.queue.limit
        return cap if cap is None or limit is None else min(cap, limit)

    @property
    def carried(self) -> int | None:
        """At most this many of the pair's jobs in flight under its learnt cap: the cap, and
        :func:`ahead` more sent on to wait at the worker for a slot (``Dispatch.cap``)."""
        cap = self.cap
        return None if cap is None else cap + ahead(cap)

    @property
    def at_cap(self) -> bool:
        """A learnt concurrency cap holds the pair back now, not its pace (nor the opening ramp)."""
        carried = self.carried
        return carried is not None and self.inflight >= carried and not self.ramping

    @property
    def phase(self) -> str:
        return self.learner.phase

    @property
    def rate(self) -> float:
        return self.learner.rate

    @property
    def grouped(self) -> bool:
        return self.group is not None

    @property
    def ramping(self) -> bool:
        """No limit met yet (by the pair, or by its shared budget): the opening ramp holds."""
        learner = self.group if self.group is not None else self.learner
        return learner.phase == "open"

    @property
    def queueing(self) -> bool:
        """Answers take over twice what they take unloaded: more in flight would only wait longer."""
        return self.floor > 0 and self.latency > self.rules.queueing * self.floor

    def allowance(self) -> tuple[float, int | None]:
        """What the pair may carry now: (requests/s, at most this many in flight); inf / None: no limit.

        The seam between pacing and the round-trip engine, which keeps rate x latency in flight.
        """
        if self.ramping:
            return math.inf, self.open_cap if self.cap is None else min(self.cap, self.open_cap)
        if self.grouped:
            return math.inf, self.carried
        if self.learner.probing:
            return self.learner.rate, 1  # held spent: one probe at a time
        return self.learner.rate, self.carried

    def next_at(self, now: float) -> float | None:
        """When the pair may send again (inf: when a job returns), or None if it may now."""
        cap = self.allowance()[1]
        if cap is not None and self.inflight >= cap:
            return math.inf
        return None if self.grouped else self.learner.next_at(now)

    def dispatched(self, now: float) -> None:
        if self.inflight < LIGHT:
            if len(self._light) >= LIGHT_KEPT:  # full of requests never answered ok (refused, failed, lost)
                self._light = {t for t in self._light if t > now - LIGHT_MEMORY}
            if len(self._light) < LIGHT_KEPT:
                self._light.add(now)
        self.inflight += 1
        if not self.grouped:
            self.learner.dispatched(now, capped=self.cap is not None)

    def blocked(self, now: float) -> None:
        """A request waited for this pair. Held by a learnt cap, not the pace, it says nothing of the
        rate: the pair is not saturated, so no faster pace is proven on the cap's word."""
        if self.at_cap:
            if now - self._held_at >= self.rules.saturation:
                self._capped_since = now  # held again after a pause
            self._held_at = now
            if self.queue.limit is None:  # (a trimmed cap holds the pair below it on purpose)
                self.caps.probe(now, self._capped_since)
        else:
            self.learner.blocked(now)

    def saturated(self, now: float) -> bool:
        return self.learner.saturated(now)

    def answered(self) -> None:
        self.inflight = max(0, self.inflight - 1)

    def ok(self, now: float, sent_at: float, span: tuple[float, float] | None = None) -> None:
        took = now - sent_at
        self.latency = took if self.latency == 0 else self.latency + LATENCY_WEIGHT * (took - self.latency)
        if sent_at in self._light:
            self._light.discard(sent_at)
            self.floor = took if self.floor == 0 else self.floor + LATENCY_WEIGHT * (took - self.floor)
        learner = self.learner
        if self.caps.ok(span or (sent_at, now), learner.rate, self.floor, worker=span is not None):
            learner.unbound(now)  # a refusal counted only now was the cap's (see CapFinder._settle)
        held = now - self._held_at < self.rules.saturation
        if self.caps.probed(now, sent_at, span):
            self._capped_since = now  # one more in flight ran clean: the cap found was low
        found = self.caps.cap
        if found is not None and held:
            worker = span[1] - span[0] if span is not None else took  # no wait at its worker for a slot
            floor = self.queue.ok(now, sent_at, worker, self.floor, found)
            if floor is not None:
                self.floor = floor  # a trim found no queue: this is what the upstream takes now
        if self.ramping and now - self.ramped_at >= self.rules.open_step:
            if self.floor and self.latency > 2 * self.rules.queueing * self.floor:
                self.open_cap = max(LIGHT, self.open_cap // 2)  # it queues instead of refusing: back off
                self.ramped_at = now
            elif learner.saturated(now):
                if not self.queueing and self.inflight >= self.open_cap // 2:
                    self.open_cap *= 2
                self.ramped_at = now
        if not self.grouped:
            learner.ok(now, sent_at)

    def timed(self, retry_after: float | None) -> bool:
        """A ``Retry-After`` of seconds (``long_wait`` or more): a spent budget (a window, a box) comes
        back then. No cap's refusal says so: a slot frees as soon as an answer leaves."""
        return retry_after is not None and retry_after >= self.rules.long_wait

    def trying_cap(self, sent_at: float, retry_after: float | None) -> bool:
        """Whether a 429 of a request sent at ``sent_at`` may be the refusal of the one more in flight
        than its cap the pair tried (:meth:`CapFinder.probe`): sent during a try, and not naming seconds."""
        return not self.timed(retry_after) and self.caps.trying(sent_at)

    def refused(
        self,
        now: float,
        sent_at: float,
        retry_after: float | None,
        cooled: float,
        decided: float | None = None,
        span: tuple[float, float] | None = None,
    ) -> Heard:
        """A 429 on the pair (not grouped): the concurrency cap's, or news for its rate learner."""
        learner = self.learner
        echo = learner.is_echo(sent_at if decided is None else decided)
        # A Retry-After of seconds says when a spent budget comes back (a window, a box): a slot frees
        # when an answer leaves, so such a refusal is no cap's, though a box tripped by a bunch of
        # sends finds more in flight than usual, as a cap's refusal does.
        timed = self.timed(retry_after)
        if not echo and self.trying_cap(sent_at, retry_after):
            if learner.phase == "hold" and learner.rate > learner.lo * (1 + 1e-9):
                self.caps.abandon()  # a faster pace was being tried as well: most likely its refusal
            elif self.caps.probe_refused(sent_at, now):
                self._capped_since = now
                return "refusal"  # one more in flight than the cap, refused: the cap's, nothing for the pace
        judged = span or (sent_at, now)
        # Only a held pace's refusals are put to the cap finder: none is set while the ramp opens, and
        # measuring paces 1.5x what succeeds to keep the budget spent on purpose, so its refusals are
        # the pace's own (under a one-token bucket slower than the latency they look like a cap's).
        held = learner.phase == "hold"
        if not echo and not timed and self.caps.refused(judged, self.floor, held, span is not None):
            learner.unbound(now)  # the refusals it learnt from were the cap's: search on, under the cap
            return "refusal"
        return learner.refused(now, sent_at, retry_after, cooled, decided)


class _Group:
    """One budget shared by every IP of an upstream: learnt, or ``told`` (requests/s)."""

    def __init__(self, rules: PaceRules, now: float, told: float | None = None) -> None:
        self.learner = RateLearner(rules, now, told)
        self.got: float | None = None  # detected (not keyed nor told): the successes/s every IP had together then


class PaceBook:
    """Every pair's pacer, and each shared budget's. ``known``: told rates per IP by upstream (or
    family); ``keyed``: upstreams (or families) with an API key, whose budget is assumed shared;
    ``known_shared``: told budgets shared by every IP (an API key's), by upstream (or family)."""

    def __init__(
        self,
        known: dict[str, float] | None = None,
        rules: PaceRules = PACE,
        keyed: Iterable[str] = (),
        known_shared: dict[str, float] | None = None,
    ) -> None:
        self.known = dict(known or {})
        self.rules = rules
        self.keyed = set(keyed)
        self.known_shared = dict(known_shared or {})
        self._pacers: dict[tuple[str, str], Pacer] = {}
        self._groups: dict[str, _Group] = {}
        self._surprises: dict[str, deque[tuple[float, str]]] = {}
        self._oks: dict[str, deque[list[int]]] = {}  # upstream -> [second, successes] for the last OK_SECONDS
        self._unshared_until: dict[str, float] = {}  # upstream -> no shared budget detected before this

    def _lookup(self, table: dict[str, float] | set[str], upstream: str) -> bool | float | None:
        if upstream in table:
            return table[upstream] if isinstance(table, dict) else True
        family = upstream.split(":", 1)[0]
        if family in table:
            return table[family] if isinstance(table, dict) else True
        return None

    def known_rate(self, upstream: str) -> float | None:
        """A configured limit for ``jito:frankfurt`` falls back to one for ``jito``."""
        rate = self._lookup(self.known, upstream)
        return None if rate is None or isinstance(rate, bool) else float(rate)

    def known_shared_rate(self, upstream: str) -> float | None:
        """The told budget every IP shares for ``upstream`` (or its family), if any."""
        rate = self._lookup(self.known_shared, upstream)
        return None if rate is None or isinstance(rate, bool) else float(rate)

    def get(self, ip: str, upstream: str, now: float = 0.0) -> Pacer:
        key = (ip, upstream)
        p = self._pacers.get(key)
        if p is None:
            told = self.known_rate(upstream)
            p = self._pacers[key] = Pacer(self.rules, now, told)
            p.learner.defer_noise = True  # (see _found_noise)
            shared = self.known_shared_rate(upstream) is not None
            if shared or (told is None and (upstream in self._groups or self._lookup(self.keyed, upstream))):
                group = self._group(upstream, now).learner
                if told is None:
                    p.group = group  # else the pair keeps its told pace, and the group paces them all together
        return p

    def group(self, upstream: str) -> RateLearner | None:
        """The learner of ``upstream``'s shared budget, if it has one."""
        g = self._groups.get(upstream)
        return g.learner if g is not None else None

    def _group(self, upstream: str, now: float) -> _Group:
        g = self._groups.get(upstream)
        if g is None:
            g = self._groups[upstream] = _Group(self.rules, now, self.known_shared_rate(upstream))
        return g

    def next_at(self, ip: str, upstream: str, now: float) -> float | None:
        """When (ip, upstream) may send: its own limits and its upstream's shared pace; None: now."""
        p = self.get(ip, upstream, now)
        at = p.next_at(now)
        g = self._groups.get(upstream)
        if g is not None and at != math.inf and (shared := g.learner.next_at(now)) is not None:
            if at is None:
                g.learner.blocked(now)
            at = shared if at is None else max(at, shared)  # both paces hold
        return at

    def dispatched(self, ip: str, upstream: str, now: float) -> None:
        """A job left on (ip, upstream)."""
        g = self._groups.get(upstream)
        if g is not None:
            g.learner.dispatched(now)
        self.get(ip, upstream, now).dispatched(now)

    def trying_cap(self, ip: str, upstream: str, sent_at: float, retry_after: float | None) -> bool:
        """Whether a 429 of a request sent at ``sent_at`` refused the one more in flight than its cap
        the pair tried (:meth:`CapFinder.probe`): it says what the cap is, not to back off. Not one
        whose ``Retry-After`` names seconds (:meth:`Pacer.timed`)."""
        p = self._pacers.get((ip, upstream))
        return p is not None and p.trying_cap(sent_at, retry_after)

    def is_echo(self, ip: str, upstream: str, sent_at: float) -> bool:
        """A 429 that only repeats the last one: it teaches nothing and cools nothing more."""
        g = self._groups.get(upstream)
        learner = g.learner if g is not None else self.get(ip, upstream).learner
        return learner.is_echo(sent_at)

    def paced(self, ip: str, upstream: str) -> bool:
        """Whether the pair (or its shared budget) has met a limit and is paced: a 429 adjusts the pace."""
        g = self._groups.get(upstream)
        learner = g.learner if g is not None else self.get(ip, upstream).learner
        return learner.phase != "open"

    def record(
        self,
        ip: str,
        upstream: str,
        result: str,
        now: float,
        sent_at: float | None = None,
        *,
        retry_after: float | None = None,
        cooled: float = 0.0,
        decided: float | None = None,
        span: tuple[float, float] | None = None,
    ) -> None:
        """Learn from one answer. ``cooled``: seconds the pair now cools for it (0: none). ``decided``:
        when the request was dispatched, if its worker held it until ``sent_at`` (a 429 is news only
        if the farm committed the request after the last one came). ``span``: when its worker sent it
        and heard the answer, on that worker's clock (:class:`CapFinder` counts the slots held from
        these where it has them)."""
        p = self.get(ip, upstream, now)
        p.answered()
        sent = now if sent_at is None else sent_at
        g = self._groups.get(upstream)
        if result == "ok":
            p.ok(now, sent, span)
            self._count_ok(upstream, now)
            if g is not None:
                g.learner.ok(now, sent)
        elif result == "rate_limited":
            if g is not None and not self._own_limit(p, g.learner, upstream):
                heard = g.learner.refused(now, sent, retry_after, cooled, decided)
                if g.got is not None and heard == "noise":
                    # The surprises on many IPs that made it one budget were the upstream's noise (refusals
                    # whatever the pace, see RateLearner._noisy): each IP paces itself again, knowing it.
                    log.info(
                        "pacing: %s refuses %.1f %% of requests whatever the pace (it sheds load): not one shared "
                        "budget after all, each IP paces itself again",
                        upstream,
                        100 * g.learner.noise,
                    )
                    self._dissolve(upstream, now, g.learner.noise)
                elif g.got is not None and g.learner.rate < DISSOLVE * g.got:
                    log.info(
                        "pacing: %s was not one shared budget (refused down to %.1f/s, under %.0f %% of the %.1f/s "
                        "the IPs got): each IP paces itself again",
                        upstream,
                        g.learner.rate,
                        100 * DISSOLVE,
                        g.got,
                    )
                    self._dissolve(upstream, now)
            else:
                self._heard(ip, upstream, p.refused(now, sent, retry_after, cooled, decided, span), now)
                if p.learner.noise_found:
                    self._found_noise(ip, upstream, p, now)

    def _own_limit(self, p: Pacer, shared: RateLearner, upstream: str) -> bool:
        """A pair told a rate of its own, in a told shared budget, whose own pace binds before its share
        of the budget does: its 429s are its own limit's. Fed to the budget, they would trim it and
        hold back every IP for this one's cooldown."""
        if p.grouped or p.learner.told is None:
            return False
        return p.learner.rate * len(self._pairs(upstream)) < shared.rate

    def _pairs(self, upstream: str) -> list[Pacer]:
        """The pacers of every IP's pair with ``upstream``."""
        return [p for (_, u), p in self._pacers.items() if u == upstream]

    def _count_ok(self, upstream: str, now: float) -> None:
        second = int(now)
        counts = self._oks.setdefault(upstream, deque(maxlen=OK_SECONDS + 1))
        if counts and counts[-1][0] == second:
            counts[-1][1] += 1
        else:
            counts.append([second, 1])

    def _ok_rate(self, upstream: str, now: float) -> float:
        """Successes/s of ``upstream`` on every IP over the last whole seconds (up to OK_SECONDS)."""
        counts = self._oks.get(upstream, ())
        whole = [n for sec, n in counts if int(now) - OK_SECONDS <= sec < int(now)]
        return sum(whole) / len(whole) if whole else 0.0

    def _found_noise(self, ip: str, upstream: str, p: Pacer, now: float) -> None:
        """A pair's held paces are refused whatever the pace (see ``RateLearner._noisy``): the upstream sheds
        load, or the other IPs spend a budget this one shares. Where a shared budget could be, it is tried
        first: paced as one, a shared budget's refusals stop, noise's do not (and its learner finds it, which
        dissolves it again). Else the pair takes it for noise."""
        found, p.learner.noise_found = p.learner.noise_found, 0.0
        shared = len(self._pairs(upstream)) >= KEYED_IPS and not p.learner.own_window
        if shared and now >= self._unshared_until.get(upstream, -math.inf):
            g = self.share(upstream, now)
            log.info(
                "pacing: %s refuses %s whatever its pace (%.1f %% of requests): one budget every IP shares, or "
                "an upstream shedding load; paced as one from %.1f/s to tell",
                upstream,
                ip,
                100 * found,
                g.learner.rate,
            )
            return
        p.learner.sheds(now, found)

    def _dissolve(self, upstream: str, now: float, noise: float = 0.0) -> None:
        """A detected shared budget was per-IP limits after all (refused far below what the IPs had been
        getting, or refused whatever its pace: ``noise``, the share so refused): each pair paces itself again,
        from what it had proven, with that noise known."""
        del self._groups[upstream]
        for p in self._pairs(upstream):
            p.group = None
            if noise:
                p.learner.sheds(now, noise)
        self._unshared_until[upstream] = now + RECHECK_SHARED
        self._surprises.pop(upstream, None)

    def _heard(self, ip: str, upstream: str, heard: Heard, now: float) -> None:
        """Surprises on many IPs at once: their budget is shared. Pace it as one."""
        learner = self.get(ip, upstream).learner
        if heard != "surprise" or learner.settled < max(KEYED_SETTLED, KEYED_TRUSTS * learner.trust(doubted=False)):
            return
        if learner.tail:
            return  # one IP's jitter: each IP's comes alone, and 3 of 4 IPs within a minute read as shared
        if learner.own_window:
            return  # windows per IP all fill at once too: only the API key tells a shared one apart
        if now < self._unshared_until.get(upstream, -math.inf):
            return  # just found not to be shared
        seen = self._surprises.setdefault(upstream, deque())
        pacers = self._pairs(upstream)
        window = max(KEYED_WINDOW, 2 * max(p.learner.scale for p in pacers))
        seen.append((now, ip))
        while seen and seen[0][0] < now - window:
            seen.popleft()
        first: dict[str, float] = {}
        for t, i in seen:
            first.setdefault(i, t)
        if len(pacers) < 2 or len(first) < max(KEYED_IPS, math.ceil(len(pacers) / 2)):
            return
        if max(first.values()) - min(first.values()) < KEYED_SPREAD:
            return  # all at once: every IP's own limit moved (or filled) together, not a shared one
        g = self.share(upstream, now)
        log.info(
            "pacing: %s looks like one budget every IP shares (surprises on %d IPs within %.0f s): paced as one "
            "from %.1f/s; the IPs got %.1f/s together",
            upstream,
            len(first),
            window,
            g.learner.rate,
            g.got or 0.0,
        )
        seen.clear()

    def share(self, upstream: str, now: float) -> _Group:
        """From now on pace ``upstream``'s IPs as one budget (detected: the surprises said so), starting
        at what their paces add up to; dissolved again if it is refused far below what they got. Returns
        that budget."""
        pacers = self._pairs(upstream)
        g = self._group(upstream, now)
        g.got = self._ok_rate(upstream, now)
        total = sum(p.learner.rate for p in pacers if math.isfinite(p.learner.rate))
        g.learner.phase = "hold"
        g.learner.rate = max(self.rules.min_rate, total)
        g.learner.estimate = total
        # What the IPs got together is what the budget admitted: the pace to fall back on. Without it
        # the first refusal counted, from a second mostly spent cooling, took the pace to what little
        # came then (4/s of a shared 20/s at 16 IPs) and dropped the budget as not shared.
        g.learner.lo = min(g.learner.rate, self.rules.set_point * g.got)
        g.learner.tat = now
        g.learner.clean_from(now, now)
        # The pairs' time scale, the median one's: a pair refused for 36 s because the others kept the
        # budget spent (16 IPs on one bucket) tells of no limiter, and the echoes ignored that long let
        # the total overrun the budget by a third (virtual time, a global bucket at 16 IPs without
        # Retry-After, 0-300 ms: 0.99 of it from the 4th to 6th minute; 0.87-0.95 with the longest).
        g.learner.scale = statistics.median(p.learner.scale for p in pacers)
        g.learner.episode = now
        # The budget is spent now, by uncoordinated paces: a refusal of what is sent while it refills
        # tells of them, not of the total paced as one.
        g.learner.settle_until = now + max(self.rules.min_trust, g.learner.scale)
        for p in pacers:
            p.group = g.learner
        return g

    def lost(self, ip: str, upstreams: Iterable[str]) -> None:
        """A worker of ``ip`` died with a job of each of ``upstreams`` in flight: those will not be
        answered (they are re-dispatched or ended), so they leave the pairs' in-flight counts. Only
        those: another worker of the same address (its next incarnation) keeps its own."""
        for upstream in upstreams:
            p = self._pacers.get((ip, upstream))
            if p is not None:
                p.answered()

    def forget(self, ip: str) -> None:
        for key in [k for k in self._pacers if k[0] == ip]:
            del self._pacers[key]

    def rates(self) -> dict[tuple[str, str], Pacer]:
        return dict(self._pacers)

    def shared(self) -> dict[str, RateLearner]:
        """Each upstream's shared budget (told, keyed or detected), by upstream."""
        return {upstream: g.learner for upstream, g in self._groups.items()}
