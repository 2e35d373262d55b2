"""FarmPolicy.pick over fake workers: affinity, hashing, least loaded, cooldowns, pacing."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from broker.jobs import HttpRequest
from broker.protocol import Outcome
from broker.types import Blocked, Job, JobSpec, WorkerInfo
from galileo.policy.allocator import FarmPolicy
from galileo.policy.hashing import hrw_rank


def worker(ip: str, capacity: int = 4, inflight: int = 0) -> WorkerInfo:
    w = WorkerInfo(
        routing_id=ip.encode(),
        worker_id=f"w/{ip}",
        ip=ip,
        family="ipv4",
        bind=True,
        host="h",
        pid=1,
        capacity=capacity,
        registered=0.0,
        last_seen=0.0,
    )
    loop = asyncio.new_event_loop()
    for i in range(inflight):
        w.inflight[-i - 1] = job(loop=loop)
    loop.close()
    return w


def job(upstream: str = "jupiter", loop: asyncio.AbstractEventLoop | None = None, **spec: object) -> Job:
    own = loop is None
    loop = loop or asyncio.new_event_loop()
    j = Job(
        id=1,
        spec=JobSpec(HttpRequest(url="http://x/"), upstream=upstream, **spec),  # type: ignore[arg-type]
        kind="http",
        deadline=100.0,
        submitted=0.0,
        future=loop.create_future(),
    )
    if own:
        loop.close()
    return j


def pool(*ws: WorkerInfo) -> dict[str, WorkerInfo]:
    return {w.worker_id: w for w in ws}


def policy() -> FarmPolicy:
    return FarmPolicy(rng=random.Random(1))


def cool(p: FarmPolicy, ip: str, upstream: str = "jupiter", now: float = 0.0, retry_after: float = 5.0) -> None:
    p.cooldowns.record(ip, upstream, "rate_limited", 429, retry_after, now)


def test_least_loaded_wins_and_ties_rotate() -> None:
    p = policy()
    ws = pool(worker("1.1.1.1", inflight=2), worker("1.1.1.2"), worker("1.1.1.3"))
    picks = Counter()
    for _ in range(20):
        chosen = p.pick(job(), ws, 0.0)
        assert isinstance(chosen, WorkerInfo)
        picks[chosen.ip] += 1
    assert picks["1.1.1.1"] == 0
    assert picks["1.1.1.2"] > 5 and picks["1.1.1.3"] > 5  # spare IPs take turns


def test_cooling_pair_is_skipped_but_other_upstreams_are_not() -> None:
    p = policy()
    ws = pool(worker("1.1.1.1"), worker("1.1.1.2"))
    cool(p, "1.1.1.1")
    for _ in range(10):
        chosen = p.pick(job(), ws, 1.0)
        assert isinstance(chosen, WorkerInfo) and chosen.ip == "1.1.1.2"
    ips = set()
    for _ in range(10):
        chosen = p.pick(job("dflow"), ws, 1.0)
        assert isinstance(chosen, WorkerInfo)
        ips.add(chosen.ip)
    assert ips == {"1.1.1.1", "1.1.1.2"}


def test_everything_cooling_blocks_until_the_earliest_end() -> None:
    p = policy()
    ws = pool(worker("1.1.1.1"), worker("1.1.1.2"))
    cool(p, "1.1.1.1", retry_after=3.0)
    cool(p, "1.1.1.2", retry_after=2.0)
    blocked = p.pick(job(), ws, 0.0)
    assert isinstance(blocked, Blocked) and blocked.until == pytest.approx(2.0) and blocked.upstream_wide


def test_no_credit_blocks_without_a_time() -> None:
    p = policy()
    blocked = p.pick(job(), pool(worker("1.1.1.1", capacity=1, inflight=1)), 0.0)
    assert isinstance(blocked, Blocked) and blocked.until is None


def test_prefer_ip_waits_when_busy_and_moves_when_cooling() -> None:
    p = policy()
    busy = worker("1.1.1.1", capacity=1, inflight=1)
    ws = pool(busy, worker("1.1.1.2"))
    waiting = p.pick(job(prefer_ip="1.1.1.1"), ws, 0.0)
    assert isinstance(waiting, Blocked) and not waiting.upstream_wide
    busy.inflight.clear()
    chosen = p.pick(job(prefer_ip="1.1.1.1"), ws, 0.0)
    assert isinstance(chosen, WorkerInfo) and chosen.ip == "1.1.1.1"
    cool(p, "1.1.1.1")
    moved = p.pick(job(prefer_ip="1.1.1.1"), ws, 1.0)
    assert isinstance(moved, WorkerInfo) and moved.ip == "1.1.1.2"


def test_prefer_ip_that_is_gone_moves() -> None:
    chosen = policy().pick(job(prefer_ip="9.9.9.9"), pool(worker("1.1.1.2")), 0.0)
    assert isinstance(chosen, WorkerInfo) and chosen.ip == "1.1.1.2"


def test_require_ip_never_moves() -> None:
    p = policy()
    ws = pool(worker("1.1.1.1"), worker("1.1.1.2"))
    cool(p, "1.1.1.1", retry_after=4.0)
    blocked = p.pick(job(require_ip="1.1.1.1"), ws, 1.0)
    assert isinstance(blocked, Blocked) and blocked.until == pytest.approx(4.0)
    assert isinstance(p.pick(job(require_ip="7.7.7.7"), ws, 1.0), Blocked)


def test_avoid_ip_is_soft() -> None:
    p = policy()
    ws = pool(worker("1.1.1.1"), worker("1.1.1.2"))
    for _ in range(10):
        chosen = p.pick(job(avoid_ip="1.1.1.1"), ws, 0.0)
        assert isinstance(chosen, WorkerInfo) and chosen.ip == "1.1.1.2"
    only = p.pick(job(avoid_ip="1.1.1.1"), pool(worker("1.1.1.1")), 0.0)
    assert isinstance(only, WorkerInfo) and only.ip == "1.1.1.1"


def test_hash_key_sticks_to_its_owner_and_falls_back_in_rank_order() -> None:
    p = policy()
    ips = [f"1.1.1.{i}" for i in range(1, 9)]
    ws = pool(*(worker(ip) for ip in ips))
    ranked = hrw_rank("jito:frankfurt", ips)
    for _ in range(5):
        chosen = p.pick(job("jito:frankfurt", hash_key="jito:frankfurt"), ws, 0.0)
        assert isinstance(chosen, WorkerInfo) and chosen.ip == ranked[0]
    cool(p, ranked[0], "jito:frankfurt")
    chosen = p.pick(job("jito:frankfurt", hash_key="jito:frankfurt"), ws, 1.0)
    assert isinstance(chosen, WorkerInfo) and chosen.ip == ranked[1]


def test_pacing_blocks_a_pair_and_marks_it_saturated() -> None:
    p = FarmPolicy(known_rates={"jupiter": 2.0}, rng=random.Random(1))
    ws = pool(worker("1.1.1.1"))
    first = p.pick(job(), ws, 0.0)
    assert isinstance(first, WorkerInfo)
    p.on_dispatch(job(), first, 0.0)
    blocked = p.pick(job(), ws, 0.0)
    assert isinstance(blocked, Blocked) and blocked.until == pytest.approx(1 / 1.98)
    assert p.pacing.get("1.1.1.1", "jupiter").saturated(0.1)


def test_outcomes_feed_cooldowns_and_suspension_hooks() -> None:
    p = policy()
    w = worker("1.1.1.1")
    seen: list[tuple[str, str, str]] = []
    suspended: list[str] = []
    p.cooldown_hooks.append(lambda ip, up, reason, s: seen.append((ip, up, reason)))
    p.suspend_hooks.append(lambda ip, why: suspended.append(ip))
    p.on_outcome(job(), w, Outcome(result="rate_limited", status=429, retry_after=2.0), 0.0)
    p.on_outcome(job(), w, Outcome(result="bind_error", error="cannot bind"), 0.0)
    assert seen == [("1.1.1.1", "jupiter", "rate_limited"), ("1.1.1.1", "jupiter", "bind_error")]
    assert suspended == ["1.1.1.1"]
    assert isinstance(p.pick(job("other"), pool(w), 0.0), Blocked)
