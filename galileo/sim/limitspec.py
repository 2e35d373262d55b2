"""Limiter specs: the text a person writes (``sliding:50/10s,scope=key``) and the value it means.

    bucket:RATE[/PERIOD][,burst=S]   RATE tokens per PERIOD (default 1s); capacity S seconds of
                                     rate (default 1), at least one token
    fixed:N/W                        N requests per window of W, windows reset on multiples of W
    sliding:N/W                      at most N requests in any W
    rolling:N/W                      under N: this window's count plus the last window's, weighted by
                                     the share of it still in the last W (sliding window counter)
    penalty:N/W,box=P                over N in any W puts the caller in a box for P: all refused
    concurrency:K                    at most K requests in flight
    queue:RATE[/PERIOD][,burst=S]    requests leave in line, RATE per PERIOD: each waits for its turn,
                                     and one that would wait more than S seconds (default 1) is
                                     refused (nginx's limit_req with a burst and no nodelay)
    shed:P                           refuses a share P (0 < P < 1) of what the other limits admit, at
                                     random, whatever the rate (an overloaded upstream's sporadic 429s)

Every shape takes ``scope=ip|ip+region|key|global``, ``retry_after=yes|no|reset|one`` (``reset``:
the refusal says when in ``RateLimit-Reset``, as many proxies do, not in ``Retry-After``; ``one``: it
says ``Retry-After: 1`` whatever the limit, as many gateways do, which a window or a box belies) and
``refuse=delayed|at_once`` (``at_once``: the limit is a gateway's in front of the upstream, and its
refusals come back without the route's latency; by default a refusal waits it out as an answer does). Durations are
seconds, with an optional unit: ``10``, ``10s``, ``500ms``, ``1m``.

Limits stack with ``&``, as APIs with a per-second and a per-minute quota, or a per-IP rate under
a per-key one, do: ``bucket:20/1s & fixed:600/60s`` admits a request only if every limit does,
each with its own scope, and a request one limit refuses still spends what the ones before it
admitted (:func:`parse_limiters`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["SCOPES", "SHAPES", "LimiterSpec", "Scope", "Shape", "default_scope", "parse_limiter", "parse_limiters"]

Shape = Literal["bucket", "fixed", "sliding", "rolling", "penalty", "concurrency", "queue", "shed"]
Scope = Literal["ip", "ip+region", "key", "global"]
SHAPES: tuple[Shape, ...] = get_args(Shape)
SCOPES: tuple[Scope, ...] = get_args(Scope)

MAX_LOGGED = 100_000  # sliding and penalty keep one float per request in the window
MAX_COUNT = 1_000_000_000
MAX_WINDOW = 3600.0
MAX_BOX = 86_400.0
MAX_STACK = 4  # limits stacked with & on one target
_YES = {"yes": True, "true": True, "1": True, "on": True, "no": False, "false": False, "0": False, "off": False}


@dataclass(frozen=True)
class LimiterSpec:
    """One limiter shape with its numbers, who shares a budget (``scope``) and whether refusals
    carry ``Retry-After``.

    ``limit``: tokens per ``window`` (bucket), requests per ``window`` (fixed, sliding, rolling,
    penalty, queue), requests in flight (concurrency) or the share refused (shed). ``burst``: bucket
    capacity in seconds of rate, or the longest wait in a queue. ``box``: seconds in the penalty box.
    """

    shape: Shape
    limit: float
    window: float = 1.0
    burst: float = 1.0
    box: float = 0.0
    scope: Scope = "ip"
    retry_after: bool = True
    reset_header: bool = False  # says when in RateLimit-Reset instead of Retry-After (retry_after=reset)
    says_one: bool = False  # says Retry-After: 1 whatever the limit (retry_after=one)
    at_once: bool = False  # refusals come back without the route's latency (refuse=at_once)

    @property
    def rate(self) -> float:
        """Sustained requests per second: ``limit / window`` (a concurrency cap or a shed has none: inf)."""
        return math.inf if self.shape in ("concurrency", "shed") else self.limit / self.window

    @property
    def capacity(self) -> float:
        """Token bucket size: ``max(1, rate * burst)``."""
        return max(1.0, self.rate * self.burst)

    def __str__(self) -> str:
        if self.shape in ("concurrency", "shed"):
            text = f"{self.shape}:{self.limit:g}"
        else:
            text = f"{self.shape}:{self.limit:g}/{self.window:g}s"
        if self.shape in ("bucket", "queue"):
            text += f",burst={self.burst:g}s"
        if self.shape == "penalty":
            text += f",box={self.box:g}s"
        text += f",scope={self.scope}"
        if self.at_once:
            text += ",refuse=at_once"
        if self.reset_header:
            return text + ",retry_after=reset"
        if self.says_one:
            return text + ",retry_after=one"
        return text if self.retry_after else text + ",retry_after=no"


def default_scope(target: str | None) -> Scope:
    """Jito limits each (IP, region) pair (its documented 5 req/s per IP per region); others per IP."""
    return "ip+region" if target is not None and target.partition(":")[0] == "jito" else "ip"


def _seconds(text: str, what: str) -> float:
    text = text.strip()
    scale = 1.0
    for unit, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit):
            text, scale = text[: -len(unit)], factor
            break
    try:
        value = float(text) * scale
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a duration (e.g. 10s, 500ms, 1m)") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{what}: must be a positive duration, got {value:g}")
    return value


def _count(text: str, what: str, most: int = MAX_COUNT) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a whole number") from None
    if not 1 <= value <= most:
        raise ValueError(f"{what}: {value} is not in 1..{most}")
    return value


def _per(args: str, shape: str, integer: bool) -> tuple[float, float]:
    amount, sep, period = args.partition("/")
    if not sep and integer:
        raise ValueError(f"{shape}: expected N/W, e.g. {shape}:50/10s")
    window = _seconds(period, f"{shape} window") if sep else 1.0
    if window > MAX_WINDOW:
        raise ValueError(f"{shape} window: {window:g}s is longer than {MAX_WINDOW:g}s")
    if integer:
        most = MAX_LOGGED if shape in ("sliding", "penalty") else MAX_COUNT
        return float(_count(amount, f"{shape} count", most)), window
    try:
        rate = float(amount)
    except ValueError:
        raise ValueError(f"{shape}: {amount!r} is not a rate (e.g. {shape}:5/1s)") from None
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"{shape}: rate must be > 0, got {amount!r}")
    return rate, window


def _share(text: str) -> float:
    if "/" in text:
        raise ValueError(f"shed: takes no period, a share refused whatever the rate (e.g. shed:0.01), got {text!r}")
    try:
        share = float(text)
    except ValueError:
        raise ValueError(f"shed: {text!r} is not a share (e.g. shed:0.01 refuses 1 %)") from None
    if not 0 < share < 1:  # nan fails it too
        raise ValueError(f"shed: share must be > 0 and < 1, got {text.strip()!r}")
    return share


def parse_limiter(text: str, target: str | None = None) -> LimiterSpec:
    """The LimiterSpec ``text`` describes; ValueError says what is wrong and how to write it.

    Without ``scope=``, the scope is ``default_scope(target)``: per (IP, region) for Jito
    targets, per IP otherwise.
    """
    head, *options = [part.strip() for part in text.strip().split(",")]
    shape, sep, args = head.partition(":")
    shape = shape.strip()
    if shape not in SHAPES or not sep:
        raise ValueError(f"{text!r}: expected SHAPE:ARGS with SHAPE one of {', '.join(SHAPES)}")
    fields: dict[str, str] = {}
    for option in options:
        name, eq, value = option.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or name not in ("scope", "retry_after", "refuse", "burst", "box") or name in fields:
            raise ValueError(f"{text!r}: bad option {option!r} (known: scope=, retry_after=, refuse=, burst=, box=)")
        fields[name] = value.strip()
    if "burst" in fields and shape not in ("bucket", "queue"):
        raise ValueError(f"{text!r}: burst= is for bucket and queue only")
    if ("box" in fields) != (shape == "penalty"):
        raise ValueError(f"{text!r}: penalty needs box=SECONDS, and only penalty takes it")
    scope = fields.get("scope", default_scope(target))
    if scope not in SCOPES:
        raise ValueError(f"{text!r}: scope {scope!r} is not one of {', '.join(SCOPES)}")
    retry = fields.get("retry_after", "yes").lower()
    if retry not in _YES and retry not in ("reset", "one"):
        raise ValueError(f"{text!r}: retry_after must be yes, no, reset or one")
    refuse = fields.get("refuse", "delayed").lower().replace("-", "_")
    if refuse not in ("delayed", "at_once"):
        raise ValueError(f"{text!r}: refuse must be delayed or at_once")
    if shape == "concurrency":
        limit, window = float(_count(args, "concurrency")), 1.0
    elif shape == "shed":
        limit, window = _share(args), 1.0
    else:
        limit, window = _per(args, shape, integer=shape not in ("bucket", "queue"))
    burst = _seconds(fields["burst"], "burst") if "burst" in fields else 1.0
    box = _seconds(fields["box"], "box") if "box" in fields else 0.0
    if burst > MAX_WINDOW or box > MAX_BOX:
        raise ValueError(f"{text!r}: burst is at most {MAX_WINDOW:g}s and box at most {MAX_BOX:g}s")
    reset, one = retry == "reset", retry == "one"
    return LimiterSpec(
        shape,
        limit,
        window,
        burst,
        box,
        scope,
        reset or one or _YES[retry],
        reset_header=reset,
        says_one=one,
        at_once=refuse == "at_once",
    )


def parse_limiters(text: str, target: str | None = None) -> tuple[LimiterSpec, ...]:
    """The limits ``text`` stacks with ``&`` (one or more, each as :func:`parse_limiter` reads it),
    judged in the order written. ValueError names the part that is wrong."""
    parts = [part.strip() for part in text.split("&")]
    if len(parts) > MAX_STACK:
        raise ValueError(f"{text!r}: at most {MAX_STACK} limits stacked with &")
    if len(parts) > 1 and not all(parts):
        raise ValueError(f"{text!r}: an empty limit next to & (write A & B)")
    return tuple(parse_limiter(part, target) for part in parts)
