"""The worker's executor against a real local server, from bound loopback addresses."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from broker.jobs import HttpRequest, SecretRef
from broker.logs import KeyValueFormatter
from broker.protocol import Dispatch
from broker.results import HttpResponse
from workers.executor import Executor, spaced_at, spaced_wait
from workers.secrets import SecretPolicy, origin
from workers.session import BoundSession, _host_of, family_mismatch


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"remote": request.remote, "key": request.headers.get("x-api-key")})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    async def limited(request: web.Request) -> web.Response:
        return web.json_response({"error": "Too Many Requests"}, status=429, headers={"Retry-After": "2"})

    async def reset(request: web.Request) -> web.Response:  # a proxy that says when, but not in Retry-After
        return web.json_response({"error": "Too Many Requests"}, status=429, headers={"RateLimit-Reset": "7"})

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000)

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    async def unavailable(request: web.Request) -> web.Response:  # down, and says for how long
        status = int(request.query.get("status", "503"))
        return web.Response(status=status, text="down", headers={"Retry-After": "9", "RateLimit-Reset": "4"})

    async def when(request: web.Request) -> web.Response:
        ARRIVALS.append(time.monotonic())
        return web.json_response({"at": ARRIVALS[-1]})

    async def served(request: web.Request) -> web.Response:  # a server that counts what it serves at once
        SERVING[0] += 1
        SERVING[1] = max(SERVING[1], SERVING[0])
        try:
            await asyncio.sleep(float(request.query.get("s", "0.05")))
        finally:
            SERVING[0] -= 1
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/slow", slow)
    app.router.add_get("/limited", limited)
    app.router.add_get("/reset", reset)
    app.router.add_get("/big", big)
    app.router.add_get("/broken", broken)
    app.router.add_get("/unavailable", unavailable)
    app.router.add_get("/when", when)
    app.router.add_get("/served", served)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


ARRIVALS: list[float] = []  # when /when was asked (the server runs in this process: the same clock)
SERVING = [0, 0]  # /served: requests being served now, and the most at once


def job(
    payload: HttpRequest,
    timeout: float = 2.0,
    hold: float = 0.0,
    upstream: str = "t",
    gap: float = 0.0,
    cap: int = 0,
) -> Dispatch:
    return Dispatch(
        job_id=1,
        attempt=0,
        kind="http",
        upstream=upstream,
        timeout=timeout,
        payload=payload,
        hold=hold,
        gap=gap,
        cap=cap,
    )


async def run(  # type: ignore[no-untyped-def]
    ip: str | None, payload: HttpRequest, timeout: float = 2.0, secrets: SecretPolicy | None = None, hold: float = 0.0
):
    """``payload`` run as a worker whose config lists its secret for its URL (unless ``secrets`` says otherwise)."""
    if secrets is None and payload.secret is not None:
        secrets = SecretPolicy(headers={payload.secret.env: [str(origin(payload.url))]})
    session = BoundSession(ip)
    try:
        return await Executor(session, lambda e: None, secrets).execute(job(payload, timeout, hold))
    finally:
        await session.close()


async def test_requests_leave_from_the_bound_address(server: str) -> None:
    for ip in ("127.0.0.2", "127.0.0.7"):
        out = await run(ip, HttpRequest(url=f"{server}/whoami"))
        assert out.result == "ok" and isinstance(out.value, HttpResponse)
        assert json.loads(out.value.body)["remote"] == ip


async def test_secret_comes_from_the_workers_environment(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY_ENV", "s3cret-value")
    out = await run("127.0.0.2", HttpRequest(url=f"{server}/whoami", secret=SecretRef("x-api-key", "TEST_KEY_ENV")))
    assert out.value is not None and b"s3cret-value" in out.value.body  # type: ignore[union-attr]


async def test_a_secret_the_worker_reads_is_masked_in_its_log_lines(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret-for-the-log-test"
    line = logging.makeLogRecord({"msg": "upstream said: bad key %s", "args": (secret,)})
    assert secret in KeyValueFormatter().format(line)  # nothing registered it yet
    monkeypatch.setenv("TEST_LOG_KEY_ENV", secret)
    out = await run("127.0.0.2", HttpRequest(url=f"{server}/whoami", secret=SecretRef("x-api-key", "TEST_LOG_KEY_ENV")))
    assert out.result == "ok"
    text = KeyValueFormatter().format(line)
    assert secret not in text and "bad key ***" in text


async def test_unbindable_address_is_a_bind_error(server: str) -> None:
    out = await run("192.0.2.254", HttpRequest(url=f"{server}/whoami"))
    assert out.result == "bind_error" and "192.0.2.254" in out.error


async def test_family_mismatch_is_named(server: str) -> None:
    out = await run("::1", HttpRequest(url=f"{server}/whoami"))
    assert out.result == "network_error" and "IPv6 worker" in out.error


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/quote?a=1",
        "https://user:pw@[::1]:443/x",
        "http://[2001:db8::1]/",
        "https://quote-api.jup.ag/swap/v1/quote?next=//10.0.0.1/",
        "http://10.1.2.3?q=[::1]",
        "http://10.1.2.3#[::1]",
        "wss://a.example/ws",
        "http://user@10.0.0.9:81",
    ],
)
def test_the_cheap_host_parser_agrees_with_urlsplit(url: str) -> None:
    host = urlsplit(url).hostname or ""
    assert _host_of(url).lower() == host, url
    mismatch = family_mismatch(url, "127.0.0.2")  # an IPv4 worker
    if ":" in host:  # an IPv6 literal: named as unreachable
        assert mismatch is not None and "cannot reach" in mismatch
    else:
        assert mismatch is None


async def test_budget_becomes_a_timeout(server: str) -> None:
    out = await run("127.0.0.2", HttpRequest(url=f"{server}/slow"), timeout=0.2)
    assert out.result == "timeout"


async def test_429_with_retry_after(server: str) -> None:
    out = await run("127.0.0.2", HttpRequest(url=f"{server}/limited"))
    assert out.result == "rate_limited" and out.status == 429 and out.retry_after == 2.0


async def test_429_with_only_a_rate_limit_reset_header(server: str) -> None:
    out = await run("127.0.0.2", HttpRequest(url=f"{server}/reset"))
    assert out.result == "rate_limited" and out.retry_after == 7.0


async def test_5xx_is_an_http_error_and_large_bodies_are_refused(server: str) -> None:
    assert (await run("127.0.0.2", HttpRequest(url=f"{server}/broken"))).status == 503
    out = await run("127.0.0.2", HttpRequest(url=f"{server}/big", max_body=1000))
    assert out.result == "decode_error" and "exceeds" in out.error


async def test_a_503_carries_its_retry_after_and_no_other_error_status_does(server: str) -> None:
    out = await run("127.0.0.2", HttpRequest(url=f"{server}/unavailable"))
    assert (out.result, out.status, out.retry_after) == ("http_error", 503, 9.0)
    out = await run("127.0.0.2", HttpRequest(url=f"{server}/unavailable?status=500"))
    assert (out.result, out.status, out.retry_after) == ("http_error", 500, None)
    out = await run("127.0.0.2", HttpRequest(url=f"{server}/broken"))  # a 503 that says nothing
    assert (out.status, out.retry_after) == (503, None)


async def test_connection_refused_is_a_network_error() -> None:
    out = await run("127.0.0.2", HttpRequest(url="http://127.0.0.1:1/"))
    assert out.result == "network_error"


async def test_default_route_slot_binds_nothing(server: str) -> None:
    out = await run(None, HttpRequest(url=f"{server}/whoami"))
    assert out.result == "ok" and json.loads(out.value.body)["remote"] == "127.0.0.1"  # type: ignore[union-attr]


async def test_a_held_job_leaves_no_sooner_than_its_hold(server: str) -> None:
    """The hub sends a job picked just before its pacing slot with the rest of the wait as its hold."""
    ARRIVALS.clear()
    start = time.monotonic()
    out = await run("127.0.0.2", HttpRequest(url=f"{server}/when"), hold=0.05)
    assert out.result == "ok" and ARRIVALS and ARRIVALS[0] - start >= 0.05


async def test_an_outcome_says_when_its_request_went_on_the_workers_clock(server: str) -> None:
    """``Outcome.sent`` is when the request left (after its hold), and ``latency`` later its answer was
    in: the server (same host, same monotonic clock) saw it arrive in between. The coordinator tells
    a cap's slots from these, not from its own clock."""
    ARRIVALS.clear()
    start = time.monotonic()
    out = await run("127.0.0.2", HttpRequest(url=f"{server}/when"), hold=0.05)
    assert out.result == "ok" and len(ARRIVALS) == 1
    assert start + 0.05 <= out.sent <= ARRIVALS[0] <= out.sent + out.latency <= time.monotonic()
    limited = await run(None, HttpRequest(url=f"{server}/limited"))
    assert limited.result == "rate_limited" and limited.sent > start  # a refusal says it too


