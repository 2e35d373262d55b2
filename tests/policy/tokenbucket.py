"""A deterministic model of one (IP, upstream) pair under saturated demand, for pacing tests.

The upstream is a token bucket (rate R, burst B) answering 429 with ``Retry-After`` =
ceil(seconds to the next token), like ``galileo sim``; the client side is the real
``CooldownBook`` and ``Pacer``. Time is simulated: the test runs in milliseconds.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from galileo.policy.cooldown import CooldownBook
from galileo.policy.pacing import PaceBook


@dataclass
class Run:
    ok_ratio: float  # successes per second after warm-up, divided by R
    share_429: float  # 429s among responses after warm-up


class _Bucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.t = rate, burst, burst, 0.0

    def take(self, now: float) -> tuple[bool, float | None]:
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True, None
        return False, float(max(1, math.ceil((1 - self.tokens) / self.rate)))


def simulate(
    rate: float,
    burst: float,
    *,
    known: float | None = None,
    seconds: float = 20.0,
    warmup: float = 5.0,
    latency: float = 0.003,
    seed: int = 1,
    cap: int = 64,
    queueing: float = 0.0,
) -> Run:
    rng = random.Random(seed)
    server = _Bucket(rate, burst)
    cooldowns = CooldownBook(rng=random.Random(seed))
    pacing = PaceBook({"u": known} if known else None)
    now = 0.0
    ok = n429 = total = 0
    inflight: list[tuple[float, str, float | None, float]] = []
    while now < seconds:
        inflight.sort()
        while inflight and inflight[0][0] <= now:
            t, result, retry_after, sent = inflight.pop(0)
            pacing.record("ip", "u", result, t, sent)
            cooldowns.record("ip", "u", result, 429 if result == "rate_limited" else 200, retry_after, t, sent)
            if t >= warmup:
                total += 1
                ok += result == "ok"
                n429 += result == "rate_limited"
        pacer = pacing.get("ip", "u", now)
        cool = cooldowns.cooling_until("ip", "u", now)
        pace = pacer.next_at(now)
        if pace == float("inf"):  # at its concurrency cap: the next answer frees a slot
            pace = inflight[0][0] if inflight else now + 0.0005
        if cool is None and pace is None and len(inflight) < cap:
            pacer.dispatched(now)
            # A busy server answers later the more requests it holds (``queueing`` s per request).
            arrive = now + latency * rng.uniform(0.25, 0.75) + queueing * len(inflight)
            good, retry_after = server.take(arrive)
            inflight.append((arrive + latency / 2, "ok" if good else "rate_limited", retry_after, now))
            continue
        if pace is not None:
            pacer.blocked(now)
        wake = [now + 0.0005]
        if inflight:
            wake.append(inflight[0][0])
        if cool is not None and pace is not None:
            wake.append(max(cool, pace))
        elif cool is not None:
            wake.append(cool)
        elif pace is not None:
            wake.append(pace)
        now = max(now + 1e-6, min(wake))
    return Run(ok / (seconds - warmup) / rate, n429 / max(1, total))
