"""What one budget allows, learnt from its refusals: the pace a smooth sender keeps without a 429.

A :class:`RateLearner` paces one budget (an IP's at one upstream, or one every IP shares) with
GCRA: a request may go at ``tat``, and each moves ``tat`` on by ``1 / rate``, with no burst
tolerance; a send the event loop made late keeps up to 2 ms of the schedule (the next one comes
that much sooner; under a learnt concurrency cap, up to one interval: see
:mod:`galileo.policy.pacing`), and loses only what it was late past that (a one-token bucket
forgives no two sends much closer than its interval; a late send that started a new schedule lost
all its lateness, a few percent of a learnt pace where timers wake 3 ms late on average). On a
told pace the hub picks a job up to 10 ms before its slot and its worker holds it until the slot
(:data:`galileo.policy.allocator.LEAD`), so a coordinator that wakes late seldom makes a send late;
the send is counted at its slot, and a 429 of a request committed before the last one was heard
is an echo even if its worker sent it after. The worker also sends no two of a pair's jobs closer
than its told rate allows (``Dispatch.gap``), however late it read them.

A smooth sender at ``r <= ρ`` conforms to every limiter with a long-run rate ρ (a
token bucket ``B + ρt`` whatever B, a fixed or sliding window of N per W with ρ = N/W), so ρ
is all that must be learnt, never the shape.

* **open**: no limit met, no pace.
* **learn**: the first refusal that is news (a 429 of a request sent after the last one's
  answer came) says the budget is spent. The pair probes at 1 request/s until the refusal
  run ends (a ``Retry-After`` says when; else the farm's backoff finds out). If it said when,
  or the run lasted 2 s or more (a window, a box), what was admitted before over the time
  until the budget came back is a lower bound of ρ (exact for a window): the search starts
  there, in steps from +25 % (from +100 % after a rounded-up ``Retry-After: 1``); where the run
  ended without a word, what is refused from then on is news (a sliding window counter admits its
  rate again at once). A fixed
  window met late in it is overstated (W / (W - phase)) and its period comes out short: the
  budget's second return checks both over one whole window (successes between the returns over
  the time between, capped at the first estimate; not taken from fewer than 20, or if more than
  1.25 first windows' successes came between: one went unspent). Without a ``Retry-After`` the
  returns are found late, so the time is taken from the first run's last refused probe (a lower
  bound of the rate) and only after a held run. A run of 2 s or more marks the pair
  *windowed*. A short run
  with no word (a bucket) is measured instead: kept spent on purpose at 1.5x the success rate
  of the last second (doubled each second without a refusal), the limiter admits exactly ρ
  between two refusals, so successes sent between them over the time between is ρ; after 2
  cycles and 20 successes the search starts at it in steps from +2 % (+25 % if more than 60 %
  of the span went cooling: a bucket overflows meanwhile, so that is a lower bound).
* **hold**: a bracket search. ``lo`` is the highest pace proven (run clean and saturated for
  ``trust`` seconds, and, a step above ``lo``, filled: its sends came to 97 % of it, so a pace that
  bursts of demand kept saturated while it sent far less is not taken for safe), ``hi`` the lowest
  refused. With no ``hi`` the pace gallops, each proven step twice the last (up to +100 %);
  with both it bisects (towards a ``hi`` only guessed, never refused, for 2 steps: then past it);
  once ``hi / lo`` is within 1 %
  (3 % where overshooting is dear) it stays a margin below ``lo`` and after 60 s tries 1 % above ``hi``
  (the interval doubling after each refusal there, up to 240 s): a limit that rose is found. After
  a fall (``lo`` under 0.8 of the highest pace proven; not under a window or a box) the test comes
  every 20 s for up to 10 minutes: a provider's limit halved under congestion comes back, and a pace
  held at half of it for 240 s cost more than the 429 of a test every 20 s.
  Converged, the pace keeps a *margin* below ``lo`` (1 %, doubled by each refusal there, up
  to 4 %): requests reach the upstream with jitter, and a pace right at a bucket's rate is
  refused now and then, each refusal costing the Retry-After's rounded-up second. Such a refusal
  after 20 s converged and clean (of a limit that remembers no seconds) is the jitter's *tail*: the
  tail of arrival jitter refuses a pace a few percent under a bucket's rate too (two tokens, 10 ms of
  jitter: once in 17 to 470 s a pair). Taken for the limit, each cut the pace by the margin and 2 %
  more (0.88 of N·R over a quarter of an hour); searched back to ``lo``, each climb's steps were refused
  by the tail again (0.90). From the first, the pace is *jittered*: ``lo`` and ``hi`` stand, and the
  margin follows the refusals as an AIMD loop follows losses: up 0.5 % with each, down 0.25 % for each
  10 s clean (20 times the seconds the last one cooled, if longer: a refusal costs its cooling, and a
  ``Retry-After: 1`` costs a second of the pace), up to 8 %. Refusals settle about twice that period
  apart, where a few percent more margin costs about what the refusals do (0.92-0.93 of a two-token
  bucket under 10 ms of jitter; a model of one pair at the best fixed pace reads 0.93). Not jitter: a
  ``Retry-After`` of 2 s or more (a window's fill, met before any run said the limit remembers seconds:
  taken for the tail, a minute's window under a bucket moved 0.993 to 0.986 of N·R), a refusal
  as soon as the last one's cooling ended (a fall, below: its cuts are taken as if the first one had
  been too), a measured rate since the last one under 0.8 of the pace, the margin at 8 %, or the third
  refusal in a row each before the margin shrank. Then the old rule again: the refused pace is the
  bracket's top. A refusal taken for the tail whose refusal run then lasted seconds was a window's fill
  (without a word, or a ``Retry-After`` that says a second whatever): that rule is applied then. So it
  is, too, refused sooner than 20 s after converging: ``lo`` was over the limit (a one-second window's
  phase let it run clean a while). The margin is jitter, a time, against the pace's
  interval: each cut of a falling limit cuts it too (a halved limit: half the share).
  A refusal during the search makes its pace ``hi`` and goes back to ``lo``. A refusal at a
  proven pace (the limit fell, or send jitter) is a *surprise*: ``lo`` drops 2 % (twice the last cut if
  it came within 5 of the pace's intervals of the last surprise's ``Retry-After`` ending, nothing
  proven between: the refilled budget could not carry the pace a moment, the limit fell; up to
  50 %), or to the
  rate measured since the last refusal if the budget stayed spent all along (no pace proven
  meanwhile, little of it cooling; the time a short Retry-After made us cool not counted) while
  we kept the pace (sent 85 % of it: a farm short of CPU sends late and less, and what it got
  then is its own rate, not the budget's), and, if ``lo`` had run clean for the trust time (not
  only an estimate or a measurement), proofs take twice as long from then on (up to 8x). Under a
  window met only while paced (a minute's under a second's limit: dear, no first run's count), that
  measured rate is also where the search goes (a guess, searched past after 2 steps), not halfway to
  the pace refused far above it: each bisection step past a minute's window cost the rest of the
  window (a second's and a minute's window stacked: 0.93-0.95 of N·R over 300-600 s, 0.98-0.99 so).
  Refusals before the next success belong to the same spent budget and count once.
  Where a probe after a refusal is refused too, the limiter held the budget spent (a window, a box,
  or the other IPs spending a budget we share), whatever its ``Retry-After`` said. Where a
  ``Retry-After`` times the probes, each next one goes alone (:attr:`RateLearner.probing`): at the
  pace, a 300 ms path carried 6 into each, all refused (22.7 % 429s where a minute's window said
  one second and one IP's pace was far above it); without a word the backoff's steps time them,
  and the pace's worth in flight finds a box's end sooner. From one such
  *held return* to the next a window admits the same count over its period, whatever the pace:
  where the last three spans admitted the same count (within one, 20 successes at least), the pace
  goes to 98 % of what they admitted over their time together (their lengths vary: the backoff finds
  each return late by its step), cut by half at most each time (two trips of a box agreed by
  chance; three seldom do). A ``Retry-After: 1`` at each fill
  of a minute's window read the pace since the return (20/s and 600/min: 14.7/s, 2.8 % 429s), and
  a first burst that met a window just before its reset read the next window's burst as the rate.
  From the last refused probe before one held return to the next is longer than a window: 98 % of
  what came between raises a windowed pace cut below it.

``trust`` is how long an overshoot may take to show: at least 1 s and 5 requests' time, the
longest refusal run seen (a box's length), and a window's period: from the first send to when
its first spent budget came back, or between its first two returns (up to 120 s; a fixed
window's pace above its rate runs clean until the window's budget is spent). After a first run
under 2 s (a rounded-up ``Retry-After``: a bucket's, or a short window's) that period is at most 2 s:
the time since the first send was how long demand took to reach the limit. A pair whose demand is
another's answers (a multi-leg sell leg, fed by its buy leg) ramps for seconds before its first 429,
and took that ramp for a window's length: a 14 s proof for each step up from a first estimate that
averaged the ramp (virtual time, 4 IPs at 150 ms, demand reaching 1.5 N·R in 15-30 s, two-token
buckets and a one-second window, the 40 s after the ramp: 0.57-0.82 of N·R, 0.90-1.01 since; a
5 s window met at a second from its reset proves its first steps too soon and pays 0.2-0.6 % of
429s more for it in two phases of eight). But where the first refusal run lasted seconds, no more
than 4 times the time the pace takes to send what that run's limit admitted before it (its count):
a window of that count which the pace outruns refuses it within the pace's time to send the count
after the window's next reset, and that reset comes
within the proven pace's time to send it (a step is at most twice the proven pace: 3 such times
in all, and one to spare), whatever the window's length or its box's. ``penalty:10/1s,box=30s``
proved every step in 30 s, a minute's climb for each doubling from the 0.33/s the box let through:
0.49 of N·R from 420 to 600 s; 4 s at 10/s now, and 0.98. (At 3 times, a 10 s box stepped up from
``lo`` (below) and read 0.54 over its first 150 s, where it read 0.57-0.62 and reads 0.60-0.62.)
Not within 5 % of a refused pace: a box that arrival jitter trips there shows later, and the
shorter proof let a pace 0.3 % under a 5 s box's limit converge, to be boxed later (0.981 of N·R,
0.973 with two boxes). A bucket's first run (a second) leaves the count out. A bucket's first run
that admitted 5 or more (its *depth*, and the refill meanwhile) makes a step above ``lo`` run clean
for twice the time its excess over ``lo`` takes to send that many, too (up to 10 s; not under a
window or a box): each refusal's cooling (a rounded-up second) banks the bucket's depth again, and a
step over the rate ran clean on it for seconds. Proven in a second, a 10-request bucket's pace went to
1.38 times its rate and came down 2 % a surprise at a time: 0.955 of N·R and 0.43 % of 429s (4 IPs,
50 ms, 30-180 s), 0.983 and 0.16 % now; 10/s with a second's depth at 300 ms: 1.26 % of 429s, 0.47 %
now (12 % and 2.1 % over its first 20 s). A refusal run of more
than 2 s and 20 pace intervals near the limit (a penalty box) makes overshooting *dear*: a pace
below the refused one is guarded against late arrivals as a told pace is (below), with the
refused pace's one-second budget (rounded down, never below the pace's own +0.5 %): without it a
host that stalls 40 ms every few seconds boxes the learnt pace again and again, each box read as
an overshoot that pulls what was proved down (0.92-0.95 of N·R in virtual time, 0.96-0.98
guarded). Where a proof takes a third of the box or less, the search steps up from ``lo`` (+2 %,
doubling while proven) rather than halfway to ``hi``: each step past the limit costs a box, and
halfway from 9.8/s to 19.5/s, with the limit just above ``lo``, each bisection was boxed in turn (six
boxes of 30 s; a minute's window, whose proofs take a minute, still bisects). Guarded, the bracket
closes at 1.5 % (3 % before the guard: jitter boxed paces closer),
the converged pace keeps half the margin, and the bracket is tested again after 120 times the box's
length (the longest refusal run seen; at least 300 s: 600 s for a box of 5 s, 3600 s for 30 s), each
failed test doubling that up to 4 times as long (at least 1200 s): a test costs a box. (60 times
until round 50, when a box without ``Retry-After`` was found over up to 30 s late, and its run, 12 s
for a box of 5, spaced the tests. Found within a fifth of its length, 60 times was twice as many
tests: 0.975 of N·R over 1200 s at 16 IPs with late timers, where there had been 0.982; 0.982 now.)
A failed test of a closed bracket goes back to the pace that held (``lo`` less its margin) and proves
it there, not at ``lo``: a limit within arrival jitter of ``lo`` was boxed again seconds after the
test's box. Not under a bucket with depth, whose bank the test spent: ``lo`` is proven again on the
empty bucket. Where the test's box said nothing, the fall a later surprise measures counts only the
time since the budget came back (over the time since the test, a 5 s box read as a fall to 8.6/s).

A told rate (``rate_limit_per_ip``) is used as given: paced at 98 % of it from the first
request (requests reach the upstream with some jitter; a one-second window forgives little). One
refusal alone is that jitter, and costs its Retry-After's second, less than a minute 2 % slower
would: the pace holds. A second within a minute of it trims the pace 2 % per refusal, down to
96.5 % of it, and so does a penalty box (a refusal run judged dear) at once; a clean minute restores
98 % (five minutes once a box was met: a box costs its length in requests, far more than 1.5 % of a
pace, so arrival jitter that trips it is not met again each minute). It is never learnt above or
below that. A request answered late (it reached the upstream late, most likely) holds the send one
second's budget after it until a second after it was logged (:mod:`galileo.policy.arrivals`).
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Literal

from galileo.policy.arrivals import ArrivalGuard

__all__ = ["PACE", "Heard", "PaceRules", "Phase", "RateLearner"]

Phase = Literal["open", "learn", "hold"]
Heard = Literal["echo", "surprise", "refusal", "noise"]  # what a 429 told a learner


@dataclass(frozen=True, slots=True)
class PaceRules:
    """Every number pacing runs on. :data:`PACE` holds the defaults the farm uses."""

    catch_up: float = 0.002  # seconds: a late send keeps up to this much of the pace's schedule ...
    capped_credit: float = 1.0  # ... and under a learnt concurrency cap, up to this many of its intervals
    open_inflight: int = 8  # requests in flight a new (IP, upstream) pair starts with
    open_step: float = 0.5  # seconds saturated and not queueing before that doubles
    queueing: float = 2.0  # answers this many times slower than the pair's floor: the upstream queues
    told: float = 0.98  # a told rate is paced at this share of it (arrival jitter needs a margin: 20 ms a second) ...
    told_floor: float = 0.965  # ... and refusals (send jitter) trim it to no less than this share
    arrival_window: float = 1.0  # a told pace holds the send one such window after a late arrival (0: never) ...
    arrival_budget: float = 0.008  # ... for at most this share of the time (see galileo.policy.arrivals)
    guard_slack: float = 0.005  # a learnt pace under a box guards a window's budget of at least its own count +this
    probe: float = 1.0  # requests/s while a first refusal run without Retry-After lasts
    overdrive: float = 1.5  # measuring: pace at this many times the success rate of the last second
    stall: float = 1.0  # measuring: seconds without a refusal, saturated, before the pace doubles
    give_up: float = 10.0  # measuring: seconds (and twice the time scale) without one: no limit after all
    min_oks: int = 20  # successes a measurement needs ...
    min_cycles: int = 2  # ... over at least this many refusal-to-refusal cycles
    long_wait: float = 2.0  # a Retry-After at least this long tells when the spent budget returns
    short_period: float = 2.0  # a first run shorter than that: its period (first send to return) no longer than this
    window_run: float = 5.0  # refused this long while paced: the limit remembers seconds (a window, a box)
    set_point: float = 0.98  # a measured rate is paced at this share of it
    trim: float = 0.98  # a refusal at a proven pace takes it to this share ...
    max_cut: float = 0.5  # ... its cut doubled by each one soon after the last (a limit that fell), up to this:
    soon_sends: float = 5.0  # ... refused within this many of the pace's intervals of its cooling's end
    backoff: float = 0.95  # a refusal with nothing proven yet takes the pace to this share
    step: float = 0.02  # the first step above a measured pace; doubled each proven step ...
    start_step: float = 0.25  # ... or above a lower bound
    max_step: float = 1.0  # ... up to this
    eps: float = 0.01  # the search stops when hi / lo is within this
    guess_steps: int = 2  # ... or, where hi is only a guess (never refused), after this many steps towards it
    margin: float = 0.01  # converged, the pace keeps this far below lo (arrival jitter) ...
    guarded_margin: float = 0.5  # ... this share of it where guarded against late arrivals (under a box) ...
    max_margin: float = 0.04  # ... doubled by each refusal there, up to this
    jitter_after: float = 20.0  # converged this long, a refusal there is jitter's tail: lo and hi stand ...
    jitter_step: float = 0.005  # ... and the margin grows by this (each such refusal from then on) ...
    jitter_relief: float = 0.0025  # ... and shrinks by this for each ``jitter_clean`` seconds clean (or
    jitter_costs: float = 20.0  # this many times the seconds the last such refusal cooled, if longer) ...
    jitter_clean: float = 10.0
    jitter_margin: float = 0.08  # ... up to this. Not jitter: the margin this high, ...
    jitter_quick: int = 2  # ... refused this many times in a row, each before the margin shrank, and again,
    jitter_fell: float = 0.8  # ... or after a run the budget kept under this share of the pace (a fall)
    dear_eps: float = 0.015  # ... or this, where an overshoot is dear (a penalty box; guarded against late arrivals)
    dear_run: float = 20.0  # a refusal run of this many pace intervals (and long_wait s) is dear
    dear_steps: float = 3.0  # ... and its search steps up from lo where a proof takes at most 1/this of a box
    min_trust: float = 1.0  # seconds a pace runs clean and saturated before it counts as proven ...
    trust_events: float = 5.0  # ... and at least the time of this many requests,
    max_scale: float = 120.0  # ... and the longest refusal run seen, capped here;
    count_trust: float = 4.0  # ... but no more than this many times the time the pace takes to send a
    # first run's count, where the first run lasted seconds (see RateLearner.trust), ...
    count_near: float = 0.05  # ... unless within this of the lowest pace refused (jitter's boxes show slower)
    bank_trust: float = 2.0  # ... and, a step above lo under a bucket of some depth, this many times the time
    # the step's excess over lo takes to spend that depth (see RateLearner.trust), ...
    bank_cap: float = 10.0  # ... up to this many seconds
    bank_min: int = 5  # a first run this short (a bucket) that admitted this many or more: the bucket has depth
    period_trust: float = 1.0  # ... and this many times a window's period (first send to its reset)
    max_doubt: float = 8.0  # each refusal at a proven pace doubles that, up to this factor
    reprobe: float = 60.0  # seconds converged before the bracket is tested again ...
    max_reprobe: float = 240.0  # ... doubling after each failed test, up to this;
    dear_reprobe: float = 300.0  # ... and at least this where an overshoot is dear (a box), doubling up to
    dear_max_reprobe: float = 1200.0  # ... this: each test past the bracket costs a box (5 s of 20/s: 1.7 % at 300 s);
    box_tests: float = 120.0  # ... and a learnt pace's at least this many times its box's length (30 s: 3600 s)
    fallen: float = 0.8  # lo under this share of the highest pace proven: the limit fell, and may come back ...
    fallen_reprobe: float = 20.0  # ... so the bracket is tested again this often (never less often) ...
    fallen_memory: float = 600.0  # ... for this many seconds after the fall; then the fallen pace is the limit
    idle_share: float = 0.6  # a measurement with more of its span spent cooling is only a lower bound
    min_rate: float = 0.05  # requests/s: no pace goes below this
    saturation: float = 0.5  # a budget its pace held back within this many seconds is saturated
    fill: float = 0.97  # ... and only if its sends over the clean run came to this share of it (one spared)
    spent_once: float = 1.25  # successes between a window's first two returns within this many first windows': one
    same_spans: int = 3  # this many spans in a row between held returns, their successes within one of each
    # other's: each spent one window (see RateLearner._held_return)
    kept: float = 0.85  # a measured fall is believed only if our sends between came to this share of the pace
    dear_share: float = 0.2  # ... over the time between, waits included, if its wait came to this share of its cycle
    noise_min: int = 5  # surprises at held paces under ``fallen`` of the highest one proven, at least this many ...
    noise_floor: float = 0.002  # ... and this share of their sends or more (up to ``noise_max``): 429s whatever the
    noise_max: float = 0.05  # pace (an upstream shedding load), not the limit's: their share is the noise ...
    noise_spacing: int = 10  # (only surprises this many successes after the last refusal count)
    noise_intervals: int = 8  # ... and the last this many intervals between refusals (in sends) vary as chance's do,
    noise_cv: float = 0.4  # their deviation this share of their mean or more (a limit's cycle is regular) ...
    noise_trend: float = 2.0  # ... and not thinning out (the later half of those this many times the earlier)
    noise_window: float = 4.0  # ... and a refusal is noise while the sends that hold this many of it at that share
    noise_slack: float = 1.5  # ... hold at most this many times that, plus ``noise_extra``
    noise_extra: int = 2


PACE = PaceRules()
NOISE_KEPT = 64  # refusals whose send counts are kept to tell noise from the limit's (bounded: 0.5 KiB a pair)
SENT_KEPT = 128  # send times kept (1 KiB a pair): more than a pace keeps in flight while a refusal comes back


class RateLearner:
    """The pace of one budget, learnt from its refusals (or told). Times are seconds, clock injected."""

    def __init__(self, rules: PaceRules, now: float, told: float | None = None) -> None:
        self.rules = rules
        self.told = told
        self.phase: Phase = "hold" if told else "open"
        self.rate = rules.told * told if told else math.inf
        self.tat = 0.0
        self.last_sent = -math.inf
        self.last_blocked = -math.inf
        self.first_sent: float | None = None
        self.oks = 0
        self.recent: list[float] = []  # answer times of successes in the last second
        self.episode = -math.inf  # answer time of the last refusal that was news
        self.settle_until = -math.inf  # refusals of requests sent before this are the measurement's echoes
        self.run_start: float | None = None  # send time of the first refusal of the running refusal run
        self.scale = 0.0  # the longest refusal run seen, seconds
        self.period = 0.0  # a window's: from the first send to when its spent budget came back, seconds
        self.dear = False
        self.windowed = False  # a first refusal run of long_wait, or one of window_run while paced: a window, a box
        # The limiter said it remembers seconds (a window, a box): a Retry-After of long_wait or more, or a
        # first refusal run of long_wait with Retry-Afters (window_run without one). Its surprises are not
        # taken for a shared budget (:meth:`galileo.policy.pacing.PaceBook._heard`): per-IP windows aligned
        # to the clock fill at once. A run while paced, each Retry-After short, does not mark it.
        self.own_window = False
        # That first run's end: (send time, successes by then, the last refused probe's send time)
        self.first_return: tuple[float, int, float] | None = None
        self.run_probed = -math.inf  # send time of the last probe refused in the running refusal run
        self.run_said = False  # ... which said Retry-After
        self.held_at = -math.inf  # send time of the success that ended the last held run (see _held_return) ...
        self.held_probed = -math.inf  # ... and of that run's last refused probe ...
        self.since_held = 0  # ... successes sent since then ...
        self.held_spans: deque[tuple[int, float]] = deque(maxlen=rules.same_spans)  # ... and the last spans
        # between held returns: (successes, seconds)
        self.doubt = 1.0  # trust is multiplied by this: doubled by each refusal at a proven pace
        self.lo_proven = False  # lo ran clean for trust, not only an estimate or a measurement of the rate
        self.estimate: float | None = None
        self.lo = 0.0
        self.hi = math.inf
        self.hi_refused = True  # hi is a pace that was refused (not a guess)
        self.guess_steps = 0  # bisection steps taken towards a guessed hi
        self.gain = rules.step
        self.clean_since = now
        self.sends = 0  # requests dispatched, ever
        self.fill_at = now  # sends are counted towards proving a pace from this time ...
        self.fill_sends = 0  # ... when this many had been sent
        self.converged_at: float | None = None
        self.margin = rules.margin
        self.stepped_at = now  # when the pace last went up
        self.settled = 0.0  # at the last refusal: seconds since the pace last went up
        self.tail = False  # the last surprise came after jitter_after converged and clean: the jitter's tail
        self.jittered = False  # surprises are the jitter's tail: the margin follows them (see _jitter)
        self.relieved_at = -math.inf  # when the margin last grew or shrank there
        self.relief_every = rules.jitter_clean  # ... and how long it holds before it shrinks
        self.jitter_at = -math.inf  # when the last surprise taken for the jitter's tail came ...
        self.jitter_quick = 0  # ... and how many in a row came before the margin shrank
        self.jitter_rate = 0.0  # ... and the pace it refused
        self.falling = 0  # surprises in a row, each soon after the last: the limit is falling
        self.cooled_until = -math.inf  # when the cooling of the last refusal that was news ended
        self.reprobe_every = rules.reprobe
        self.peak = 0.0  # the highest pace proven clean
        # Refusals whatever the pace (see _noisy): sends and surprises at a pace held (lo or under) under
        # ``fallen`` of the highest proven; the share found; recent refusals.
        self.low_sends = 0
        self.low_refused = 0
        self.attributed = 0  # sends through the last refusal, counted into those
        self.noise = 0.0
        self.defer_noise = False  # noise found is left to the caller to judge (``noise_found``: see PaceBook)
        self.noise_found = 0.0
        self.noise_since = 0  # sends through the last refusal found over the noise: none before it count again
        self.said_seconds = False  # a Retry-After said seconds (a window's or a box's): no noise is looked for
        self.noise_sent: deque[int] = deque(maxlen=NOISE_KEPT)  # sends through each recent news refusal
        self.fell_at: float | None = None  # when lo fell under ``fallen`` of it (None: it has not, or long ago)
        self.stall_at = now
        self.span_start: float | None = None  # measuring: send time of the refusal that opened the span
        self.span_oks = 0
        self.span_idle = 0.0  # seconds of the span spent cooling
        self.cycles = 0
        self.last_refusal_sent = -math.inf
        self.between_oks = 0  # successes sent since the last refusal that was news
        self.sends_through = 0  # requests dispatched, ever, up to that refusal's (itself included)
        self.sent_times = array("d", [-math.inf]) * SENT_KEPT  # when the latest requests went: a ring, the
        # newest at sends % SENT_KEPT
        self.between_idle = 0.0
        self.between_told = False  # that cooldown was a long Retry-After: the budget came back when it said
        self.between_said = False  # ... or any Retry-After: the cooling was the upstream's word, not our backoff
        self.between_proven = False  # a pace ran clean since: the budget was not kept spent
        self.between_own = False  # that refusal came at a pace at or under lo (a surprise): its wait was the pace's own
        self.held_back: float | None = None  # a held run of long_wait or more followed it (a box, a spent
        # window): when the success that ended it was sent
        self.refusals = 0
        self.depth = 0.0  # a bucket's: what its first refusal run admitted before (the refill meanwhile too)
        self.first_run = False  # learning: waiting for the first refusal run to end
        self.first_oks = 0  # successes sent before the first refusal
        self.first_refused = math.inf  # ... which was sent then
        self.first_heard = math.inf  # ... and heard of then
        self.first_told = False  # ... with a Retry-After
        self.first_achieved = 0  # ... in its last second
        self.window_count = 0  # a first run of seconds: what it admitted before (a window's count, a box's)
        self.told_strike = -math.inf  # a told pace: when a refusal was last let pass as jitter
        self.arrivals: ArrivalGuard | None = None  # a told pace: holds the send a window after a late arrival
        if told and rules.arrival_window > 0:
            self.arrivals = ArrivalGuard(told, rules.arrival_window, rules.arrival_budget)

    # --- sending --------------------------------------------------------------------

    def next_at(self, now: float) -> float | None:
        """When this budget may send again, or None if it may now."""
        if self.phase == "open":
            return None
        at = self.tat
        if self.arrivals is not None:
            hold = self.arrivals.hold(now, at)
            if hold is not None and hold > at:
                at = hold
        return None if now >= at else at

    def dispatched(self, now: float, capped: bool = False) -> None:
        """A request went at ``now``. ``capped``: the pair has a learnt concurrency cap, which bunches
        sends as answers free its slots; a send it held late keeps up to ``capped_credit`` intervals
        of the schedule, so the pace does not hold back the next slot the cap frees as well. Else a
        send that a request waited for (the pace held one back since the last send) and the loop made
        late keeps up to ``catch_up`` of the lateness; one that came after the pace sat idle, none."""
        waited_for = self.last_blocked >= self.last_sent > -math.inf
        self.sent_times[self.sends % SENT_KEPT] = now
        self.sends += 1
        if self.first_sent is None:
            self.first_sent = now
        self.last_sent = now
        if self.arrivals is not None:
            self.arrivals.dispatched(now, self.tat)
        if self.phase != "open":
            interval = 1.0 / self.rate
            if capped:  # held by the cap: up to ``capped_credit`` intervals of the schedule kept
                self.tat = max(self.tat, now - self.rules.capped_credit * interval) + interval
            else:  # made late by the loop: up to ``catch_up`` of the lateness made up by the next slot
                self.tat = max(self.tat, now - (self.rules.catch_up if waited_for else 0.0)) + interval

    def _repace(self, now: float, cooled: float = 0.0) -> None:
        """A new pace: its first slot is one interval after the last send (never two sends closer)."""
        self.tat = max(self.last_sent + 1.0 / self.rate, now + cooled)
        self._guard()

    def _guard(self) -> None:
        """A learnt pace under a penalty box guards against late arrivals too, as a told one does:
        the refused pace is the budget a window holds. Galloping, or testing past it, there is none
        to keep clear of (and holding would cap the pace); elsewhere a late arrival costs one 429."""
        if self.told is not None or self.rules.arrival_window <= 0:
            return
        budget = None
        if self.dear and self.phase == "hold" and self.rate < self.hi < math.inf:
            # A window's budget is the refused pace's, rounded down, but never so few that the pace
            # itself would send them within a window (+0.5 %): the guard would hold every send a
            # little, a cap below the pace (a refusal a stall caused can put hi that low).
            w, slack = self.rules.arrival_window, self.rules.guard_slack
            budget = max(math.floor(self.hi * w + 1e-9), math.ceil((1 + slack) * self.rate * w)) / w
        if self.arrivals is None and budget is not None:
            self.arrivals = ArrivalGuard(budget, self.rules.arrival_window, self.rules.arrival_budget)
        elif self.arrivals is not None:
            self.arrivals.rerate(budget)

    def blocked(self, now: float) -> None:
        """A request waited for this budget's pace: demand exceeds it."""
        self.last_blocked = now
        if self.phase == "learn":
            self._measuring(now)

    def saturated(self, now: float) -> bool:
        return now - self.last_blocked < self.rules.saturation

    @property
    def probing(self) -> bool:
        """Held: a probe sent after a refusal was refused too (its ``Retry-After`` was wrong, or there was
        none), and no success has come since. The budget is held spent (a window, a box), so the next
        probe goes alone, when the next ``Retry-After`` or the backoff's step ends: a pace's worth in
        flight would each be refused (at 300 ms, 6 of a 20/s pace every second). Until round 50 a run
        without a word probed with the pace's worth, which found a box's end sooner while the backoff's
        steps doubled up to 30 s; within a fifth of the run so far, single probes read the same (16 IPs
        under a 5 s box at 150 ms: 0.985 of N·R either way) with half the 429s while the box is learnt."""
        held = self.run_start is not None and self.run_probed > self.run_start
        return self.phase == "hold" and held

    def clean_from(self, now: float, since: float) -> None:
        """The pace's clean, saturated run starts at ``since``; its sends are counted from ``now`` on."""
        self.clean_since = since
        self.fill_at, self.fill_sends = max(since, now), self.sends

    def _filled(self, now: float) -> bool:
        """The sends since the clean run began came near the pace: demand, not bursts, kept it busy.

        A request held back now and then (two jobs at once) makes a pair saturated; a pace its
        demand never reached would be proven clean without ever being tried.
        """
        took = now - self.fill_at
        return took <= 0 or self.sends - self.fill_sends + 1 >= self.rules.fill * self.rate * took

    def trust(self, doubted: bool = True) -> float:
        """Seconds a pace must run clean and saturated before it counts as proven."""
        r = self.rules
        scale = min(max(self.scale, r.period_trust * self.period), r.max_scale)
        if self.window_count and self.rate * (1 + r.count_near) < self.hi:
            scale = min(scale, r.count_trust * self.window_count / self.rate)
        base = max(r.min_trust, scale, r.trust_events / self.rate)
        base = base * self.doubt if doubted else base
        if self.depth and self.rate > self.lo > 0 and not (self.windowed or self.dear):
            # A step above lo, under a bucket: what a cooling banked carries its excess for a while.
            base = max(base, min(r.bank_cap, r.bank_trust * self.depth / (self.rate - self.lo)))
        return base

    # --- answers --------------------------------------------------------------------

    def ok(self, now: float, sent_at: float) -> None:
        self.oks += 1
        if self.arrivals is not None:
            self.arrivals.answered(now, sent_at)
        self.first_oks += self.first_run and sent_at <= self.first_refused
        self.since_held += sent_at >= self.held_at
        self.between_oks += sent_at >= self.last_refusal_sent
        if self.span_start is not None and sent_at >= self.span_start:
            self.span_oks += 1
        # A success sent before the first refusal was heard raced it (from another IP, on another path):
        # it says nothing of when the budget came back. Taken for it, 64 IPs' opening burst on one key
        # made a first run of milliseconds and an estimate of 300 000/s for the key's 30.
        raced = self.first_run and sent_at < self.first_heard
        if self.run_start is not None and sent_at > self.run_start and not raced:
            self._run_ended(now, sent_at)
        if self.phase == "open":
            recent = self.recent
            recent.append(now)
            if len(recent) > 64 and recent[0] < now - 1.0:
                del recent[: len(recent) // 2]
        elif self.phase == "learn":
            self._measuring(now)
        elif self.told is not None:
            if now - self.clean_since >= self.reprobe_every:
                self.rate = self.rules.told * self.told  # a clean minute (5 after a box): the told pace again
                self.clean_from(now, now)
        elif not self.saturated(now):
            self.clean_from(now, max(self.clean_since, now - self.rules.saturation))  # demand, not the pace, held it
        elif now - self.clean_since >= self.trust():
            if self.rate <= self.lo or self._filled(now):
                self._proven(now)  # at or under what stands already, a clean run is all it takes
            else:
                self.clean_from(now, now)  # a step up that bursts kept saturated, not demand: the run starts over

    def _run_ended(self, now: float, sent_at: float) -> None:
        """A success sent after a refusal run began: the run's length tells the limiter's time scale."""
        assert self.run_start is not None
        r = self.rules
        run = sent_at - self.run_start
        held = self.run_probed > self.run_start  # a probe after the first refusal was refused too
        self.run_start = None
        self.scale = max(self.scale, min(run, r.max_scale))
        if self.phase == "hold" and run >= r.window_run:
            self.windowed = True  # refused for seconds while paced: a window (or a box) spent
            if self.jittered:
                self._not_jitter(now)
        if self.phase == "hold" and self.first_return is not None:
            self._second_return(now, sent_at, self.run_probed if held else None)
        if self.phase == "hold" and held:
            self.held_back = sent_at if run >= r.long_wait else None
            self._held_return(now, sent_at)
        near = self.lo > 0 or self.told is not None  # a told pace is near the limit from the start
        if self.phase == "hold" and near and run > max(r.long_wait, r.dear_run / self.rate):
            self.dear = True  # refused far longer than a pace interval, near the limit: a penalty box
            self.reprobe_every = max(self.reprobe_every, self._dear_reprobe())
            if self.told is not None:
                self._trim_told()
                self._repace(now)
        if self.phase == "learn" and self.first_run:
            self.first_run = False
            if run < r.long_wait and self.first_oks >= r.bank_min:
                self.depth = float(self.first_oks)  # a bucket's burst and its refill meanwhile
            start = self.first_sent if self.first_sent is not None else sent_at
            if (run >= r.long_wait or self.first_told) and self.first_oks and sent_at > start:
                # What it admitted over the time until its budget came back is a lower bound of its
                # rate (exact for a window; a bucket wastes refill while we wait, a box longer).
                # Without Retry-After it came back after the last refused probe: an upper bound for
                # a window, a guess for a box (searched past after ``guess_steps`` steps towards it).
                upper = math.inf
                if not self.first_told and self.last_refusal_sent > start:
                    upper = self.first_oks / (self.last_refusal_sent - start)
                gain = r.start_step if run >= r.long_wait else r.max_step  # a rounded-up second says little
                # A window's length or so: a pace must outlast one to be proven. After a short run (a
                # rounded-up Retry-After: a bucket's, a short window's) the time since the first send says
                # how long demand took to reach the limit (a pair fed by another's answers ramps for seconds).
                span = sent_at - start
                self.period = span if run >= r.long_wait else min(span, r.short_period)
                self.windowed = run >= r.long_wait  # the limiter remembers seconds (a window, a box)
                # Without a word, 2 s may be two probes a second refused while the other IPs spend a shared
                # budget (4 IPs on one bucket): a window of its own keeps refusing longer.
                self.own_window |= run >= (r.long_wait if self.first_told else r.window_run)
                self._hold(now, self.first_oks / (sent_at - start), upper, gain, 0.0, settle=self.first_told)
                self.hi_refused, self.guess_steps = False, 0
                if self.windowed:
                    self.first_return = (sent_at, self.oks, self.last_refusal_sent)
                    self.window_count = self.first_oks
            else:
                # Refill within a pace interval or so: a bucket. Keep it spent and measure its rate.
                self.rate = r.overdrive * max(1, self.first_achieved)
                self._repace(now)
                self.stall_at = now

    def _second_return(self, now: float, sent_at: float, probed: float | None) -> None:
        """The budget came back a second time: a window's first estimate, checked over a whole window.

        The first run measured from the first send, which may have come late in a fixed window: what
        it admitted over the time until the window ended overstates the rate, the period comes out
        short, and a pace above the rate runs clean for that period. From one return to the next
        the window was spent once, whole: what it admitted over that time is its rate (a box's, a
        lower bound), and the time is its period. The pace is set to 98 % of it, never above the
        first estimate (exact for a sliding window, which may admit more than its rate between two
        returns less than a window apart): down from an overstated first estimate, or back up from
        a refusal in between that measured the first run's wait as sending time. Checked once;
        later refusals go the usual way.

        Without a ``Retry-After`` each return is found late, by up to the backoff's step (30 s), and is
        believed only after a held run (``probed``: the last refused probe; a single refusal is a test
        or jitter, and a sliding window admits again at once). Each reset came after the last refused
        probe and before the return, so the rate lies between the count over the time from the first
        run's last refused probe to this return (the pace: 98 % of it) and over the time from the first
        return to this run's last refused probe (the guess searched up to). Taken from return to return
        it was neither bound: a first burst 1.3 s before a minute's reset read 230/s for 20 and kept
        that for minutes (3-5 % 429s at 300 ms).
        """
        assert self.first_return is not None
        then, oks_then, probed_then = self.first_return
        self.first_return = None
        spacing, got = sent_at - then, self.oks - oks_then
        upper = math.inf
        if not self.first_told:  # (see above)
            if probed is None:
                return
            spacing = sent_at - probed_then
            if probed > then:
                upper = got / (probed - then)
        if spacing <= 0 or got > self.rules.spent_once * self.first_oks:
            return  # more than one window's budget between (one went unspent): our demand, not the window
        if got < self.rules.min_oks:
            return  # too few to measure a rate by (demand stopped between)
        self.period = max(self.period, min(spacing, self.rules.max_scale))
        self._window_rate(now, min(got / spacing, self.estimate or math.inf), upper)

    def _held_return(self, now: float, sent_at: float) -> None:
        """The budget came back after a run of refused probes: the limiter held it spent (a window, a box,
        or other IPs spending a budget we share), whatever its ``Retry-After`` said.

        A window admits the same count from one return to the next, whatever the pace: where the last
        ``same_spans`` spans between such returns admitted the same count (within one, ``min_oks`` at least),
        each spent one window, and what they admitted over their time is its rate (a return the backoff
        found late lengthens one span and shortens the next: 44-75 s for a 60 s window). The
        refusals cannot tell it: a ``Retry-After: 1`` at a window's fill (as many gateways say) counts
        its tail as cooling, and the pace since the return is our own (20/s and 600/min read as 14.7/s,
        each fill a surprise trimming 2 %, 20 s of refusals a minute: 2.8 % 429s). A box's counts agree
        by chance: two in a row did (a 20/s box tripped by late timers every 16 s, 210 successes each,
        read as 12.7/s: 8 boxes counted where there were none), three seldom; and each cut here is at
        most ``max_cut``.

        A window's reset came after the last refused probe of the run it ended, so from that probe to the
        next held return is longer than one window (or ``k`` windows, any between unfilled), and what came
        between is at most its budget (or ``k``): 98 % of it over that time is a pace a window holds. A fill
        measured from the fill before, at another point of its window (600 over 68 s for 60), cut pairs of
        20/s under a minute's window to 8.5/s, and doubted, their tests came minutes later; they are raised to
        it, never cut (for a box what came is a lower bound too: its trips cost their length).
        """
        r = self.rules
        got, spacing, first = self.since_held - 1, sent_at - self.held_at, math.isinf(self.held_at)
        since = sent_at - self.held_probed  # from before the last reset to after this one
        self.held_at, self.since_held, self.held_probed = sent_at, 1, self.run_probed  # (it opens the next span)
        if first:
            return  # no span before the first held return
        floor = r.set_point * got / since if since > 0 else 0.0
        below_hi = floor * (1 + self._eps()) < self.hi or not self.hi_refused  # (a guess holds nothing back)
        if self.windowed and got >= r.min_oks and self.lo < floor and below_hi:
            # A window's pace cut below what the span admitted (a fill measured from a fill at another point
            # of its window): what came since the last held run's last refused probe is a pace it holds.
            self._pace_from(now, floor)
            if not self.hi_refused and self.hi <= floor * (1 + self._eps()):
                self.hi = math.inf  # a guess the window's count says was low
        spans = self.held_spans
        spans.append((got, spacing))
        if len(spans) < r.same_spans or spacing <= 0 or got < r.min_oks:
            return
        if any(abs(got - n) > 1 for n, _ in spans):
            return  # not one window's budget each: a bucket's, a box's, what others left of a shared one
        measured = sum(n for n, _ in spans) / sum(t for _, t in spans)
        self._window_rate(now, max(measured, (1 - r.max_cut) * self.lo / r.set_point))

    def _window_rate(self, now: float, measured: float, upper: float = math.inf) -> None:
        """A window's rate, measured over one: the pace is set to ``set_point`` of it, and the search
        goes up to ``upper`` (a bound above it: else the measurement itself) as a guess."""
        lo = max(self.rules.min_rate, self.rules.set_point * measured)
        if lo == self.lo or (lo > self.lo and lo * (1 + self.rules.eps) >= self.hi):
            return  # nothing to change, or a pace refused since says less
        guess = measured if math.isinf(upper) else max(measured, upper)
        if guess < self.hi:
            self.hi, self.hi_refused, self.guess_steps = guess, False, 0  # the window's rate: searched past if clean
        self.gain = self.rules.step
        self._pace_from(now, lo)

    def _pace_from(self, now: float, lo: float) -> None:
        """A new ``lo``, not proven, paced from now; the search from it starts over."""
        self.lo = self.rate = lo
        self.lo_proven = False
        self.converged_at = None
        self.clean_from(now, now)
        self._repace(now)

    def _measuring(self, now: float) -> None:
        if self.first_run or not self.saturated(now):
            return
        quiet = now - max(self.episode, self.stall_at)
        if now - self.episode > max(self.rules.give_up, 2 * self.scale) and quiet > self.rules.stall:
            self._reset(now)  # saturated, no refusal for long: whatever limited us once is gone
        elif quiet > self.rules.stall:
            self.rate *= 2  # too slow to exhaust the budget again: push harder
            self.stall_at = now

    def _reset(self, now: float) -> None:
        self.phase, self.rate, self.recent = "open", math.inf, []
        self.lo_proven = False
        self.lo, self.hi, self.estimate, self.span_start = 0.0, math.inf, None, None

    def _proven(self, now: float) -> None:
        """The pace ran clean and saturated for ``trust``: it is safe; choose the next one."""
        r = self.rules
        self.lo_proven = self.lo_proven or self.rate >= self.lo
        self.lo = max(self.lo, self.rate)
        if self.rate > self.peak:
            self._new_peak(self.rate)
        self.between_proven = True
        eps = self._eps()
        guessed_past = self.lo * (1 + eps) >= self.hi or self.guess_steps >= r.guess_steps
        if self.lo >= self.hi or (not self.hi_refused and guessed_past):
            self.hi = math.inf  # a refused rate now runs clean (the limit rose), or the guess was low
        self.stepped_at = now
        if math.isinf(self.hi):
            self.rate = self.lo * (1 + self.gain)
            self.gain = min(2 * self.gain, r.max_step)
        elif self.hi > self.lo * (1 + eps):
            self.rate = math.sqrt(self.lo * self.hi)
            if self.dear and r.dear_steps * self.trust(doubted=False) <= self.scale:
                # Each step past the limit costs a box, and a proof costs a fraction of one: up from lo in
                # steps, not halfway (a minute's window, dear too, proves a pace in a minute: it bisects)
                self.rate = min(self.rate, self.lo * (1 + self.gain))
                self.gain = min(2 * self.gain, r.max_step)
            if not self.hi_refused:
                self.guess_steps += 1
        elif self.converged_at is None:
            self.converged_at = now
            self.rate = self._settled()
        elif now - self.converged_at >= self._reprobe(now):
            self.rate = self.hi * (1 + eps)  # test just past the bracket: has the limit moved up?
            self.converged_at = None
        elif self._relieved(now):
            self.margin = max(r.margin, self.margin - r.jitter_relief)
            self.relieved_at = now
            self.rate = self._settled()
        self.clean_from(now, now)
        self._repace(now)

    def _settled(self) -> float:
        """The pace once the bracket is closed, and as the jitter's margin grows or shrinks: ``margin`` below
        lo (half of it where guarded against late arrivals: only under a box, which the margin loop is not)."""
        guarded = self.arrivals is not None and self.arrivals.span > 0  # (under a box)
        return self.lo * (1 - self.margin * (self.rules.guarded_margin if guarded else 1.0))

    def unbound(self, now: float) -> None:
        """The refusals so far were another limit's (a concurrency cap's): no refused pace is known.
        The one that said so (at ``now``) was news all the same: refusals of requests sent before it
        are its echoes, not news for the pace (taken for news, a box's echoes read as a rate fallen
        to a quarter: the box's seconds counted as sending time)."""
        self.episode = max(self.episode, now)
        self.hi = math.inf
        self.gain = self.rules.step
        self.converged_at = None
        if self.told is not None and self.rate < self.rules.told * self.told:
            # A told pace trimmed for them (a refusal counted only later, see CapFinder) is restored.
            self.rate, self.told_strike = self.rules.told * self.told, -math.inf
            self._repace(now)
        self._guard()

    def is_echo(self, sent_at: float) -> bool:
        """A 429 of a request sent before the last one's answer came (or while the spent budget of
        a measurement was still refilling, before the search began): the same event, not news."""
        return sent_at < self.episode or sent_at < self.settle_until

    def refused(
        self, now: float, sent_at: float, retry_after: float | None, cooled: float, decided: float | None = None
    ) -> Heard:
        """A 429. ``cooled``: seconds the pair now cools (0: none). Says whether it was news, and a surprise.
        ``decided``: when the request was committed, if before ``sent_at`` (its worker held it)."""
        if self.arrivals is not None:
            self.arrivals.answered(now, sent_at)
        if self.is_echo(sent_at if decided is None else decided):
            return "echo"
        self.episode = now
        self.refusals += 1
        if self.run_start is not None and self.phase == "hold":
            # Refused again before any success: the same spent budget (a window, a box), not news.
            self.between_idle += cooled
            self.run_probed = sent_at
            self.run_said = retry_after is not None
            self.clean_from(now, max(self.clean_since, now + cooled))
            return "echo"
        through = self._sent_through(sent_at)  # requests sent up to this one, for the pace kept until the next
        if self.phase == "hold" and self.told is None and self._noise(now, through, retry_after, cooled):
            return "noise"
        if self.run_start is None:
            self.run_start = sent_at
        heard: Heard = "refusal"
        if self.phase == "open":
            self._first(now, sent_at, retry_after, cooled)
        elif self.phase == "learn":
            self._cycle(now, sent_at, cooled)
        elif self.told is not None:
            if now - self.told_strike < self.reprobe_every:
                self._trim_told()  # refused again within a clean period: the pace is too close for its jitter
            else:
                self.told_strike = now  # one refusal alone is jitter: the told pace holds
            self.clean_from(now, now + cooled)
            self._repace(now, cooled)
        else:
            heard = self._hold_refused(now, sent_at, cooled, through, retry_after or 0.0)
        self.last_refusal_sent = sent_at
        self.between_oks = 0
        self.sends_through = through
        self.between_idle = cooled
        self.cooled_until = now + cooled
        self.between_told = retry_after is not None and retry_after >= self.rules.long_wait
        self.own_window |= self.between_told
        self.said_seconds |= self.between_told
        self.between_said = retry_after is not None
        self.between_proven = False
        self.between_own = heard == "surprise"
        self.held_back = None
        return heard

    def _trim_told(self) -> None:
        assert self.told is not None
        self.rate = max(self.rules.told_floor * self.told, self.rate * self.rules.trim)

    def _first(self, now: float, sent_at: float, retry_after: float | None, cooled: float) -> None:
        """The first refusal: the budget is spent. Estimate at once, or start measuring."""
        r = self.rules
        # Probe gently until the refusal run ends (Retry-After says when; else the backoff finds
        # out), count what was admitted before it (answers still in flight included), and judge.
        self.first_achieved = sum(1 for t in self.recent if t > now - 1.0)
        self.first_oks = self.oks
        self.first_refused = sent_at
        self.first_heard = now
        self.first_told = retry_after is not None
        self.first_run = True
        self.phase, self.recent = "learn", []
        self.rate = r.probe
        self._repace(now, cooled)
        self.stall_at = now + cooled
        self.span_start, self.span_oks, self.span_idle, self.cycles = None, 0, 0.0, 0

    def _cycle(self, now: float, sent_at: float, cooled: float) -> None:
        r = self.rules
        if self.span_start is None:
            # The budget is empty again and nothing sent before it first ran dry is in flight.
            self.span_start, self.span_oks, self.span_idle, self.cycles = sent_at, 0, cooled, 0
            self.stall_at = now + cooled
            return
        self.cycles += 1
        span = sent_at - self.span_start
        if self.cycles >= r.min_cycles and self.span_oks >= r.min_oks and span > 0:
            gain = r.step if self.span_idle < r.idle_share * span else r.start_step
            self._hold(now, self.span_oks / span, self.rate, gain, cooled)
            return
        self.span_idle += cooled
        self.stall_at = now + cooled

    def _hold(self, now: float, estimate: float, upper: float, gain: float, cooled: float, settle: bool = True) -> None:
        """Search from ``estimate`` (a lower bound of the rate, paced at its set point) up to
        ``upper`` (a pace that was refused, or inf): in steps from ``gain``, or by bisection.

        ``settle``: a measurement kept the budget spent on purpose, so what is refused while it refills
        (a time scale) is its echo. Not after a first refusal run that ended unannounced (a window's or
        a box's budget back, found by the backoff): what is refused from then on is news. Taken for
        echoes, a sliding window counter (``rolling``), which admits its rate again from the moment it
        reopens, refused 17 of every 27 requests of a first estimate 2.7 times its rate for 20 s unheard
        (a minute's window without ``Retry-After``: 16 % of 429s over the first 150 s at 4 IPs; 0.75 %
        now). Where a ``Retry-After`` said when, the settling stays: each refusal meanwhile cools the pair
        its second anyway, and heard, their trims and doubt cost the bench's live window counter (16 IPs,
        150 ms) 0.971-0.973 of N·R where it read 0.979-0.987 with the settling."""
        r = self.rules
        self.estimate = estimate
        self.phase = "hold"
        self.lo, self.hi = max(r.min_rate, r.set_point * estimate), upper
        self.lo_proven = False
        self.rate = self.lo
        self._repace(now, cooled)
        self.settle_until = now + cooled + min(self.scale, r.max_scale) if settle else -math.inf
        self.gain = gain
        self.clean_from(now, now + cooled)
        self.converged_at = None

    def _sent_through(self, sent_at: float) -> int:
        """Requests dispatched, ever, up to the one sent at ``sent_at`` (those in flight after it not
        counted: up to :data:`SENT_KEPT` of them)."""
        later, times = 0, self.sent_times
        while later < min(self.sends, SENT_KEPT) and times[(self.sends - 1 - later) % SENT_KEPT] > sent_at:
            later += 1
        return self.sends - later

    def _eps(self) -> float:
        """How close the bracket closes: closer where overshooting is cheap."""
        return self.rules.dear_eps if self.dear else self.rules.eps

    def _dear_reprobe(self) -> float:
        """How long a pace under a box stays converged before the bracket is tested again. A learnt
        one's test past it costs a box, so the longer the box, the rarer the test: at most 1/120 of
        the time boxed (a 30 s box tested every 300 s cost 10 % of the pace). A told pace is never
        tested: this is how long its trimmed pace holds before 98 % is tried again."""
        r = self.rules
        if self.told is not None:
            return r.dear_reprobe
        return max(r.dear_reprobe, r.box_tests * min(self.scale, r.max_scale))

    def _reprobe(self, now: float) -> float:
        """How long a converged pace holds before the bracket is tested again. After a fall (lo under
        ``fallen`` of the highest pace proven) the limit may come back, as a provider's limits do after
        congestion: the test comes every ``fallen_reprobe`` seconds at most, each failed one costing a
        429, until lo is back near the old pace or ``fallen_memory`` has passed (then the fallen pace is
        the limit, and the old one is forgotten). Not under a box (a failed test there costs a box) nor
        a window (whose pace over its rate runs clean until the window is spent: a first estimate met
        late in a window is proven above the rate, and the correction reads as a fall)."""
        r = self.rules
        if self.fell_at is None or self.dear or self.windowed:
            return self.reprobe_every
        if now - self.fell_at > r.fallen_memory or self.lo >= r.fallen * self.peak:
            self.fell_at = None
            self._new_peak(min(self.peak, self.lo / r.fallen))  # a fall not come back is not waited for again
            return self.reprobe_every
        return min(self.reprobe_every, r.fallen_reprobe)

    def _max_reprobe(self) -> float:
        if not self.dear:
            return self.rules.max_reprobe
        return max(self.rules.dear_max_reprobe, 4 * self._dear_reprobe())

    def _hold_refused(self, now: float, sent_at: float, cooled: float, through: int, wait: float) -> Heard:
        """A refusal at a held pace; ``through``: requests sent up to it (see :meth:`_sent_through`);
        ``wait``: its Retry-After (0: none)."""
        r = self.rules
        surprise = self.lo > 0 and self.rate <= self.lo * (1 + 1e-9)
        if surprise and self._noisy(now, cooled):
            return "noise"
        lo_before = self.lo
        self.settled = now - self.stepped_at  # how long the pace had held when refused
        # Between two refusals the budget admitted at most its rate: what we got is a lower bound of
        # it, and the rate itself if the budget stayed spent: the refusals came close together
        # (within two trust periods, no pace proven between) and little of the time between went
        # cooling (or the cooling ended when a Retry-After said the budget was back).
        # Over the whole time between it is a lower bound (raises lo). Where a Retry-After made us cool,
        # over the time not spent cooling it is an upper one, the one to lower lo by: a bucket refills
        # meanwhile, so a rounded-up second after a refusal from arrival jitter would read as a budget
        # that fell by a second's worth; and a long wait for a window to end counts the spent window's
        # tail, so two limits at once (20/s and 600/min: refused mid-window at 20/s, then again at the
        # end of the next window at 10.15/s) read as 6.6/s, not 10 (0.83 of it in virtual time, 1.00 now).
        # Unless this refusal's own wait is long too (``long_wait``, and a fifth or more of the time
        # since the last one's ended: ``dear_share``) and the last one's came at this pace too (a
        # surprise, not a test above it): the same pace boxed again, or a window overshot by a quarter.
        # A box empties the window it guards, and the time since it ended holds that window's whole
        # budget whatever the pace (20/s and a box over 100 in 10 s: 100 in 7 s at 14/s read as 14/s,
        # and the box came back 72 times); over the whole time between, boxes included, it is the lower
        # bound to climb from. A pace 4 % over a minute's window waits 2.5 s of 60 (to the window's
        # end): there the upper one holds. A box a test tripped is the test's: the pace back at lo
        # boxed 3 s after it (arrival jitter) read as 6.4/s of a 20/s box at 64 addresses, not 19.5.
        elapsed = sent_at - self.last_refusal_sent
        settle = False
        measured = fell_to = None
        exact = False
        if self.between_oks >= 5 and elapsed > 0:
            measured = r.set_point * self.between_oks / elapsed
            active = elapsed - self.between_idle  # not spent cooling
            long = wait >= max(r.long_wait, r.dear_share * (wait + active))
            boxed = self.between_told and self.between_own and long  # (see above)
            sending = active if self.between_said and not boxed else elapsed
            if self.held_back is not None and not self.between_own and not self.between_said:
                # A test's box without a word: the pace sent only since the budget came back. Over the time
                # since the test, a pace of 20/s back from a 5 s box and refused 4 s on read as 8.6/s (16 IPs,
                # late timers): the backoff's coolings, short once a box is probed within a fifth of its
                # length, left too little of the box out for the span to be taken as cooling.
                sending = sent_at - self.held_back
            fell_to = r.set_point * self.between_oks / sending if sending > 0 else None
            close = elapsed <= 2 * self.trust() and not self.between_proven
            # ... and only if we sent at the pace meanwhile (cooling aside): a farm short of CPU sends
            # late and less, and what it got then is its own rate, not the budget's.
            sent = through - self.sends_through
            kept = sent >= r.kept * self.rate * active
            exact = close and kept and (self.between_told or self.between_idle < r.idle_share * elapsed)
        if surprise and self._jitter(now, sent_at, wait, cooled, fell_to if exact else None):
            self._repace(now, cooled)
            self.clean_from(now, now + cooled)
            return "surprise"
        if surprise:
            was_jitter, self.tail, self.jittered = self.jittered, False, False  # (see _jitter: not the tail)
            if self.lo_proven:  # what we proved was not so: prove longer (an estimate's miss is not a proof's)
                self.doubt = min(r.max_doubt, 2 * self.doubt)
            self.hi, self.hi_refused = self.rate, True
            # Surprised again as soon as the last one's cooling ended (within a few of the pace's intervals),
            # nothing proven between: the budget refilled meanwhile could not carry the pace for a moment,
            # so the limit fell, and each refusal costs its Retry-After's second. Each cut doubles (2, 4, 8,
            # 16 %...): a halved limit is followed in 6 refusals, not 35 at 2 % and a second apiece.
            self.falling = self.falling + 1 if self._soon(sent_at) else 0
            cut = min(r.max_cut, (1 - r.trim) * 2**self.falling)
            if self.falling and was_jitter:
                cut = 1 - (1 - cut) * r.trim  # the last one, taken for jitter, was the fall's first: its cut too
            self.lo = self.rate * (1 - cut)
            if self.falling:
                self.margin = max(r.margin, self.margin * (1 - cut))  # the same jitter, a longer interval
            if fell_to is not None and exact:
                self.lo = min(self.lo, fell_to)  # the limit fell: to what it is now
                if self.lo == fell_to and self.dear and self.windowed and not self.window_count:
                    # A window met only while paced (a minute's under a second's): search up to what it gave
                    self.hi, self.hi_refused, self.guess_steps = fell_to / r.set_point, False, 0
            if self.converged_at is not None:
                self.reprobe_every = min(self._max_reprobe(), 2 * self.reprobe_every)
                self.margin = min(r.max_margin, 2 * self.margin)  # refused below the bracket: jitter
        else:
            self.hi = min(self.hi, self.rate)
            self.hi_refused = True
            if fell_to is not None and exact and fell_to < self.lo:
                self.lo = fell_to  # the budget stayed spent and gave less: what we proved was not so
            elif measured is not None:
                self.lo = max(self.lo, min(measured, self.hi / (1 + r.eps)))
            eps = self._eps()
            if self.converged_at is None and self.lo > 0 and self.hi <= self.lo * (1 + 2 * eps):
                self.reprobe_every = min(self._max_reprobe(), 2 * self.reprobe_every)  # a test past the bracket failed
                # ... and the bracket stands: back to the pace that held, not to lo. At lo, a limit within
                # arrival jitter of it (a box over a second's log, lo 0.2 % under) boxed again seconds after
                # the test's box: 13 boxes in 7 minutes at 16 IPs. Not under a bucket with depth: the test
                # spent its bank, and lo, which the bank may have carried over the rate, is proven again.
                settle = self.lo == lo_before and self.hi <= self.lo * (1 + eps) and not self.depth
        if self.lo != lo_before:
            self.lo_proven = False
        if self.fell_at is None and self.lo < r.fallen * self.peak:
            self.fell_at = now  # the limit fell: it may come back (see _reprobe)
            if self.noise:
                # ... and what was taken for noise did not keep the pace up: the limit's too (a bucket's bank
                # carried the highest pace proven over its rate). Noise found again goes back only this high.
                self.noise = 0.0
                self._new_peak(self.lo)
        self.rate = max(r.min_rate, self._settled() if settle else self.lo if self.lo > 0 else self.rate * r.backoff)
        self._repace(now, cooled)
        self.gain = r.step
        self.clean_from(now, now + cooled)
        self.converged_at = None  # (proven again there, it is converged again)
        return "surprise" if surprise else "refusal"

    def _new_peak(self, peak: float) -> None:
        """The highest pace proven is now ``peak``: refusals at proven paces are counted against it afresh."""
        self.peak = peak
        self.low_sends = self.low_refused = 0

    def _held_low(self) -> bool:
        """The pace is held (at ``lo`` or under it, not stepping above) under ``fallen`` of the highest proven."""
        return self.lo * (1 + 1e-9) >= self.rate and self.rate < self.rules.fallen * self.peak

    def _noise(self, now: float, through: int, retry_after: float | None, cooled: float) -> bool:
        """A refusal at a held pace within the noise (see :meth:`_noisy`): nothing for the pace. The sends
        since the last refusal are counted to the pace's bin first. A ``Retry-After`` of seconds is never
        noise (a window or a box said when), nor a refusal where the last sends that should hold
        ``noise_window`` of them hold more than ``noise_slack`` times that (+ ``noise_extra``): the pace
        passed a limit too. Its cooling is not the pace's sending time: a step's proof goes on past it."""
        r = self.rules
        if self._held_low():
            self.low_sends += through - self.attributed
        self.attributed = through
        sent = self.noise_sent
        sent.append(through)
        timed = retry_after is not None and retry_after >= r.long_wait
        if self.noise <= 0 or timed:
            return False
        recent = max(through - r.noise_window / self.noise, self.noise_since)
        if sum(1 for t in sent if t > recent) > r.noise_slack * r.noise_window + r.noise_extra or self._regular():
            # More than the noise: the limit's too. Those that made it so are spent on this one: the next is
            # judged afresh (else noise coming on their heels was taken for a fall, cut after cut).
            self.noise_since = through
            return False
        self.between_idle += cooled
        self.fill_at = min(now, self.fill_at + cooled)
        return True

    def _regular(self) -> bool:
        """The last ``noise_intervals`` intervals between refusals (in sends) were regular: a limit's cycle (a
        bucket refilled by each cooling and spent again, a window's resets), not chance's (whose intervals
        deviate as much as their mean: under ``noise_cv`` of it in 1 % of 8 such)."""
        m = self.rules.noise_intervals
        if len(self.noise_sent) <= m:
            return False
        xs = self._intervals()
        mean = sum(xs) / m
        return mean <= 0 or math.sqrt(sum((x - mean) ** 2 for x in xs) / m) < self.rules.noise_cv * mean

    def _thinning(self) -> bool:
        """The refusals thin out: the later half of the last ``noise_intervals`` intervals between them (in
        sends) is ``noise_trend`` times the earlier half or more, as a limit's do while a pace over it comes
        down to it (a bucket's first estimate overstated by its depth), not chance's (in 17 % of such).
        Only to find noise: taken for noise, a refusal is never judged by it."""
        m = self.rules.noise_intervals
        half = m // 2
        if len(self.noise_sent) <= m:
            return False
        xs = self._intervals()
        return sum(xs[half:]) * half >= self.rules.noise_trend * sum(xs[:half]) * (m - half)

    def _intervals(self) -> list[int]:
        """Sends between each of the last ``noise_intervals`` + 1 refusals kept, oldest first (as many are)."""
        sent, m = self.noise_sent, self.rules.noise_intervals
        return [sent[-i] - sent[-i - 1] for i in range(m, 0, -1)]

    def _noisy(self, now: float, cooled: float) -> bool:
        """A surprise (at ``lo`` or under): is the upstream refusing whatever the pace (shedding load)?

        A limit's refusals stop under it: a pace proven after a fall is refused again only by the jitter's
        tail, once in tens of seconds to minutes. An upstream that sheds a share of what it gets (1 %: a 429
        every 5 s at 20/s) refuses every pace alike, and each refusal taken for the limit's cut the pace
        2 % (more, soon after the last): 20/s fell to 10/s in 3 minutes, 0.52 of the rate (0.21 at 3 %)
        where told pacing, which keeps its pace, held 0.81 (with Retry-After: 1 honoured; 0.96 without).
        So: ``noise_min`` surprises at paces held under ``fallen`` of the highest one proven, each at least
        ``noise_spacing`` successes after the last refusal (a fall's come one after the other), at
        ``noise_floor`` to ``noise_max`` of the sends there, and the last refusals' intervals as irregular as
        chance's (:meth:`_regular`: a deep bucket's bank, refilled by each cooling, carries a pace over its
        rate and is refused like clockwork) are noise. Their share is taken for the noise's, the pace goes
        back to the highest proven (:meth:`sheds`), and from then on a refusal within the noise is nothing
        for the pace (:meth:`_noise`). Dropped if the pace falls that far again. Where the caller judges it
        (``defer_noise``: a pair whose refusals may be other IPs spending a budget it shares, which look the
        same from one IP), the finding is left in ``noise_found`` and the refusal taken as usual."""
        r = self.rules
        if not self._held_low() or self.between_oks < r.noise_spacing or self.said_seconds:
            # (a fall's refusals come one soon after the other: not counted; nor where a Retry-After said the
            # limit remembers seconds: a window's or a box's cycles, stacked with a second's limit, are as
            # irregular as chance's)
            return False
        self.low_refused += 1
        n, sends = self.low_refused, self.low_sends
        if self.noise or n < r.noise_min or sends <= 0 or not r.noise_floor <= n / sends <= r.noise_max:
            return False
        if len(self.noise_sent) <= r.noise_intervals or self._regular() or self._thinning():
            return False
        if self.defer_noise:
            self.noise_found = n / sends  # (this refusal is taken as usual meanwhile)
            return False
        self.between_idle += cooled
        self.sheds(now, n / sends, cooled)
        return True

    def sheds(self, now: float, share: float, cooled: float = 0.0) -> None:
        """The upstream refuses ``share`` of requests whatever the pace (see :meth:`_noisy`): the pace goes
        back to the highest proven, and from now on a refusal within that share is nothing for it."""
        r = self.rules
        self.noise = max(self.noise, share)
        if self.phase != "hold" or self.told is not None or self.peak <= 0:
            return
        self.lo = self.rate = max(self.lo, self.peak)
        self.hi, self.hi_refused, self.gain = math.inf, True, r.step
        self.fell_at, self.falling, self.doubt = None, 0, 1.0
        self.margin, self.jittered, self.converged_at = r.margin, False, None
        self.clean_from(now, now + cooled)
        self._repace(now, cooled)

    def _not_jitter(self, now: float) -> None:
        """The run the last surprise opened, taken for the jitter's tail, lasted seconds: a window's fill
        (without a word, or with a ``Retry-After`` that said a second). The old rule's bracket is set now:
        the refused pace is its top, ``lo`` 2 % under it, and the margin step is taken back."""
        r = self.rules
        refused = self.jitter_rate
        self.jittered = self.tail = False
        self.margin = max(r.margin, self.margin - r.jitter_step)
        self.hi, self.hi_refused = refused, True
        self.lo = min(self.lo, refused * r.trim)
        self.lo_proven = False
        self.rate = max(r.min_rate, self.lo)
        self.converged_at = None
        self.gain = r.step
        self._repace(now)

    def _relieved(self, now: float) -> bool:
        """A jittered pace clean for its relief period: its margin may shrink (not once the limit was found
        to remember seconds: a window, a box, whose refusals are not the jitter's)."""
        calm = self.jittered and not (self.windowed or self.dear)
        return calm and now - self.relieved_at >= self.relief_every and self.margin > self.rules.margin

    def _soon(self, sent_at: float) -> bool:
        """Surprised again as soon as the last surprise's cooling ended (within a few of the pace's
        intervals), nothing proven between: the limit fell (see :meth:`_hold_refused`)."""
        r = self.rules
        return (
            self.between_own
            and self.between_said
            and not self.between_proven
            and sent_at - self.cooled_until <= r.soon_sends / self.rate
        )

    def _jitter(self, now: float, sent_at: float, wait: float, cooled: float, fell_to: float | None) -> bool:
        """A surprise that is the jitter's tail: the margin grows, lo and hi stand. Said so. ``wait``: its
        Retry-After (0: none); one of ``long_wait`` or more says the limit remembers seconds."""
        r = self.rules
        if self.windowed or self.dear or wait >= r.long_wait or self.margin >= r.jitter_margin:
            return False
        if not self.jittered and (self.converged_at is None or now - self.converged_at < r.jitter_after):
            return False
        if self._soon(sent_at) or (fell_to is not None and fell_to < r.jitter_fell * self.rate):
            return False
        quick = now - self.jitter_at < self.relief_every  # before the margin shrank: more often than jitter
        if quick and self.jitter_quick >= r.jitter_quick:
            return False
        self.jitter_quick = self.jitter_quick + 1 if quick else 0
        # A tail alone, for the shared-budget watch: 20 s clean before it (see PaceBook._heard)
        calm = self.jitter_at if self.converged_at is None else max(self.converged_at, self.jitter_at)
        self.tail = now - calm >= r.jitter_after
        self.jittered, self.jitter_at, self.jitter_rate = True, now, self.rate
        self.falling = 0
        self.margin = min(r.jitter_margin, self.margin + r.jitter_step)
        self.rate = max(r.min_rate, self._settled())
        self.relieved_at = now
        self.relief_every = max(r.jitter_clean, r.jitter_costs * cooled)
        if self.converged_at is None:
            self.converged_at = now
        return True