async def test_a_hold_past_the_jobs_timeout_times_out_and_sends_nothing(server: str) -> None:
    """A bogus hold (a peer's, or a clock gone wrong) cannot keep a job past its budget."""
    ARRIVALS.clear()
    out = await run("127.0.0.2", HttpRequest(url=f"{server}/when"), timeout=0.2, hold=60.0)
    assert out.result == "timeout" and ARRIVALS == [] and out.sent == 0.0  # never sent: says no time


async def test_jobs_that_reach_a_worker_together_leave_it_one_gap_apart(server: str) -> None:
    """Three jobs of one upstream read at once (the OS held the worker up while they queued), each
    with the told interval as its gap: they reach the upstream spaced by it, not in a bunch; a job
    of another upstream, or one with no gap (a NaN is none), is not held back by them."""
    ARRIVALS.clear()
    session = BoundSession("127.0.0.2")
    ex = Executor(session, lambda e: None)

    def spaced(upstream: str, gap: float) -> Dispatch:
        return job(HttpRequest(url=f"{server}/when"), upstream=upstream, gap=gap)

    try:
        start = time.monotonic()
        outs = await asyncio.gather(*(ex.execute(spaced("t", 0.05)) for _ in range(3)))
        assert [o.result for o in outs] == ["ok"] * 3
        arrivals = sorted(ARRIVALS)
        assert arrivals[0] - start < 0.05  # the first goes at once
        # One gap apart: the timer's ms rounding, and the server shares this loop, so an arrival it read
        # late (a busy host: 3 ms seen with the cores taken) brings the next one closer, not the sends.
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert min(gaps) >= 0.04 and arrivals[-1] - arrivals[0] >= 2 * 0.05 - 0.01, gaps
        ARRIVALS.clear()
        start = time.monotonic()
        other, plain = await asyncio.gather(ex.execute(spaced("u", 0.05)), ex.execute(spaced("t", float("nan"))))
        assert other.result == plain.result == "ok" and all(a - start < 0.05 for a in ARRIVALS)
    finally:
        await session.close()


