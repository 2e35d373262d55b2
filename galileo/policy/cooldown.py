"""Cooldowns per (IP, upstream), never per IP alone: Jupiter rate-limiting 127.0.0.3 says
nothing about Jito on 127.0.0.3, or Jupiter on 127.0.0.4.

A rate limit (429) starts at 500 ms and a timeout at 250 ms; each consecutive one doubles
the ceiling (capped), with full jitter so IPs limited together do not retry together, and
never less than the starting value. Connection errors and 5xx cool an IP only when they
repeat (3 in a row), since one reset is noise; so do answers that are not HTTP at all
(``protocol_error``: a broken peer, or a middlebox on this IP's path). A bind error suspends
the IP for every upstream until a rescan finds the address bindable again. Every success takes one step off
the streak.

A 429's ceiling is also never more than a fifth of the time since its streak's first 429
(``RUN_SHARE``), or 1 s if that is longer (the first one's ceiling), so a run of refusals that says
nothing of its end (a penalty box, a spent window, without ``Retry-After``) is found over within a
fifth of its length, not up to 30 s late. Pacing reads its time scale from that run: a 10 s box
found 16 s in read as a rate 40 % low, and each step of the search then ran clean 16 s before it
counted. In virtual time (4 IPs, 50 ms, tests/policy/limitsim.py) a 10 s box without
``Retry-After`` read 0.69 of N·R over 150-300 s with 1.5 % of 429s, 0.90 and 1.2 % with this (and
round 50's pacing rules); a 30 s box over 420-600 s 0.76 and 0.94; a minute's sliding window 0.96
and 0.99.

Two things change a 429's cooldown. A ``Retry-After`` is honoured exactly: the upstream said
when, so the pair cools that long, neither jittered nor doubled (so does a 503's, from the first
one: how long the service expects to be unavailable, RFC 9110). And a *paced* pair (its
pacer has met the limit and paces it) takes its first 429 in a row as news for the pacer,
not as a reason to stop: on a bucket of two tokens a 500 ms pause would throw away ten
tokens' worth of refill. Only refusal after refusal (a spent window, a penalty box, a ban)
cools it, starting at 500 ms as any other.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

__all__ = ["DEFAULT_RULES", "Cooldown", "CooldownBook", "CooldownRule"]

RUN_SHARE = 0.2  # a 429's ceiling: at most this share of the time since its streak began (see above)


@dataclass(frozen=True)
class CooldownRule:
    """How one kind of failure cools an (IP, upstream) pair."""

    start: float  # seconds, the first cooldown's floor
    cap: float  # seconds, the ceiling never grows past this
    threshold: int = 1  # consecutive failures before the first cooldown
    run_share: float = math.inf  # ... nor past this share of the time since the streak's first failure
    run_floor: float = 1.0  # ... or past this many seconds, whichever is longer


DEFAULT_RULES: dict[str, CooldownRule] = {
    "rate_limited": CooldownRule(start=0.5, cap=30.0, run_share=RUN_SHARE),
    "timeout": CooldownRule(start=0.25, cap=10.0),
    "network_error": CooldownRule(start=1.0, cap=30.0, threshold=3),
    "server_error": CooldownRule(start=1.0, cap=30.0, threshold=3),
}


@dataclass
class Cooldown:
    """The state of one (IP, upstream) pair."""

    until: float = 0.0
    started: float = float("-inf")  # when the running (or last) cooldown began
    reason: str = ""
    streaks: dict[str, int] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)  # when each streak's first failure came
    last_duration: float = 0.0


def reason_of(result: str, status: int) -> str | None:
    """The cooldown reason an outcome maps to, or None when it says nothing about the IP."""
    if result in ("rate_limited", "timeout", "network_error"):
        return result
    if (result == "http_error" and status >= 500) or result == "protocol_error":
        return "server_error"  # an answer that is not HTTP at all: the peer (or a box on the way) is broken
    return None  # ok, 4xx (the request's fault), decode errors, coordinator-side results


class CooldownBook:
    """Every (IP, upstream) pair's cooldown, plus suspended IPs."""

    def __init__(self, rules: dict[str, CooldownRule] | None = None, rng: random.Random | None = None) -> None:
        self.rules = rules or DEFAULT_RULES
        self.rng = rng or random.Random()
        self._state: dict[tuple[str, str], Cooldown] = {}
        self.suspended: dict[str, str] = {}  # ip -> why

    def get(self, ip: str, upstream: str) -> Cooldown:
        return self._state.setdefault((ip, upstream), Cooldown())

    def cooling_until(self, ip: str, upstream: str, now: float) -> float | None:
        """When the pair may take jobs again, or None if it may now."""
        if ip in self.suspended:
            return float("inf")
        cd = self._state.get((ip, upstream))
        if cd is not None and cd.until > now:
            return cd.until
        return None

    def record(
        self,
        ip: str,
        upstream: str,
        result: str,
        status: int,
        retry_after: float | None,
        now: float,
        sent_at: float | None = None,
        *,
        paced: bool = False,
    ) -> tuple[str, float] | None:
        """Learn from one outcome. Returns (reason, seconds) when a cooldown starts or extends.

        ``sent_at`` is when the job was dispatched: a failure of a job sent before the current
        cooldown began is an echo of what started it, not news, so it does not escalate.
        ``paced``: the pair's pacer paces it, so a first 429 in a row does not cool it.
        """
        if result == "bind_error":
            self.suspended[ip] = "bind_error"
            return ("bind_error", float("inf"))
        cd = self.get(ip, upstream)
        reason = reason_of(result, status)
        if reason is None:
            if result == "ok":
                for k in list(cd.streaks):
                    cd.streaks[k] -= 1
                    if cd.streaks[k] <= 0:
                        del cd.streaks[k]
                        cd.since.pop(k, None)
            return None
        rule = self.rules[reason]
        if sent_at is not None and sent_at < cd.started and cd.reason == reason:
            return None  # in flight when this cooldown started: already accounted for
        streak = cd.streaks.get(reason, 0) + 1
        cd.streaks[reason] = streak
        since = cd.since.setdefault(reason, now)
        threshold = rule.threshold + (paced and reason == "rate_limited")
        if retry_after is not None and reason in ("rate_limited", "server_error"):
            duration = retry_after  # the upstream said when (a 429's, or a 503's): exactly that
        elif streak < threshold:
            return None
        else:
            n = streak - threshold  # 0 for the first cooldown
            ceiling = min(rule.cap, rule.start * 2 ** (n + 1))
            if rule.run_share < math.inf:
                ceiling = min(ceiling, max(rule.run_floor, rule.run_share * (now - since)))
            duration = max(rule.start, self.rng.uniform(0.0, ceiling))
            if retry_after is not None:
                duration = max(duration, retry_after)
        until = now + duration
        if until > cd.until:  # never shorten a running cooldown
            cd.until = until
            cd.started = now
            cd.reason = reason
            cd.last_duration = duration
        return (reason, duration)

    def unsuspend(self, ip: str) -> bool:
        return self.suspended.pop(ip, None) is not None

    def forget(self, ip: str) -> None:
        """Drop all state of an IP that left the pool."""
        for key in [k for k in self._state if k[0] == ip]:
            del self._state[key]

    def active(self, now: float) -> dict[tuple[str, str], Cooldown]:
        return {k: v for k, v in self._state.items() if v.until > now}
