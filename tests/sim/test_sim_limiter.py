"""Token buckets per (source IP, service bucket): exact bound, 429 bodies, Retry-After, isolation."""

from __future__ import annotations

import math
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from galileo.sim.limiter import RateLimiter, TokenBucket
from tests.sim.sim_helpers import SOL, USDC, SessionFactory, SimFactory, rpc

QUOTE = {"inputMint": SOL, "outputMint": USDC, "amount": "1000000000"}


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 50),
    burst_seconds=st.floats(0.1, 3),
    gaps=st.lists(st.floats(0, 0.3), min_size=1, max_size=150),
)
def test_bucket_never_exceeds_burst_plus_rate_times_window(
    rate: float, burst_seconds: float, gaps: list[float]
) -> None:
    limiter = RateLimiter(rate, burst_seconds)
    now, passed = 0.0, []
    for gap in gaps:
        now += gap
        if limiter.check("1.2.3.4", "jupiter", now) == 0:
            passed.append(now)
    for i, start in enumerate(passed):
        for j in range(i, len(passed)):
            assert j - i + 1 <= limiter.burst + rate * (passed[j] - start) + 1e-9


def test_retry_after_is_whole_seconds_until_next_token() -> None:
    bucket = TokenBucket(rate=0.25, burst=1, now=0.0)
    assert bucket.take(0.0)
    assert not bucket.take(0.5)
    limiter = RateLimiter(0.25, 1.0)
    assert limiter.check("ip", "rpc", 0.0) == 0
    assert limiter.check("ip", "rpc", 0.5) == math.ceil((1 - 0.125) / 0.25)  # 3.5 s → 4
    assert limiter.check("ip", "rpc", 3.9) == 1
    assert limiter.check("other-ip", "rpc", 0.5) == 0
    assert RateLimiter(None, 1.0).check("ip", "rpc", 0.0) == 0


async def test_one_ip_limited_another_not(sim_factory: SimFactory, bound: SessionFactory) -> None:
    sim = await sim_factory(rate_limit=2.0, burst_seconds=1.0)
    a, b = bound("127.0.0.2"), bound("127.0.0.3")
    statuses = []
    for _ in range(6):
        async with a.get(sim.url + "/jupiter/swap/v1/quote", params=QUOTE) as r:
            statuses.append(r.status)
            if r.status == 429:
                limited = (await r.json(), r.headers["Retry-After"])
    assert statuses[:2] == [200, 200] and 429 in statuses
    body, retry_after = limited
    assert body == {"error": "Too Many Requests"}
    assert int(retry_after) >= 1
    async with b.get(sim.url + "/jupiter/swap/v1/quote", params=QUOTE) as r:
        assert r.status == 200  # another source IP has its own bucket
    async with a.get(sim.url + "/dflow/quote", params=QUOTE) as r:
        assert r.status == 200  # and another service is another bucket
    for _ in range(3):
        async with a.get(sim.url + "/dflow/quote", params=QUOTE) as r:
            last = (r.status, await r.json())
    assert last == (429, {"code": "rate_limit_exceeded", "msg": "Rate limit exceeded, use an API key"})


async def test_jito_limits_per_region_and_rpc_apart_from_staked(sim_factory: SimFactory, bound: SessionFactory) -> None:
    sim = await sim_factory(rate_limit=1.0, burst_seconds=1.0)
    a = bound("127.0.0.4")
    statuses = [(await rpc(a, sim.url, "getTipAccounts", [], "/jito/ny/api/v1/bundles"))[0] for _ in range(3)]
    assert statuses[0] == 200 and statuses[-1] == 429
    assert (await rpc(a, sim.url, "getTipAccounts", [], "/jito/tokyo/api/v1/bundles"))[0] == 200
    assert [(await rpc(a, sim.url, "getSlot"))[0] for _ in range(3)][-1] == 429
    status, body = await rpc(a, sim.url, "getSlot", path="/staked")
    assert status == 200 and isinstance(body["result"], int)


async def test_count_bound_over_http_and_per_second_stats(sim_factory: SimFactory, bound: SessionFactory) -> None:
    rate, burst_seconds = 20.0, 0.5
    sim = await sim_factory(rate_limit=rate, burst_seconds=burst_seconds)
    burst = max(1.0, rate * burst_seconds)
    a = bound("127.0.0.5")
    ok = limited = 0
    started = time.monotonic()
    while (time.monotonic() - started < 0.6 or limited < 5) and ok + limited < 5000:
        status, _ = await rpc(a, sim.url, "getSlot")
        ok += status == 200
        limited += status == 429
    elapsed = time.monotonic() - started
    assert ok <= burst + rate * elapsed
    assert ok >= burst and limited > 0
    async with a.get(sim.url + "/sim/stats") as r:
        stats = await r.json()
    per_second = stats["ok_per_second"]["127.0.0.5"]["rpc"]
    assert sum(per_second.values()) == ok
    assert all(n <= burst + rate for n in per_second.values())
    assert stats["requests"]["by_ip_service"]["127.0.0.5"]["rpc"] == {"200": ok, "429": limited}