def _lag_after(sends: int, counted_at: object) -> float:
    """A worker 20 ms behind a learnt pace of 19.8/s whose proven rate (its gap) is 19.9/s, each
    timer waking 1 ms past its slot: how far behind the last of ``sends`` jobs went."""
    gap, interval, late = 1 / 19.9, 1 / 19.8, 0.001
    last, lag = None, 0.0
    for k in range(sends):
        arrived = k * interval + (0.020 if k == 0 else 0.0)  # the first read 20 ms late, the rest on time
        now = arrived
        waited = last is not None and spaced_wait(last, gap, now) is not None
        if waited:
            assert last is not None
            now = last + gap + late
        last = counted_at(last if waited else None, gap, now)  # type: ignore[operator]
        lag = now - k * interval
    return lag


def test_a_worker_behind_its_pace_catches_up_though_its_timers_wake_late() -> None:
    """Counted at its slot when it woke within the slack, a spaced send's lateness does not add up:
    the lag shrinks by the gap's margin over the pace, 0.25 ms a send, to nothing. Counted when each
    timer woke (1 ms late), it grew by 0.75 ms a send, for ever: a learnt pace keeps only 0.5-1 %
    under the rate its gap allows."""
    assert _lag_after(200, spaced_at) < 0.002
    assert _lag_after(200, lambda last, gap, now: now) > 0.1
    assert spaced_at(10.0, 0.05, 10.056) == 10.056  # woke later than the slack: a new schedule
    assert spaced_at(10.0, 0.05, 10.052) == pytest.approx(10.05)  # within it: counted at its slot
    assert spaced_at(None, 0.05, 3.0) == 3.0


