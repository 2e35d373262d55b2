"""The limiter zoo: token bucket, fixed window, sliding log, sliding window counter, penalty box,
concurrency cap, queue and load shedding.

Pure policy with an injected clock: ``admit(key, now)`` answers a ``Decision`` and
``release(key, now)`` ends a request that was admitted. The simulator keys each limiter by its
scope (source IP, IP and Jito region, API key, or one global key); unit tests and the farm's
pacing tests pass any hashable key and a fake clock.

    spec = parse_limiter("sliding:50/10s,scope=key")
    limiter = build(spec)
    decision = limiter.admit("my-key", now=12.5)   # Decision(ok, retry_after, reason, wait)
    ...
    limiter.release("my-key", now=12.7)             # after the answer (frees a concurrency slot)

Memory stays bounded whatever the callers do: a key whose state is back to "fresh" (a full
bucket, a past window, an empty log, nothing in flight) is dropped on the next sweep, sweeps
run when the table doubles, and past ``max_keys`` the oldest keys lose their state (counted in
``evicted``). Time boundaries are exact to 1e-9 s, so ``now`` values like 0.1 + 0.2 land on the
boundary they mean.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from galileo.sim.limitspec import SCOPES, SHAPES, LimiterSpec, Scope, Shape, parse_limiter, parse_limiters

__all__ = [
    "SCOPES",
    "SHAPES",
    "ConcurrencyCap",
    "Decision",
    "FixedWindow",
    "IpOverride",
    "Limiter",
    "LimiterSpec",
    "PenaltyBox",
    "Queue",
    "Reason",
    "RollingWindow",
    "Scope",
    "Shape",
    "Shed",
    "SlidingLog",
    "TokenBucket",
    "build",
    "parse_limiter",
    "parse_limiters",
    "refusal_header",
    "retry_after_header",
]

Reason = Literal["ok", "limit", "penalty", "boxed", "concurrency", "shed"]
"""Why a request was answered so: admitted, over the limit, the request that entered a penalty
box, refused inside a box, over the concurrency cap, or shed at random."""

EPS = 1e-9  # clock values are sums of floats: 0.1 + 0.2 must count as 0.3
MAX_KEYS = 100_000
LOG_ENTRIES_BUDGET = 2_000_000  # sliding logs keep one float per admitted request in the window
SHED_SEED = 0x5EED  # fixed, so a run of the simulator (and a virtual-time test) sheds the same requests
_FIRST_SWEEP = 1024


class Decision(NamedTuple):
    """A limiter's answer: ``ok``; else seconds until a retry could pass and why it was refused.

    ``retry_after`` is exact (not rounded): until the next token, the window's end, the oldest
    logged request leaving the window, the box opening, or a queue's line short enough. A
    concurrency refusal has 0: a slot frees when a request in flight completes, which no clock
    can tell. A shed refusal has 1: the next request is as likely to pass whenever it comes.
    ``wait``: seconds an admitted request waits in a queue's line before it is served.
    """

    ok: bool
    retry_after: float
    reason: Reason
    wait: float = 0.0


ADMIT = Decision(True, 0.0, "ok")


def retry_after_header(decision: Decision) -> str:
    """The ``Retry-After`` value a service sends: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(decision.retry_after - EPS)))


def refusal_header(spec: LimiterSpec, decision: Decision) -> tuple[str, str] | None:
    """The header a refusal under ``spec`` carries, (name, value), or None (``retry_after=no``): when
    it says the budget comes back, in ``Retry-After`` or ``RateLimit-Reset`` (``retry_after=reset``),
    or one second whatever it holds (``retry_after=one``)."""
    if not spec.retry_after:
        return None
    name = "RateLimit-Reset" if spec.reset_header else "Retry-After"
    return name, "1" if spec.says_one else retry_after_header(decision)


