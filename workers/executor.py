"""Running one job: find the handler for its payload type, give it the job's budget, classify.

Handlers are ``async (ctx, payload, budget) -> Outcome``. Whatever a handler raises becomes
an outcome here; nothing escapes to the worker's loop. Upstream clients register their
handlers in :data:`HANDLERS` when their module is imported (``workers.clients``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgspec

from broker.jobs import HttpRequest, SecretRef
from broker.logs import register_secret
from broker.protocol import Dispatch, Event, Outcome
from broker.results import HttpResponse
from workers.body import BodyError, read_body
from workers.classify import classify_exception, classify_status, said_when
from workers.secrets import SecretPolicy
from workers.session import BoundSession, family_mismatch
from workers.slots import Slots

__all__ = ["HANDLERS", "Executor", "JobContext", "handler", "secret_headers", "spaced_at", "spaced_wait"]

log = logging.getLogger("workers.executor")
# uvloop's timers count whole milliseconds (rounded): a held job waits this much more, so that it
# leaves at its pacing slot or just after, never before.
TIMER_SLACK = 0.0005
# A spaced job (``Dispatch.gap``) due less than this share of its gap before the gap is up goes at
# once: a told pace keeps 98 % of the rate, and the jitter of a busy worker's reads and timers brings
# sends within a few milliseconds of each other's slots; waiting those out (a second timer on many
# sends: 10-25 % more of the farm's CPU at 64 addresses, with a slack of 2 ms) holds back no bunch.
# What queued waits a whole gap: sent faster than the told rate for long, it would spend a small
# bucket's burst (a gap of 0.9 / R did, at 64 addresses with workers held up).
GAP_SLACK = 0.1
MAX_SPACED = 256  # upstreams whose last spaced send a worker remembers
GATE_REPORTED = 0.0005  # a job that waited this long for a slot under its cap says so (Outcome.waited)


def spaced_wait(last: float, gap: float, now: float) -> float | None:
    """How long a spaced send due at ``now`` waits for its gap after the send at ``last``: None when
    it is due within the slack (``GAP_SLACK``), and goes at once."""
    wait = last + gap - now
    return wait if wait > gap * GAP_SLACK else None


def spaced_at(last: float | None, gap: float, now: float) -> float:
    """When a spaced send that goes at ``now`` counts as sent. One that waited for its gap after
    ``last`` counts at its slot, ``last + gap``, if it woke no later than the slack after it: a timer
    wakes a little late each time (its own slack, the loop), and counted at each wake, those
    lateness added up. A worker held up makes up its lag at the pace's proven rate, which a learnt
    pace keeps 0.5-1 % above itself (0.25-0.5 ms a send at 20/s): a millisecond late a wake, the lag
    grew instead, for ever, and its jobs came to time out in the worker. Later than the slack, or not
    waited, it counts when it went."""
    if last is not None and now - (last + gap) <= gap * GAP_SLACK:
        return last + gap
    return now


P = TypeVar("P")
Handler = Callable[["JobContext", Any, float], Awaitable[Outcome]]
HANDLERS: dict[type[Any], Handler] = {}


def handler(payload_type: type[P]) -> Callable[[Callable[[JobContext, P, float], Awaitable[Outcome]]], Any]:
    """Register ``fn`` as the handler of ``payload_type`` jobs."""

    def register(fn: Callable[[JobContext, P, float], Awaitable[Outcome]]) -> Any:
        HANDLERS[payload_type] = fn
        return fn

    return register


@dataclass
class JobContext:
    """What a handler may use: the bound session, the job, and a way to report events."""

    session: BoundSession
    dispatch: Dispatch
    emit: Callable[[Event], None]

    @property
    def http(self) -> aiohttp.ClientSession:
        return self.session.session

    @property
    def ip(self) -> str | None:
        return self.session.ip


_missing_env_warned: set[str] = set()
_refusals_logged: set[str] = set()


def secret_headers(ref: SecretRef | None) -> dict[str, str]:
    """The auth header a :class:`SecretRef` names, read from this worker's environment."""
    if ref is None:
        return {}
    value = os.environ.get(ref.env)
    if not value:
        if ref.env not in _missing_env_warned:
            _missing_env_warned.add(ref.env)
            log.warning("env var %s is not set on this worker; sending without %s", ref.env, ref.header)
        return {}
    register_secret(value)  # from now on, no log line of this worker can carry it
    return {ref.header: ref.prefix + value}


_NO_TIMEOUT = aiohttp.ClientTimeout()


def client_timeout(budget: float, connect: float | None = None, read: float | None = None) -> aiohttp.ClientTimeout:
    """aiohttp's per-phase limits for one request. The whole budget is not among them: the
    executor's ``asyncio.timeout`` around the handler already enforces it, and a second timer
    per request costs more than the rest of our own per-job work."""
    if not connect and not read:
        return _NO_TIMEOUT
    return aiohttp.ClientTimeout(
        sock_connect=min(connect, budget) if connect else None,
        sock_read=min(read, budget) if read else None,
    )