async def test_a_gap_past_the_jobs_timeout_times_out_and_sends_nothing(server: str) -> None:
    """A bogus gap is a bogus hold: the job's budget still bounds it."""
    ARRIVALS.clear()
    session = BoundSession("127.0.0.2")
    ex = Executor(session, lambda e: None)
    try:
        first = job(HttpRequest(url=f"{server}/when"), gap=60.0)
        second = job(HttpRequest(url=f"{server}/when"), timeout=0.2, gap=60.0)
        assert (await ex.execute(first)).result == "ok"
        assert (await ex.execute(second)).result == "timeout" and len(ARRIVALS) == 1
    finally:
        await session.close()


async def test_jobs_sent_ahead_to_a_capped_upstream_wait_in_the_worker_and_go_as_answers_come(server: str) -> None:
    """Six jobs with a cap of 2 reach the worker at once: the upstream never serves more than 2 of
    them together, each of the four held back goes as an answer comes (three rounds of 50 ms, not
    six), and a job of another upstream is not held back by them."""
    SERVING[:] = [0, 0]
    session = BoundSession("127.0.0.2")
    ex = Executor(session, lambda e: None)
    served = HttpRequest(url=f"{server}/served?s=0.05")
    try:
        start = time.monotonic()
        outs = await asyncio.gather(*(ex.execute(job(served, cap=2)) for _ in range(6)))
        took = time.monotonic() - start
        assert [o.result for o in outs] == ["ok"] * 6
        assert SERVING[1] == 2 and 0.15 <= took < 0.3, (SERVING, took)
        assert ex.slots.out == {} and ex.slots.waiting("t") == 0  # nothing left counted
        SERVING[:] = [0, 0]
        start = time.monotonic()
        await asyncio.gather(*(ex.execute(job(served, cap=1)) for _ in range(2)), ex.execute(job(served, upstream="u")))
        assert SERVING[1] == 2  # one of "t" (capped at 1) with the one of "u"
    finally:
        await session.close()


async def test_a_job_whose_budget_runs_out_waiting_for_a_slot_times_out_and_the_slot_goes_on(server: str) -> None:
    """A job held for a slot past its budget times out without sending; the next waiter still gets
    the slot when the answer comes."""
    SERVING[:] = [0, 0]
    session = BoundSession("127.0.0.2")
    ex = Executor(session, lambda e: None)
    try:
        first = ex.execute(job(HttpRequest(url=f"{server}/served?s=0.2"), cap=1))
        starved = ex.execute(job(HttpRequest(url=f"{server}/served?s=0.01"), cap=1, timeout=0.05))
        patient = ex.execute(job(HttpRequest(url=f"{server}/served?s=0.01"), cap=1))
        outs = await asyncio.gather(first, starved, patient)
        assert [o.result for o in outs] == ["ok", "timeout", "ok"]
        assert SERVING[1] == 1 and ex.slots.out == {} and ex.slots.waiting("t") == 0
    finally:
        await session.close()
