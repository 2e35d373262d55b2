"""Titan streams as a scheduled resource: which (pair, size)s stream, where a connection goes. Pure.

Titan gives a token one connection and a connection ``concurrentStreams`` streams, so streams
are scarce. The round-trip engine tells the :class:`StreamBoard` what it quotes, and the board
says which keys hold streams:

* ``asked(key, now)``: a batch wants the key's Titan quote (its demand);
* ``observed(key, margin_bps, now)``: the best round trip that batch found, with any legs.

A key's usefulness, highest first: asked within ``forget_after`` with a known margin (the
margin, an EWMA, decides), then asked but no round trip seen yet, then not asked lately (idle);
ties go to the config's order. :meth:`StreamBoard.plan` fills free slots with the most useful
keys without one; when no slot is free, a key takes the stream of the least useful one only if
it clearly beats it (a tier up, or ``hysteresis_bps`` more margin) and that stream was held
``min_hold`` seconds, so streams do not flap. When the server's limit is reached (a refusal
said so, or a connection's limit shrank), rank alone decides at once: the least useful stream
is stopped, never the newest key refused because it came last.

Connections: :func:`choose_ip` picks a token's IP (the same one again while it is healthy, else
another, spread over tokens by rendezvous hashing), :class:`Backoff` paces retries, and
:func:`end_reason` names why a connection was refused or lost, for the metrics.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from broker.results import TitanConnectionSummary
from broker.types import JobOutcome

__all__ = [
    "Backoff",
    "BoardRules",
    "Drop",
    "Key",
    "Move",
    "Open",
    "Replace",
    "Room",
    "StreamBoard",
    "choose_ip",
    "end_reason",
    "ip_at_fault",
]

Key = tuple[str, str, int]  # input mint, output mint, amount
PENDING = math.inf  # a Room's ``held`` value for a stream still being opened: never replaced


@dataclass(frozen=True, slots=True)
class BoardRules:
    """The tunables of stream scheduling, as one value."""

    forget_after: float = 30.0  # seconds: a key not asked for this long is idle, the least useful
    margin_weight: float = 0.2  # EWMA weight of each new round-trip margin
    hysteresis_bps: float = 5.0  # a key must beat a streamed one by this much margin to take its stream
    min_hold: float = 10.0  # seconds a stream is held before a better key may take it
    fail_start: float = 1.0  # seconds a key whose stream failed waits, doubling ...
    fail_cap: float = 30.0  # ... up to this
    pressing_for: float = 5.0  # seconds a key refused at the server's limit is compared on rank alone


@dataclass(slots=True)
class _Key:
    order: int
    last_asked: float = -math.inf
    margin: float | None = None
    blocked_until: float = -math.inf
    fail_delay: float = 0.0
    pressing_until: float = -math.inf


@dataclass(frozen=True, slots=True)
class Room:
    """One open connection as the board sees it: free slots, and when each held key got its stream
    (:data:`PENDING` while its stream is being opened)."""

    link: str
    free: int
    held: Mapping[Key, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Open:
    key: Key
    link: str


@dataclass(frozen=True, slots=True)
class Replace:
    """Stop ``old``'s stream and open ``new`` on the same connection, in one breath."""

    old: Key
    new: Key
    link: str


@dataclass(frozen=True, slots=True)
class Drop:
    key: Key
    link: str


Move = Open | Replace | Drop