class Limiter:
    """The shared frame: per-key state in a dict, swept when it doubles, capped at ``max_keys``."""

    __slots__ = ("_next_sweep", "_states", "evicted", "max_keys", "spec")

    def __init__(self, spec: LimiterSpec, max_keys: int = MAX_KEYS) -> None:
        self.spec = spec
        self.max_keys = max(1, max_keys)
        self.evicted = 0
        self._states: dict[Hashable, object] = {}
        self._next_sweep = min(_FIRST_SWEEP, self.max_keys)

    def admit(self, key: Hashable, now: float) -> Decision:
        """Admit one request of ``key`` at ``now`` or refuse it."""
        raise NotImplementedError

    def release(self, key: Hashable, now: float) -> None:
        """An admitted request of ``key`` finished (answered, failed or abandoned by the client)."""

    def __len__(self) -> int:
        """Keys with state held right now."""
        return len(self._states)

    def _idle(self, state: object, now: float) -> bool:
        """Whether ``state`` behaves exactly like a key never seen (so it may be forgotten)."""
        raise NotImplementedError

    def sweep(self, now: float) -> int:
        """Forget every idle key; how many were dropped."""
        idle = [k for k, s in self._states.items() if self._idle(s, now)]
        for k in idle:
            del self._states[k]
        return len(idle)

    def _remember(self, key: Hashable, state: object, now: float) -> None:
        if len(self._states) >= self._next_sweep:
            self.sweep(now)
            while len(self._states) >= self.max_keys:
                del self._states[next(iter(self._states))]  # the oldest key: dicts keep insertion order
                self.evicted += 1
            self._next_sweep = min(self.max_keys, max(_FIRST_SWEEP, 2 * len(self._states)))
        self._states[key] = state


class _Bucket:
    __slots__ = ("last", "tokens")

    def __init__(self, tokens: float, last: float) -> None:
        self.tokens = tokens
        self.last = last


class TokenBucket(Limiter):
    """``capacity`` tokens (``max(1, rate * burst)``), refilled at ``rate`` per second, starting full.

    At most ``capacity + rate * t`` requests pass in any ``t`` seconds.
    """

    __slots__ = ("capacity", "rate")

    def __init__(self, spec: LimiterSpec, max_keys: int = MAX_KEYS) -> None:
        super().__init__(spec, max_keys)
        self.rate = spec.rate
        self.capacity = spec.capacity

    def admit(self, key: Hashable, now: float) -> Decision:
        b = self._states.get(key)
        if b is None:
            b = _Bucket(self.capacity, now)
            self._remember(key, b, now)
        assert isinstance(b, _Bucket)
        if now > b.last:
            b.tokens = min(self.capacity, b.tokens + (now - b.last) * self.rate)
            b.last = now
        if b.tokens >= 1.0 - EPS:
            b.tokens -= 1.0
            return ADMIT
        return Decision(False, (1.0 - b.tokens) / self.rate, "limit")

    def _idle(self, state: object, now: float) -> bool:
        assert isinstance(state, _Bucket)
        return state.tokens + (now - state.last) * self.rate >= self.capacity - EPS


class _Window:
    __slots__ = ("count", "index", "last")

    def __init__(self, index: int) -> None:
        self.index = index
        self.count = 0  # admitted in window ``index``
        self.last = 0  # admitted in window ``index - 1`` (the window counter weighs it)


class FixedWindow(Limiter):
    """At most ``limit`` requests per window; windows are ``[k*W, (k+1)*W)`` on the clock given."""

    __slots__ = ("limit", "window")

    def __init__(self, spec: LimiterSpec, max_keys: int = MAX_KEYS) -> None:
        super().__init__(spec, max_keys)
        self.limit = int(spec.limit)
        self.window = spec.window

    def _window_of(self, key: Hashable, now: float) -> tuple[_Window, int]:
        """``key``'s counts, moved on to the window ``now`` is in, and that window's index."""
        index = math.floor((now + EPS) / self.window)
        w = self._states.get(key)
        if w is None:
            w = _Window(index)
            self._remember(key, w, now)
        assert isinstance(w, _Window)
        if w.index != index:
            w.last = w.count if w.index == index - 1 else 0
            w.index, w.count = index, 0
        return w, index

    def admit(self, key: Hashable, now: float) -> Decision:
        w, index = self._window_of(key, now)
        if w.count < self.limit:
            w.count += 1
            return ADMIT
        return Decision(False, max(0.0, (index + 1) * self.window - now), "limit")

    def _idle(self, state: object, now: float) -> bool:
        assert isinstance(state, _Window)
        return state.index < math.floor((now + EPS) / self.window)


