"""The original bot's allocator as the bench runs it, over fake workers with a fake clock."""

from __future__ import annotations

import asyncio
import itertools

from broker.jobs import HttpRequest
from broker.protocol import Outcome, ResultName
from broker.types import Blocked, Job, JobSpec, WorkerInfo
from galileo.bench.original import OriginalBotPolicy
from tests.conftest import fake_worker


def worker(ip: str, capacity: int = 256) -> WorkerInfo:
    return fake_worker(ip, capacity)


_ids = itertools.count(1)


def job(upstream: str = "jupiter") -> Job:
    loop = asyncio.new_event_loop()
    j = Job(
        id=next(_ids),
        spec=JobSpec(HttpRequest(url="http://x/"), upstream=upstream),
        kind="http",
        deadline=100.0,
        submitted=0.0,
        future=loop.create_future(),
    )
    loop.close()
    return j


def pool(*ips: str) -> dict[str, WorkerInfo]:
    return {f"w/{ip}": worker(ip) for ip in ips}


def picked(p: OriginalBotPolicy, ws: dict[str, WorkerInfo], now: float = 0.0) -> str | None:
    choice = p.pick(job(), ws, now)
    return choice.ip if isinstance(choice, WorkerInfo) else None


def outcome(
    p: OriginalBotPolicy, ws: dict[str, WorkerInfo], ip: str, result: ResultName, now: float, status: int = 0
) -> None:
    p.on_outcome(job(), ws[f"w/{ip}"], Outcome(result=result, status=status), now)


def test_round_robin_from_one_counter_and_a_per_ip_inflight_limit() -> None:
    p = OriginalBotPolicy(inflight_limit=2)
    ws = pool("127.0.0.2", "127.0.0.3", "127.0.0.4")
    assert [picked(p, ws) for _ in range(4)] == ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2"]
    j = job()
    ws["w/127.0.0.3"].inflight = {1: j, 2: j}  # its two permits are taken
    assert [picked(p, ws) for _ in range(3)] == ["127.0.0.4", "127.0.0.4", "127.0.0.2"]
    for w in ws.values():
        w.inflight = {1: j, 2: j}
    assert p.pick(job(), ws, 0.0) == Blocked(until=None)  # wait for a permit


def test_flat_cooldowns_per_ip_overwritten_and_cleared_by_any_success() -> None:
    p = OriginalBotPolicy(inflight_limit=2)
    ws = pool("127.0.0.2")
    outcome(p, ws, "127.0.0.2", "rate_limited", now=10.0, status=429)
    assert p.pick(job(), ws, 10.1) == Blocked(until=10.5, upstream_wide=False)
    assert p.pick(job("dflow"), ws, 10.1) == Blocked(until=10.5, upstream_wide=False)  # per IP, not upstream
    outcome(p, ws, "127.0.0.2", "rate_limited", now=10.2, status=429)
    assert p.cooling_until["127.0.0.2"] == 10.7  # flat again: no doubling
    outcome(p, ws, "127.0.0.2", "timeout", now=10.3)
    assert p.cooling_until["127.0.0.2"] == 10.55  # overwritten, not max()ed
    outcome(p, ws, "127.0.0.2", "ok", now=10.31)
    assert picked(p, ws, 10.31) == "127.0.0.2" and p.cleared == 1
    outcome(p, ws, "127.0.0.2", "http_error", now=11.0, status=503)
    assert p.cooling_until["127.0.0.2"] == 11.25
    outcome(p, ws, "127.0.0.2", "http_error", now=11.1, status=404)  # the lease's default: Success
    assert "127.0.0.2" not in p.cooling_until
    assert dict(p.started) == {"rate_limited": 2, "timeout": 1, "server_error": 1}


def test_cooling_ips_are_skipped_and_blocked_until_the_earliest_ends() -> None:
    p = OriginalBotPolicy()
    ws = pool("127.0.0.2", "127.0.0.3")
    outcome(p, ws, "127.0.0.2", "rate_limited", now=0.0, status=429)
    assert {picked(p, ws, 0.1) for _ in range(4)} == {"127.0.0.3"}
    outcome(p, ws, "127.0.0.3", "network_error", now=0.1)
    assert p.pick(job(), ws, 0.2) == Blocked(until=0.35, upstream_wide=False)


def test_an_acquirer_that_saw_a_cooldown_sleeps_through_freed_permits() -> None:
    p = OriginalBotPolicy(inflight_limit=1)
    ws = pool("127.0.0.2", "127.0.0.3")
    outcome(p, ws, "127.0.0.2", "rate_limited", now=0.0, status=429)
    busy = job()
    ws["w/127.0.0.3"].inflight = {busy.id: busy}
    sleeper = job()
    assert p.pick(sleeper, ws, 0.1) == Blocked(until=0.5, upstream_wide=False)
    ws["w/127.0.0.3"].inflight = {}  # a permit frees up
    assert p.pick(sleeper, ws, 0.2) == Blocked(until=0.5, upstream_wide=False)  # still asleep
    assert picked(p, ws, 0.2) == "127.0.0.3"  # a new acquirer scans and takes it
    assert isinstance(p.pick(sleeper, ws, 0.5), WorkerInfo)  # awake: the cooldown is over

    awake = OriginalBotPolicy(inflight_limit=1, sleep_on_cooldown=False)
    outcome(awake, ws, "127.0.0.2", "rate_limited", now=0.0, status=429)
    ws["w/127.0.0.3"].inflight = {busy.id: busy}
    waiter = job()
    assert awake.pick(waiter, ws, 0.1) == Blocked(until=0.5)
    ws["w/127.0.0.3"].inflight = {}
    assert picked(awake, ws, 0.2) == "127.0.0.3" and awake.pick(waiter, ws, 0.2) == ws["w/127.0.0.3"]