@handler(HttpRequest)
async def run_http(ctx: JobContext, req: HttpRequest, budget: float) -> Outcome:
    headers = dict(req.headers)
    headers.update(secret_headers(req.secret))
    start = time.perf_counter()
    async with ctx.http.request(
        req.method,
        req.url,
        headers=headers,
        data=req.body,
        timeout=client_timeout(budget, req.connect_timeout, req.read_timeout),
        allow_redirects=False,
    ) as resp:
        try:
            body = await read_body(resp, req.max_body)
        except BodyError as exc:
            return Outcome(
                result="decode_error", status=resp.status, latency=time.perf_counter() - start, error=str(exc)
            )
        latency = time.perf_counter() - start
        failed = classify_status(resp.status, said_when(resp.status, resp.headers), latency)
        if failed is not None:
            return failed
        return Outcome(
            result="ok",
            status=resp.status,
            latency=latency,
            value=HttpResponse(status=resp.status, headers=[(str(k), v) for k, v in resp.headers.items()], body=body),
        )


def _url_of(payload: Any) -> str | None:
    url = getattr(payload, "url", None)
    return url if isinstance(url, str) else None


class Executor:
    """Runs dispatched jobs on one bound session and turns every ending into an Outcome."""

    def __init__(
        self, session: BoundSession, emit: Callable[[Event], None], secrets: SecretPolicy | None = None
    ) -> None:
        self.session = session
        self.emit = emit
        self.secrets = secrets or SecretPolicy()  # none given: this worker releases no secret
        self._last_sent: dict[str, float] = {}  # upstream -> its last spaced send (monotonic)
        self.slots = Slots()  # requests out per upstream; jobs a cap holds back (Dispatch.cap)

    async def _spaced(self, upstream: str, gap: float) -> None:
        """Wait until ``gap`` has passed since this worker's last spaced send to ``upstream``, and
        count this one as sent (:func:`spaced_at`). Checked again after every wait, against the sends
        that went meanwhile: jobs read together (the OS held the worker up while they queued, or while
        a held job slept) leave one gap apart, whichever wakes first, not in a bunch."""
        waited = False
        while (last := self._last_sent.get(upstream)) is not None and (
            wait := spaced_wait(last, gap, time.monotonic())
        ) is not None:
            await asyncio.sleep(wait + TIMER_SLACK)
            waited = True
        if upstream not in self._last_sent and len(self._last_sent) >= MAX_SPACED:
            self._last_sent.clear()  # bounded whatever upstream names a coordinator sends
        self._last_sent[upstream] = spaced_at(last if waited else None, gap, time.monotonic())

    async def execute(self, dispatch: Dispatch) -> Outcome:
        fn = HANDLERS.get(type(dispatch.payload))
        if fn is None:
            return Outcome(result="decode_error", error=f"this worker has no handler for {dispatch.kind!r} jobs")
        refused = self.secrets.refusal(dispatch.payload)
        if refused is not None:
            if refused not in _refusals_logged and len(_refusals_logged) < 256:  # a flood logs each kind once
                _refusals_logged.add(refused)
                log.warning("job %d (%s): %s", dispatch.job_id, dispatch.kind, refused)
            return Outcome(result="decode_error", error=refused)
        url = _url_of(dispatch.payload)
        if url is not None:
            mismatch = family_mismatch(url, self.session.ip)
            if mismatch:
                return Outcome(result="network_error", error=mismatch)
        ctx = JobContext(self.session, dispatch, self.emit)
        start = time.perf_counter()
        gated = 0.0  # seconds it waited for a slot under its cap
        sent = 0.0  # when the request went (monotonic); 0: it never did
        try:
            async with asyncio.timeout(dispatch.timeout):  # the hold, the gap and the cap count: bogus ones time out
                hold = dispatch.hold if dispatch.hold > 0 else 0.0  # NaN or negative: none
                if hold:  # its pacing slot is that far off
                    await asyncio.sleep(hold + TIMER_SLACK)
                if dispatch.gap > 0:  # and no sooner than this after the worker's last send to the upstream
                    await self._spaced(dispatch.upstream, dispatch.gap)
                gate = time.perf_counter()
                await self.slots.take(dispatch.upstream, dispatch.cap)  # and while under its cap, if any
                gated = time.perf_counter() - gate if dispatch.cap > 0 else 0.0
                try:
                    waited, start = time.perf_counter() - start, time.perf_counter()
                    sent = time.monotonic()
                    out = await fn(ctx, dispatch.payload, max(0.001, dispatch.timeout - waited))
                finally:
                    self.slots.give_back(dispatch.upstream)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            out = classify_exception(exc, time.perf_counter() - start, self.session.ip)
        # When it went, on this worker's clock: the coordinator tells what the upstream was serving
        # from it (a cap's slots), which its own clock, an extra hop each way, would blur.
        if gated >= GATE_REPORTED:
            return msgspec.structs.replace(out, waited=round(gated, 6), sent=sent)
        return msgspec.structs.replace(out, sent=sent) if sent else out