class RollingWindow(FixedWindow):
    """The sliding window counter (as Cloudflare, Kong and many Redis recipes count): windows are
    ``[k*W, (k+1)*W)``, and a request passes when this window's count plus the last window's,
    weighted by the share of the last window still inside ``(now - W, now]``, is below ``limit``.
    Two counters per caller instead of a log; a burst at a window's end is still refused well
    into the next window, and a steady pace at the rate is refused now and then."""

    __slots__ = ()

    def admit(self, key: Hashable, now: float) -> Decision:
        c, index = self._window_of(key, now)
        start = index * self.window
        room = self.limit - c.count  # what the last window's weighted count must stay under
        if room > 0 and c.last * (1.0 - min(1.0, (now - start) / self.window)) < room:
            c.count += 1
            return ADMIT
        if room > 0:  # later in this window, once enough of the last one has slid out
            wait = start + self.window * (1.0 - room / c.last) - now
        else:  # in the next one, once enough of this one has
            wait = start + self.window * (2.0 - self.limit / c.count) - now
        return Decision(False, max(0.0, wait), "limit")

    def _idle(self, state: object, now: float) -> bool:
        assert isinstance(state, _Window)
        index = math.floor((now + EPS) / self.window)
        return state.index < index - 1 or (state.index < index and state.count == 0)


class _Log:
    """The times of the last ``limit`` admitted requests, in a ring (oldest at ``head`` once full)."""

    __slots__ = ("box_until", "head", "times")

    def __init__(self) -> None:
        self.times = array("d")
        self.head = 0
        self.box_until = -math.inf

    def newest(self) -> float:
        return self.times[self.head - 1] if self.times else -math.inf  # head is 0 until the ring is full