class StreamBoard:
    """The keys the engine quotes, how useful each is, and which should hold the streams."""

    def __init__(self, keys: Iterable[Key] = (), rules: BoardRules | None = None) -> None:
        self.rules = rules or BoardRules()
        self._keys: dict[Key, _Key] = {}
        for key in keys:
            self.add(key)

    def add(self, key: Key) -> None:
        if key not in self._keys:
            self._keys[key] = _Key(order=len(self._keys))

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    # --- what the engine says ---------------------------------------------------------

    def asked(self, key: Key, now: float) -> None:
        k = self._keys.get(key)
        if k is not None:
            k.last_asked = now

    def observed(self, key: Key, margin_bps: float, now: float) -> None:
        k = self._keys.get(key)
        if k is None or not math.isfinite(margin_bps):
            return
        w = self.rules.margin_weight
        k.margin = margin_bps if k.margin is None else k.margin + w * (margin_bps - k.margin)
        k.last_asked = max(k.last_asked, now)

    def failed(self, key: Key, now: float) -> float:
        """The key's stream failed (no route, an error): it waits, doubling; returns until when."""
        k = self._keys[key]
        k.fail_delay = min(self.rules.fail_cap, k.fail_delay * 2 if k.fail_delay else self.rules.fail_start)
        k.blocked_until = now + k.fail_delay
        return k.blocked_until

    def succeeded(self, key: Key) -> None:
        """The key's stream delivered: its failures are forgotten."""
        k = self._keys.get(key)
        if k is not None:
            k.fail_delay = 0.0
            k.blocked_until = -math.inf

    def pressing(self, key: Key, now: float) -> None:
        """The server refused the key's stream at its limit: rank alone decides its next chance."""
        k = self._keys.get(key)
        if k is not None:
            k.pressing_until = now + self.rules.pressing_for

    # --- usefulness -------------------------------------------------------------------

    def tier(self, key: Key, now: float) -> int:
        """2: asked lately, margin known; 1: asked lately; 0: idle."""
        k = self._keys[key]
        if now - k.last_asked > self.rules.forget_after:
            return 0
        return 2 if k.margin is not None else 1

    def rank(self, key: Key, now: float) -> tuple[int, float, int]:
        """Sortable usefulness: higher is more useful."""
        k = self._keys[key]
        tier = self.tier(key, now)
        return (tier, k.margin if tier == 2 and k.margin is not None else 0.0, -k.order)

    def margin(self, key: Key) -> float | None:
        return self._keys[key].margin

    def ranked(self, now: float) -> list[Key]:
        """Keys that may hold a stream now (not waiting after a failure), most useful first."""
        ready = [key for key, k in self._keys.items() if k.blocked_until <= now]
        return sorted(ready, key=lambda key: self.rank(key, now), reverse=True)

    def _beats(self, new: Key, old: Key, now: float) -> bool:
        """``new`` clearly more useful than ``old``: a tier up, or by the hysteresis in margin."""
        tn, to = self.tier(new, now), self.tier(old, now)
        if tn != to:
            return tn > to
        if tn != 2:
            return False  # same tier, no margins to tell them apart: the incumbent stays
        mn, mo = self._keys[new].margin, self._keys[old].margin
        return mn is not None and mo is not None and mn >= mo + self.rules.hysteresis_bps

    # --- the plan ---------------------------------------------------------------------

    def plan(self, rooms: Sequence[Room], now: float) -> list[Move]:
        """The moves that bring the streams closer to the most useful keys."""
        moves: list[Move] = []
        free = {r.link: r.free for r in rooms}
        held: dict[Key, tuple[str, float]] = {}
        for r in rooms:
            for key, since in r.held.items():
                if key in self._keys:
                    held[key] = (r.link, since)
        # A connection over its limit (the server said less than we thought): drop its least useful.
        for r in rooms:
            if free[r.link] < 0:
                mine = sorted(
                    (k for k, (link, since) in held.items() if link == r.link and since != PENDING),
                    key=lambda k: self.rank(k, now),
                )
                for key in mine[: -free[r.link]]:
                    moves.append(Drop(key, r.link))
                    del held[key]
                    free[r.link] += 1
        capacity = sum(max(0, f) for f in free.values()) + len(held)
        ranked = self.ranked(now)
        top = set(ranked[:capacity])
        for key in ranked:
            if key in held:
                continue
            link = max(free, key=lambda name: (free[name], name), default=None)
            if link is not None and free[link] > 0:
                moves.append(Open(key, link))
                free[link] -= 1
                held[key] = (link, PENDING)
                continue
            victim = self._victim(key, held, top, now)
            if victim is None:
                continue  # a later key may still be pressing (refused at the server's limit)
            link = held.pop(victim)[0]
            moves.append(Replace(victim, key, link))
            held[key] = (link, PENDING)
        return moves

    def _victim(self, key: Key, held: Mapping[Key, tuple[str, float]], top: set[Key], now: float) -> Key | None:
        """The least useful held stream ``key`` may take, or None."""
        open_ = [k for k, (_, since) in held.items() if since != PENDING]
        if not open_:
            return None
        victim = min(open_, key=lambda k: self.rank(k, now))
        if self._keys[key].pressing_until > now:  # at the server's limit: rank alone decides
            return victim if key in top and victim not in top else None
        if now - held[victim][1] < self.rules.min_hold:
            return None
        return victim if self._beats(key, victim, now) else None


@dataclass(slots=True)
class Backoff:
    """Retry delays: ``start``, doubling to ``cap``; :meth:`reset` once a connection delivers."""

    start: float = 0.25
    cap: float = 30.0
    _next: float = 0.0

    def next(self) -> float:
        delay = self._next or self.start
        self._next = min(self.cap, delay * 2)
        return delay

    def reset(self) -> None:
        self._next = 0.0


def _score(token: str, ip: str) -> bytes:
    return hashlib.sha256(f"{token}|{ip}".encode()).digest()


def choose_ip(token: str, eligible: Sequence[str], taken: Iterable[str], last: str | None, healthy: bool) -> str | None:
    """The IP for ``token``'s connection: ``last`` while it is healthy and eligible, else an eligible
    IP no other connection holds (else any eligible but ``last``, else any), ranked by a
    rendezvous hash of the token so tokens spread and each keeps its IP across restarts."""
    if last is not None and healthy and last in eligible:
        return last
    taken = set(taken)
    for pool in (
        [ip for ip in eligible if ip not in taken and ip != last],
        [ip for ip in eligible if ip != last],
        list(eligible),
    ):
        if pool:
            return max(pool, key=lambda ip: _score(token, ip))
    return None


def end_reason(out: JobOutcome, closed: TitanConnectionSummary | None) -> str:
    """Why a connection was refused or lost, as a bounded metric label."""
    if closed is not None and closed.ended_by == "server":
        return "token_expired" if "expired" in closed.close_reason.lower() else "closed_by_server"
    if closed is not None and closed.ended_by in ("closed", "duration"):
        return closed.ended_by
    if out.result == "http_error":
        if out.status in (401, 403):
            return "unauthorized"
        if out.status == 409:
            return "token_in_use"
        return "server_error" if out.status >= 500 else "http_error"
    if out.result == "decode_error" and out.error.startswith("refused:"):
        return "secret_refused"  # the worker would not release the token to this URL
    return out.result


def ip_at_fault(out: JobOutcome, closed: TitanConnectionSummary | None) -> bool:
    """Whether the connection's end says something about its IP (so the next goes elsewhere)."""
    if closed is not None and closed.ended_by in ("server", "closed", "duration"):
        return False  # the server closed it (the token's business) or we did
    if end_reason(out, closed) == "secret_refused":
        return True  # that worker (one joined from a host whose config lacks the token) will not send it
    return out.result in ("worker_lost", "network_error", "timeout", "bind_error", "rate_limited", "expired")
