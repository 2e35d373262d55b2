"""Latency per service: seeded, deterministic, the documented shape; checked on the drawn delays, not wall time."""

from __future__ import annotations

import math
import statistics

import aiohttp
import pytest

from galileo.sim import SimServer, middleware
from galileo.sim.latency import LatencyModel, LatencySpec, parse_latency
from tests.sim.sim_helpers import SOL, USDC, SessionFactory, SimFactory, rpc

QUOTE = {"inputMint": SOL, "outputMint": USDC, "amount": "1000000000"}


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("150", LatencySpec(150.0)),
        ("150ms,jitter=50", LatencySpec(150.0, 50.0)),
        ("150,jitter=50,spike=0.01:2000", LatencySpec(150.0, 50.0, 0.01, 2000.0)),
        ("0,spike=1:10", LatencySpec(0.0, 0.0, 1.0, 10.0)),
    ],
)
def test_parse(text: str, spec: LatencySpec) -> None:
    assert parse_latency(text) == spec
    assert parse_latency(str(spec)) == spec


@pytest.mark.parametrize(
    "text", ["", "-1", "fast", "150,jitter", "150,jitter=-2", "150,spike=2:10", "150,spike=0.1", "1,x=2"]
)
def test_bad_latency(text: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_latency(text)


def test_same_seed_same_delays_and_streams_are_independent() -> None:
    spec = parse_latency("150,jitter=50,spike=0.05:2000")
    one, two = LatencyModel(spec, 7, "jupiter/jupiter"), LatencyModel(spec, 7, "jupiter/jupiter")
    first = [one.sample() for _ in range(500)]
    assert first == [two.sample() for _ in range(500)]
    assert first != [LatencyModel(spec, 8, "jupiter/jupiter").sample() for _ in range(500)]
    assert first != [LatencyModel(spec, 7, "dflow/dflow").sample() for _ in range(500)]


def test_the_distribution_has_the_documented_shape() -> None:
    model = LatencyModel(parse_latency("150,jitter=50"), 1, "shape")
    ms = [model.sample() * 1000 for _ in range(40_000)]
    jitter = [x - 150 for x in ms]
    assert min(jitter) > 0  # the base is a floor
    assert statistics.fmean(jitter) == pytest.approx(50, rel=0.03)
    assert statistics.stdev(jitter) == pytest.approx(50, rel=0.08)
    sigma2 = math.log(2)
    assert statistics.median(jitter) == pytest.approx(50 * math.exp(-sigma2 / 2), rel=0.03)  # lognormal median
    logs = [math.log(x) for x in jitter]
    assert statistics.stdev(logs) == pytest.approx(math.sqrt(sigma2), rel=0.03)  # normal in log space
    skew = statistics.fmean(((x - 50) / 50) ** 3 for x in jitter)
    assert skew > 2  # the long right tail (lognormal with sigma^2 = ln 2: skewness 4)


def test_spikes_are_rare_and_sized() -> None:
    model = LatencyModel(parse_latency("100,spike=0.01:2000"), 3, "spikes")
    ms = [round(model.sample() * 1000, 6) for _ in range(50_000)]
    assert set(ms) == {100.0, 2100.0}
    assert ms.count(2100.0) / len(ms) == pytest.approx(0.01, abs=0.002)
    plain = LatencyModel(parse_latency("150"), 3, "plain")
    assert {plain.sample() for _ in range(100)} == {0.15}


async def test_the_simulator_waits_exactly_the_drawn_delays(
    sim_factory: SimFactory, bound: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def record(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(middleware, "_sleep", record)
    sim = await sim_factory(
        latency={"rpc": "150,jitter=50,spike=0.1:2000", "jito:ny": "40"},
        latency_ms=7,
        limiters={"rpc": "sliding:3/60s"},
        seed=5,
    )
    a = bound("127.0.0.2")
    statuses = [(await rpc(a, sim.url, "getSlot"))[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    expected = LatencyModel(parse_latency("150,jitter=50,spike=0.1:2000"), 5, "rpc/rpc")
    assert slept == [expected.sample() for _ in range(5)]  # refusals wait their draw too
    slept.clear()
    await rpc(a, sim.url, "getTipAccounts", [], "/jito/ny/api/v1/bundles")
    await rpc(a, sim.url, "getTipAccounts", [], "/jito/tokyo/api/v1/bundles")
    async with a.get(sim.url + "/dflow/quote", params=QUOTE) as r:
        assert r.status == 200
    assert slept == [0.04, 0.007, 0.007]  # a region's own, then the latency_ms shorthand
    slept.clear()
    async with a.get(sim.url + "/sim/stats") as r:
        assert r.status == 200
    assert slept == []  # /sim/* is never delayed


async def test_latency_changes_at_run_time(sim: SimServer, client: aiohttp.ClientSession) -> None:
    async with client.post(sim.url + "/sim/control", json={"latency": {"all": "20,jitter=5"}, "latency_ms": 3}) as r:
        config = await r.json()
    assert config["latency"] == {"all": "20,jitter=5"} and config["latency_ms"] == 3
    route = sim.state.limits.route("dflow")
    assert route.latency is not None and route.latency.spec == LatencySpec(20.0, 5.0)
    async with client.post(sim.url + "/sim/control", json={"latency": {"all": None}}) as r:
        assert (await r.json())["latency"] == {}
    route = sim.state.limits.route("dflow")
    assert route.latency is not None and route.latency.spec == LatencySpec(3.0)  # back to the shorthand
