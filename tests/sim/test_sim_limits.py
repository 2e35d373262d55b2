"""The limiter zoo over real HTTP: each service's refusal, scopes, concurrency release, run-time control."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from galileo.sim import SimConfig, SimServer
from galileo.sim.errors import JITO_RATE_LIMITED
from galileo.sim.limiter import ConcurrencyCap, build
from galileo.sim.limits import ServiceLimits
from tests.sim.sim_helpers import SOL, USDC, SessionFactory, SimFactory, rpc
from workers.classify import parse_retry_after, retry_after_of

QUOTE = {"inputMint": SOL, "outputMint": USDC, "amount": "1000000000"}
TOO_MANY = {"error": "Too Many Requests"}
RPC_429 = {"jsonrpc": "2.0", "error": {"code": -32429, "message": "max usage reached"}, "id": 1}
DFLOW_429 = {"code": "rate_limit_exceeded", "msg": "Rate limit exceeded, use an API key"}
Call = Callable[[aiohttp.ClientSession, str], Awaitable[tuple[int, Any, dict[str, str]]]]


def _get(path: str, params: dict[str, str] | None = None) -> Call:
    async def call(session: aiohttp.ClientSession, url: str) -> tuple[int, Any, dict[str, str]]:
        async with session.get(url + path, params=params) as r:
            return r.status, await r.json(content_type=None), dict(r.headers)

    return call


def _post(path: str, method: str) -> Call:
    async def call(session: aiohttp.ClientSession, url: str) -> tuple[int, Any, dict[str, str]]:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": []}
        async with session.post(url + path, json=body) as r:
            return r.status, await r.json(content_type=None), dict(r.headers)

    return call


SERVICES: dict[str, tuple[Call, Any]] = {
    "jupiter": (_get("/jupiter/swap/v1/quote", QUOTE), TOO_MANY),
    "ultra": (_get("/jupiter/ultra/v1/order", QUOTE), TOO_MANY),
    "dflow": (_get("/dflow/quote", QUOTE), DFLOW_429),
    "jito": (_post("/jito/ny/api/v1/bundles", "getTipAccounts"), JITO_RATE_LIMITED),
    "rpc": (_post("/rpc", "getSlot"), RPC_429),
    "staked": (_post("/staked", "getSlot"), RPC_429),
    "titan": (_get("/titan/api/v1/ws"), TOO_MANY),
    "tip_floor": (_get("/jito/api/v1/bundles/tip_floor"), TOO_MANY),
}


async def control(session: aiohttp.ClientSession, sim: SimServer, body: Any) -> tuple[int, Any]:
    async with session.post(sim.url + "/sim/control", json=body) as r:
        return r.status, await r.json()


async def stats(session: aiohttp.ClientSession, sim: SimServer) -> dict[str, Any]:
    async with session.get(sim.url + "/sim/stats") as r:
        body: dict[str, Any] = await r.json()
        return body


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_each_service_refuses_with_its_own_status_body_and_retry_after(
    sim_factory: SimFactory, bound: SessionFactory
) -> None:
    sim = await sim_factory(limiters={"all": "penalty:1/60s,box=30s"})
    client = bound("127.0.0.2")
    for service, (call, body) in SERVICES.items():
        first, _, _ = await call(client, sim.url)
        assert first != 429, service  # one per 60 s: the first passes (whatever the handler says)
        status, got, headers = await call(client, sim.url)
        assert (status, got, headers.get("Retry-After")) == (429, body, "30"), service  # into the box: 30 s
        status, got, headers = await call(client, sim.url)
        assert (status, got) == (429, body) and headers["Retry-After"] in ("29", "30"), service
    limits = (await stats(client, sim))["limits"]
    buckets = {"jito:ny" if s == "jito" else s for s in SERVICES}
    assert limits["penalty_box_entries"] == dict.fromkeys(buckets, 1)
    assert limits["refused"]["jupiter"] == {"penalty": 1, "boxed": 1}
    assert limits["refused_by_ip"]["127.0.0.2"]["rpc"] == {"penalty": 1, "boxed": 1}
    assert limits["limiters"]["jupiter"]["spec"] == "penalty:1/60s,box=30s,scope=ip"


async def test_refusal_without_retry_after(sim_factory: SimFactory, bound: SessionFactory) -> None:
    sim = await sim_factory(limiters={"rpc": "sliding:1/60s,retry_after=no", "dflow": "sliding:1/60s"})
    client = bound("127.0.0.2")
    call, body = SERVICES["rpc"]
    assert (await call(client, sim.url))[0] == 200
    status, got, headers = await call(client, sim.url)
    assert (status, got) == (429, body) and "Retry-After" not in headers
    dflow, _ = SERVICES["dflow"]
    await dflow(client, sim.url)
    status, _, headers = await dflow(client, sim.url)
    assert status == 429 and headers["Retry-After"] in ("59", "60")


async def test_a_window_counter_refuses_over_real_http_until_its_weighted_count_falls(
    sim_factory: SimFactory, bound: SessionFactory
) -> None:
    """rolling:N/W over HTTP: N pass, the next is refused with the wait its two counters give (here
    the rest of the hour: the last hour weighs nothing, and this one's two must slide out)."""
    sim = await sim_factory(limiters={"jupiter": "rolling:2/3600s"})
    client = bound("127.0.0.2")
    call, body = SERVICES["jupiter"]
    assert [(await call(client, sim.url))[0] for _ in range(2)] == [200, 200]
    status, got, headers = await call(client, sim.url)
    to_the_hour = 3600 - time.time() % 3600
    assert (status, got) == (429, body)
    assert abs(int(headers["Retry-After"]) - to_the_hour) <= 2
    limits = (await stats(client, sim))["limits"]
    assert limits["refused"]["jupiter"] == {"limit": 1}
    assert limits["limiters"]["jupiter"]["spec"] == "rolling:2/3600s,scope=ip"


async def test_two_ips_sharing_one_key_get_one_budget(sim_factory: SimFactory, bound: SessionFactory) -> None:
    sim = await sim_factory(limiters={"jupiter": "sliding:4/60s,scope=key"})
    a, b, c = bound("127.0.0.2"), bound("127.0.0.3"), bound("127.0.0.4")

    async def quote(session: aiohttp.ClientSession, key: str | None) -> int:
        headers = {"x-api-key": key} if key else None
        async with session.get(sim.url + "/jupiter/swap/v1/quote", params=QUOTE, headers=headers) as r:
            return r.status

    assert [await quote(s, "k1") for s in (a, b, a, b)] == [200] * 4
    assert [await quote(s, "k1") for s in (a, b)] == [429, 429]  # a second IP added no budget
    assert [await quote(c, "k2") for _ in range(5)] == [200] * 4 + [429]  # another key, its own budget
    assert [await quote(a, None) for _ in range(5)] == [200] * 4 + [429]  # keyless: the IP's own budget
    by_ip = (await stats(a, sim))["requests"]["by_ip_service"]
    assert by_ip["127.0.0.2"]["jupiter"] == {"200": 6, "429": 2}
    assert by_ip["127.0.0.3"]["jupiter"] == {"200": 2, "429": 1}


async def test_keyed_scope_reads_each_services_documented_key(sim_factory: SimFactory, bound: SessionFactory) -> None:
    sim = await sim_factory(limiters={"all": "sliding:1/60s,scope=key"})
    a, b = bound("127.0.0.2"), bound("127.0.0.3")
    ways = [
        ("jito", "post", "/jito/ny/api/v1/bundles", {"x-jito-auth": "u1"}, None),
        ("jito", "post", "/jito/ny/api/v1/bundles", None, {"uuid": "u1"}),
        ("rpc", "post", "/rpc", None, {"api-key": "r1"}),
        ("rpc", "post", "/rpc", {"x-api-key": "r1"}, None),
        ("dflow", "get", "/dflow/quote", {"x-api-key": "d1"}, QUOTE),
        ("ultra", "get", "/jupiter/ultra/v1/order", {"x-api-key": "u1"}, QUOTE),
    ]
    for service, verb, path, headers, params in ways:
        statuses = []
        for session in (a, b):
            body = {"jsonrpc": "2.0", "id": 1, "method": "getSlot", "params": []} if verb == "post" else None
            async with session.request(verb, sim.url + path, headers=headers, params=params, json=body) as r:
                statuses.append(r.status)
        assert statuses[1] == 429, (service, headers, params)  # the second IP spent the same key's budget
        await control(a, sim, {"reset_limiters": True})


async def test_jito_limits_per_region_unless_told_per_ip(sim_factory: SimFactory, bound: SessionFactory) -> None:
    sim = await sim_factory(limiters={"jito": "sliding:1/60s", "jito:tokyo": "sliding:2/60s"})
    a = bound("127.0.0.2")

    async def send(region: str) -> int:
        return (await rpc(a, sim.url, "getTipAccounts", [], f"/jito/{region}/api/v1/bundles"))[0]

    assert [await send("ny") for _ in range(2)] == [200, 429]
    assert await send("amsterdam") == 200  # another region, another (IP, region) budget
    assert [await send("tokyo") for _ in range(3)] == [200, 200, 429]  # a region with a limiter of its own
    status, config = await control(a, sim, {"limiters": {"jito": "sliding:1/60s,scope=ip"}})
    assert status == 200 and config["limiters"] == {"jito": "sliding:1/60s,scope=ip", "jito:tokyo": "sliding:2/60s"}
    assert [await send("ny"), await send("frankfurt")] == [200, 429]  # one budget per IP over regions
    assert await send("tokyo") == 429  # untouched by the change: its state lived on


async def test_global_scope_is_shared_by_everyone(sim_factory: SimFactory, bound: SessionFactory) -> None:
    sim = await sim_factory(limiters={"rpc": "sliding:3/60s,scope=global"}, rate_limit=1000)
    sessions = [bound(f"127.0.0.{i}") for i in range(2, 6)]
    statuses = [(await rpc(s, sim.url, "getSlot"))[0] for s in sessions]
    assert sorted(statuses) == [200, 200, 200, 429]
    assert (await rpc(sessions[0], sim.url, "getSlot", path="/staked"))[0] == 200  # rate_limit serves the rest


async def test_concurrency_cap_releases_on_completion_and_on_disconnect(
    sim_factory: SimFactory, bound: SessionFactory
) -> None:
    sim = await sim_factory(limiters={"rpc": "concurrency:1"}, latency={"rpc": "60000"})
    a, b = bound("127.0.0.2"), bound("127.0.0.3")
    (limiter,) = sim.state.limits.route("rpc").limiters
    assert isinstance(limiter, ConcurrencyCap)
    started = time.monotonic()
    hanging = asyncio.create_task(rpc(a, sim.url, "getSlot"))  # holds A's only slot for 60 s
    await until(lambda: limiter.in_flight("127.0.0.2") == 1, "A's first request in flight")
    await control(b, sim, {"latency": {"rpc": None}})  # the next answers come at once
    status, body = await rpc(a, sim.url, "getSlot")
    assert (status, body) == (429, RPC_429)
    assert (await rpc(b, sim.url, "getSlot"))[0] == 200  # B has a slot of its own
    assert limiter.in_flight("127.0.0.3") == 0  # released on completion
    hanging.cancel()  # the client goes away
    with contextlib.suppress(asyncio.CancelledError):
        await hanging
    await until(lambda: limiter.in_flight("127.0.0.2") == 0, "the slot released after the disconnect")
    assert (await rpc(a, sim.url, "getSlot"))[0] == 200
    body = await stats(b, sim)
    assert body["requests"]["by_ip_service"]["127.0.0.2"]["rpc"] == {"cancelled": 1, "429": 1, "200": 1}
    assert body["limits"]["concurrency_refusals"] == {"rpc": 1}
    held = body["limits"]["held"]["rpc"]  # three admitted; the cancelled one held its slot until its client left
    # Each hold lies within the test's time; B's overlapped the cancelled one's, so only their sum is bounded.
    assert held["admitted"] == 3 and 0 < held["seconds"] < 3 * (time.monotonic() - started)
    assert len(limiter) == 0


async def test_limiters_and_latency_at_run_time(sim: SimServer, client: aiohttp.ClientSession) -> None:
    status, config = await control(client, sim, {"limiters": {"rpc": "sliding:2/60s", "dflow": "concurrency:3"}})
    assert status == 200 and config["limiters"] == {"rpc": "sliding:2/60s", "dflow": "concurrency:3"}
    assert [(await rpc(client, sim.url, "getSlot"))[0] for _ in range(3)] == [200, 200, 429]
    _, config = await control(client, sim, {"limiters": {"dflow": None}, "latency": {"jupiter": "5,jitter=1"}})
    assert config["limiters"] == {"rpc": "sliding:2/60s"} and config["latency"] == {"jupiter": "5,jitter=1"}
    assert (await rpc(client, sim.url, "getSlot"))[0] == 429  # unchanged spec: its state lived on
    _, config = await control(client, sim, {"reset_limiters": True})
    assert (await rpc(client, sim.url, "getSlot"))[0] == 200
    await control(client, sim, {"limiters": {"rpc": "none"}, "rate_limit": 1})
    assert [(await rpc(client, sim.url, "getSlot"))[0] for _ in range(3)] == [200] * 3  # exempt from rate_limit
    bad = [
        ({"limiters": {"jupyter": "sliding:1/1s"}}, "limiters.jupyter: unknown target"),
        ({"limiters": {"rpc": "sliding:1"}}, "limiters.rpc: "),
        ({"limiters": {"dflow": "bucket:20/1s & fixed:600"}}, "limiters.dflow: fixed: expected N/W"),
        ({"limiters": ["rpc"]}, "limiters: expected an object"),
        ({"latency": {"rpc": "-5"}}, "latency.rpc: "),
        ({"latency": {"jito:": "5"}}, "latency.jito:: unknown target"),
        ({"stats_seconds": 0}, "stats_seconds: "),
        ({"reset_limiters": "yes"}, "reset_limiters: expected true or false"),
    ]
    for body, message in bad:
        status, answer = await control(client, sim, body)
        assert status == 400 and message in answer["error"], (body, answer)
    _, config = await control(client, sim, {})
    assert config["limiters"] == {"rpc": "none"}  # nothing half-applied


@pytest.mark.parametrize("shorthand", [True, False])
async def test_rate_limit_flags_are_a_token_bucket_per_service(
    shorthand: bool, sim_factory: SimFactory, bound: SessionFactory
) -> None:
    kwargs: dict[str, Any] = (
        {"rate_limit": 0.01, "burst_seconds": 200}  # two tokens, then one per 100 s
        if shorthand
        else {"limiters": {"all": "bucket:0.01/1s,burst=200"}}
    )
    sim = await sim_factory(**kwargs)
    a = bound("127.0.0.2")
    assert [(await rpc(a, sim.url, "getSlot"))[0] for _ in range(3)] == [200, 200, 429]
    assert (await SERVICES["jupiter"][0](a, sim.url))[0] == 200  # a budget per service
    spec = (await stats(a, sim))["limits"]["limiters"]["rpc"]["spec"]
    assert spec == "bucket:0.01/1s,burst=200s,scope=ip"


def test_limiter_clock_is_wall_time_so_fixed_windows_match_the_stats_seconds() -> None:
    limits = ServiceLimits(SimConfig())
    first = limits.now()
    assert abs(first - time.time()) < 1.0  # fixed:N/1s resets on the whole seconds /sim/stats counts in
    assert limits.now() >= first


async def test_stacked_limits_each_judge_with_their_own_scope_and_give_back_only_slots(
    sim_factory: SimFactory, bound: SessionFactory
) -> None:
    """``sliding:3/60s & sliding:2/60s,scope=global``: a per-IP limit under one shared by every IP.
    A's two requests spend the shared budget, so B's first is refused by it (its Retry-After, a
    whole minute), though B's own limit had room. Then ``concurrency:1 & sliding:1/60s`` on RPC:
    refused by the window, a request gives back the cap's slot, so the next is refused by the
    window again, not by the cap."""
    sim = await sim_factory(
        limiters={"jupiter": "sliding:3/60s & sliding:2/60s,scope=global", "rpc": "concurrency:1 & sliding:1/60s"}
    )
    a, b = bound("127.0.0.2"), bound("127.0.0.3")
    call, _ = SERVICES["jupiter"]
    assert [(await call(a, sim.url))[0] for _ in range(2)] == [200, 200]
    status, _, headers = await call(b, sim.url)
    assert status == 429 and 58 <= int(headers["Retry-After"]) <= 60
    rpc_call, _ = SERVICES["rpc"]
    assert [(await rpc_call(a, sim.url))[0] for _ in range(3)] == [200, 429, 429]
    limits = (await stats(a, sim))["limits"]
    assert limits["refused"]["jupiter"] == {"limit": 1}
    assert limits["refused"]["rpc"] == {"limit": 2}  # never the cap's: each refusal gave its slot back
    assert limits["limiters"]["jupiter"]["spec"] == "sliding:3/60s,scope=ip & sliding:2/60s,scope=global"


async def test_a_limit_may_say_when_in_rate_limit_reset_and_the_workers_read_it(
    sim_factory: SimFactory, bound: SessionFactory
) -> None:
    """``retry_after=reset``: the refusal carries ``RateLimit-Reset`` and no ``Retry-After``, as many
    proxies answer; the workers read it as they read ``Retry-After``."""
    sim = await sim_factory(limiters={"jupiter": "sliding:1/60s,retry_after=reset"})
    client = bound("127.0.0.2")
    call, _ = SERVICES["jupiter"]
    assert (await call(client, sim.url))[0] == 200
    status, _, headers = await call(client, sim.url)
    assert status == 429 and "Retry-After" not in headers and 59 <= int(headers["RateLimit-Reset"]) <= 60
    seconds = parse_retry_after(retry_after_of(headers))
    assert seconds is not None and 59 <= seconds <= 60


async def test_a_limit_may_say_one_second_whatever_it_holds(sim_factory: SimFactory, bound: SessionFactory) -> None:
    """``retry_after=one``: every refusal says ``Retry-After: 1``, as many gateways do, though the window
    holds the budget for a minute: a client that believes it is refused again a second later."""
    sim = await sim_factory(limiters={"jupiter": "sliding:1/60s,retry_after=one", "dflow": "sliding:1/60s"})
    client = bound("127.0.0.2")
    for service, said in (("jupiter", (1, 1)), ("dflow", (59, 60))):
        call, _ = SERVICES[service]
        assert (await call(client, sim.url))[0] == 200
        status, _, headers = await call(client, sim.url)
        assert status == 429 and said[0] <= int(headers["Retry-After"]) <= said[1], (service, headers)
    limits = (await stats(client, sim))["limits"]
    assert limits["limiters"]["jupiter"]["spec"] == "sliding:1/60s,scope=ip,retry_after=one"


async def test_a_gateways_limit_refuses_at_once_while_answers_take_the_latency(
    sim_factory: SimFactory, bound: SessionFactory
) -> None:
    """``refuse=at_once``: the limit stands in front of the upstream, as a gateway's does, and says no
    before the route's latency; a plain limit's refusal waits it out as an answer does."""
    sim = await sim_factory(
        limiters={"jupiter": "sliding:1/60s,refuse=at_once", "dflow": "sliding:1/60s"},
        latency={"jupiter": "400", "dflow": "400"},
    )
    client = bound("127.0.0.2")
    took = {}
    for service in ("jupiter", "dflow"):
        call, _ = SERVICES[service]
        for want in (200, 429):
            start = time.monotonic()
            assert (await call(client, sim.url))[0] == want
            took[service, want] = time.monotonic() - start
    assert took["jupiter", 200] >= 0.4 and took["jupiter", 429] < 0.2, took
    assert took["dflow", 200] >= 0.4 and took["dflow", 429] >= 0.4, took


async def test_a_queue_keeps_requests_waiting_their_turn_and_refuses_past_its_burst(
    sim_factory: SimFactory, bound: SessionFactory
) -> None:
    """``queue:5/1s,burst=0.5``: four quotes at once from one IP; one leaves every 200 ms, so three are
    answered at about 0, 200 and 400 ms and the fourth, which would wait 600 ms, is refused at once
    (with the route's latency, 0 here). Another IP has a line of its own."""
    sim = await sim_factory(limiters={"jupiter": "queue:5/1s,burst=0.5"})
    call, _ = SERVICES["jupiter"]
    client = bound("127.0.0.2")
    start = time.monotonic()

    async def timed() -> tuple[int, float]:
        status, _, _ = await call(client, sim.url)
        return status, time.monotonic() - start

    got = sorted(await asyncio.gather(*(timed() for _ in range(4))), key=lambda r: r[1])
    assert sorted(status for status, _ in got) == [200, 200, 200, 429], got
    answered = [took for status, took in got if status == 200]
    refused = next(took for status, took in got if status == 429)
    assert answered[0] < 0.15 and 0.17 <= answered[1] < 0.35 and 0.37 <= answered[2] < 0.6, got
    assert refused < 0.15, got
    status, _, _ = await call(bound("127.0.0.3"), sim.url)
    assert status == 200


async def test_a_shed_refuses_some_requests_at_random_saying_retry_after_one(
    sim_factory: SimFactory, bound: SessionFactory
) -> None:
    """``shed:0.5``: half the quotes, whatever their pace, are refused with ``Retry-After: 1``, the very
    ones a fresh limiter draws (its seed is fixed, so a run of the simulator sheds the same requests)."""
    sim = await sim_factory(limiters={"jupiter": "shed:0.5"})
    client = bound("127.0.0.2")
    call, body = SERVICES["jupiter"]
    drawn = build("shed:0.5")
    expected = [200 if drawn.admit("k", 0.0).ok else 429 for _ in range(40)]
    answers = [await call(client, sim.url) for _ in range(40)]
    assert [status for status, _, _ in answers] == expected
    assert expected.count(200) >= 5 and expected.count(429) >= 5
    assert {(got == body, headers.get("Retry-After")) for status, got, headers in answers if status == 429} == {
        (True, "1")
    }
    limits = (await stats(client, sim))["limits"]
    assert limits["refused"]["jupiter"] == {"shed": expected.count(429)}
    assert limits["limiters"]["jupiter"]["spec"] == "shed:0.5,scope=ip"


async def test_a_request_shed_after_a_bucket_admitted_it_still_spent_its_token(
    sim_factory: SimFactory, bound: SessionFactory
) -> None:
    """``bucket:0.002/1s,burst=2500 & shed:0.5``: five tokens, then one per 500 s. The shed refuses some
    of the five the bucket admits, and those spent their tokens all the same (an upstream that sheds
    load counts the request first), so the sixth is refused by the bucket, fewer than five answered."""
    sim = await sim_factory(limiters={"jupiter": "bucket:0.002/1s,burst=2500 & shed:0.5"})
    client = bound("127.0.0.2")
    call, _ = SERVICES["jupiter"]
    drawn = build("shed:0.5")
    expected = [200 if drawn.admit("k", 0.0).ok else 429 for _ in range(5)]
    assert 200 in expected and 429 in expected  # the fixed seed sheds some of the five, not all
    answers = [await call(client, sim.url) for _ in range(6)]
    assert [status for status, _, _ in answers[:5]] == expected
    assert {headers.get("Retry-After") for status, _, headers in answers[:5] if status == 429} == {"1"}
    status, _, headers = answers[5]
    assert status == 429 and 490 <= int(headers["Retry-After"]) <= 500  # the bucket's: its tokens are gone
    limits = (await stats(client, sim))["limits"]
    assert limits["refused"]["jupiter"] == {"shed": expected.count(429), "limit": 1}