class SlidingLog(Limiter):
    """At most ``limit`` requests in any ``window`` seconds: a request passes when fewer than
    ``limit`` admitted requests lie in ``(now - window, now]``."""

    __slots__ = ("limit", "window")

    def __init__(self, spec: LimiterSpec, max_keys: int = MAX_KEYS) -> None:
        super().__init__(spec, min(max_keys, max(64, LOG_ENTRIES_BUDGET // max(1, int(spec.limit)))))
        self.limit = int(spec.limit)
        self.window = spec.window

    def _log_of(self, key: Hashable, now: float) -> _Log:
        log = self._states.get(key)
        if log is None:
            log = _Log()
            self._remember(key, log, now)
        assert isinstance(log, _Log)
        return log

    def _try(self, log: _Log, now: float) -> float:
        """Log ``now`` and answer 0 if the window has room, else seconds until it has."""
        times = log.times
        if len(times) < self.limit:
            times.append(now)
            return 0.0
        oldest = times[log.head]
        if oldest + self.window <= now + EPS:
            times[log.head] = now
            log.head = (log.head + 1) % self.limit
            return 0.0
        return oldest + self.window - now

    def admit(self, key: Hashable, now: float) -> Decision:
        wait = self._try(self._log_of(key, now), now)
        return ADMIT if wait == 0.0 else Decision(False, wait, "limit")

    def _idle(self, state: object, now: float) -> bool:
        assert isinstance(state, _Log)
        return state.box_until <= now + EPS and state.newest() + self.window <= now + EPS


class PenaltyBox(SlidingLog):
    """A sliding log whose first refusal boxes the caller for ``box`` seconds.

    Inside the box every request is refused (it does not lengthen the box). Entering the box
    clears the log, so the caller leaves it with a fresh ``limit`` per ``window``.
    """

    __slots__ = ("box",)

    def __init__(self, spec: LimiterSpec, max_keys: int = MAX_KEYS) -> None:
        super().__init__(spec, max_keys)
        self.box = spec.box

    def admit(self, key: Hashable, now: float) -> Decision:
        log = self._log_of(key, now)
        if now + EPS < log.box_until:
            return Decision(False, log.box_until - now, "boxed")
        if self._try(log, now) == 0.0:
            return ADMIT
        log.box_until = now + self.box
        log.times = array("d")
        log.head = 0
        return Decision(False, self.box, "penalty")


class ConcurrencyCap(Limiter):
    """At most ``limit`` requests of one key in flight: admitted until released.

    A key with nothing in flight holds no state, so memory follows the requests in flight.
    """

    __slots__ = ("limit",)

    def __init__(self, spec: LimiterSpec, max_keys: int = MAX_KEYS) -> None:
        super().__init__(spec, max_keys)
        self.limit = int(spec.limit)

    def admit(self, key: Hashable, now: float) -> Decision:
        inflight = self._states
        n = inflight.get(key, 0)
        assert isinstance(n, int)
        if n >= self.limit:
            return Decision(False, 0.0, "concurrency")
        inflight[key] = n + 1
        return ADMIT

    def release(self, key: Hashable, now: float) -> None:
        n = self._states.get(key)
        if not isinstance(n, int):
            return  # never admitted here (or released twice): nothing to give back
        if n <= 1:
            del self._states[key]
        else:
            self._states[key] = n - 1

    def in_flight(self, key: Hashable) -> int:
        """Requests of ``key`` admitted and not yet released."""
        n = self._states.get(key, 0)
        assert isinstance(n, int)
        return n

    def _idle(self, state: object, now: float) -> bool:
        return state == 0


class _Line:
    __slots__ = ("free",)

    def __init__(self, free: float) -> None:
        self.free = free  # when the next request may leave the line


class Queue(Limiter):
    """Requests leave in line at ``rate``: each waits for its turn (one every ``1 / rate`` seconds, the
    first at once), and one that would wait more than ``burst`` seconds is refused (nginx's
    ``limit_req`` with a ``burst`` of ``rate * burst`` and no ``nodelay``). Only the rate is ever
    refused: a caller that sends faster waits longer, up to ``burst``, then hears 429s.
    """

    __slots__ = ("burst", "rate")

    def __init__(self, spec: LimiterSpec, max_keys: int = MAX_KEYS) -> None:
        super().__init__(spec, max_keys)
        self.rate = spec.rate
        self.burst = spec.burst

    def admit(self, key: Hashable, now: float) -> Decision:
        line = self._states.get(key)
        if line is None:
            line = _Line(now)
            self._remember(key, line, now)
        assert isinstance(line, _Line)
        wait = max(0.0, line.free - now)
        if wait > self.burst + EPS:
            return Decision(False, wait - self.burst, "limit")
        line.free = now + wait + 1.0 / self.rate
        return ADMIT if wait <= EPS else Decision(True, 0.0, "ok", wait)

    def _idle(self, state: object, now: float) -> bool:
        assert isinstance(state, _Line)
        return state.free <= now + EPS


class Shed(Limiter):
    """Refuses a share ``limit`` of requests at random, whatever their rate or key: an overloaded
    upstream's sporadic 429s. No per-key state, so its draws follow the order requests arrive in,
    from a fixed seed."""

    __slots__ = ("_random", "share")

    def __init__(self, spec: LimiterSpec, max_keys: int = MAX_KEYS) -> None:
        super().__init__(spec, max_keys)
        self.share = spec.limit
        self._random = random.Random(SHED_SEED)

    def admit(self, key: Hashable, now: float) -> Decision:
        return Decision(False, 1.0, "shed") if self._random.random() < self.share else ADMIT

    def _idle(self, state: object, now: float) -> bool:
        return True


_SHAPES: dict[str, type[Limiter]] = {
    "bucket": TokenBucket,
    "fixed": FixedWindow,
    "sliding": SlidingLog,
    "rolling": RollingWindow,
    "penalty": PenaltyBox,
    "concurrency": ConcurrencyCap,
    "queue": Queue,
    "shed": Shed,
}


def build(spec: LimiterSpec | str, max_keys: int = MAX_KEYS) -> Limiter:
    """A fresh limiter of ``spec`` (a LimiterSpec or its text, parsed with parse_limiter)."""
    if isinstance(spec, str):
        spec = parse_limiter(spec)
    return _SHAPES[spec.shape](spec, max_keys)


@dataclass(frozen=True)
class IpOverride:
    """A forced answer for one source IP: ``status`` with ``Retry-After: retry_after``.

    ``services`` limits it to some service names (``jupiter``, ``jito``, ``rpc`` ...); None = all.
    """

    status: int = 429
    retry_after: int = 1
    services: frozenset[str] | None = None

    def applies(self, service: str) -> bool:
        """Whether this override answers requests to ``service``."""
        return self.services is None or service in self.services
