"""Seeded faults: every kind observed from a real client, deterministic, never on /sim/*."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from galileo.sim import FAULT_KINDS
from galileo.sim.faults import FaultPlan
from tests.sim.sim_helpers import SOL, USDC, SimFactory, rpc

QUOTE = {"inputMint": SOL, "outputMint": USDC, "amount": "1000000000"}


async def fault_stats(client: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with client.get(url + "/sim/stats") as r:
        assert r.status == 200  # /sim/* is never faulted
        body: dict[str, Any] = await r.json()
        return body


def test_fault_plan_is_deterministic_and_honours_probabilities() -> None:
    faults = {"5xx": 0.2, "reset": 0.1}
    first = FaultPlan(faults, seed=3).draw()
    plan_a, plan_b = FaultPlan(faults, seed=3), FaultPlan(faults, seed=3)
    seq_a = [plan_a.draw() for _ in range(2000)]
    assert seq_a == [plan_b.draw() for _ in range(2000)]
    assert first == seq_a[0]
    kinds = [f.kind for f in seq_a if f is not None]
    assert 300 < kinds.count("5xx") < 500 and 130 < kinds.count("reset") < 270
    assert FaultPlan({}, 3).draw() is None
    assert all(0.2 <= f.spike_seconds <= 1.0 for f in seq_a if f is not None)


async def test_5xx_uses_each_services_body(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(faults={"5xx": 1.0})
    status, body = await rpc(client, sim.url, "getSlot")
    assert status == 503 and body["error"]["code"] == -32005 and body["id"] == 1
    async with client.get(sim.url + "/dflow/quote", params=QUOTE) as r:
        assert (r.status, await r.json()) == (
            503,
            {"code": "service_unavailable", "msg": "Service temporarily unavailable"},
        )
    async with client.get(sim.url + "/jupiter/swap/v1/quote", params=QUOTE) as r:
        assert r.status == 503 and "error" in await r.json()
    assert (await fault_stats(client, sim.url))["faults"] == {"5xx": 3}


async def test_malformed_and_latency_spike(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(faults={"malformed": 1.0})
    async with client.get(sim.url + "/jupiter/swap/v1/quote", params=QUOTE) as r:
        assert r.status == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(await r.read())
    spiky = await sim_factory(faults={"latency_spike": 1.0})
    async with client.get(spiky.url + "/jupiter/swap/v1/quote", params=QUOTE) as r:
        assert r.status == 200 and int((await r.json())["outAmount"]) > 0
    assert (await fault_stats(client, spiky.url))["faults"] == {"latency_spike": 1}


async def test_reset(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(faults={"reset": 1.0})
    with pytest.raises(aiohttp.ClientConnectionError):
        await rpc(client, sim.url, "getSlot")
    stats = await fault_stats(client, sim.url)
    assert stats["requests"]["by_status"] == {"reset": 1}


async def test_timeout(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(faults={"timeout": 1.0})
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(rpc(client, sim.url, "getSlot"), timeout=0.3)
    stats = await fault_stats(client, sim.url)
    assert stats["requests"]["by_status"] == {"timeout": 1}


async def test_slow_body_arrives_whole(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(faults={"slow_body": 1.0})
    async with client.get(sim.url + "/jupiter/swap/v1/quote", params=QUOTE) as r:
        assert r.status == 200 and r.content_length is not None  # headers first, then the trickle
        body = await r.read()
    assert len(body) == r.content_length and orjson.loads(body)["inputMint"] == SOL
    assert (await fault_stats(client, sim.url))["faults"] == {"slow_body": 1}


async def test_same_seed_same_fault_sequence(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        sim = await sim_factory(seed=5, faults={"5xx": 0.4, "malformed": 0.2})
        statuses = []
        for _ in range(25):
            async with client.get(sim.url + "/jupiter/swap/v1/quote", params=QUOTE) as r:
                body = await r.read()
                statuses.append((r.status, body.endswith(b"}")))
        runs.append(statuses)
    assert runs[0] == runs[1] and len(set(runs[0])) == 3


async def test_control_sets_faults(sim: Any, client: aiohttp.ClientSession) -> None:
    async with client.post(sim.url + "/sim/control", json={"faults": {"5xx": 1.0}}) as r:
        assert (await r.json())["faults"] == {"5xx": 1.0}
    assert (await rpc(client, sim.url, "getSlot"))[0] == 503
    async with client.post(sim.url + "/sim/control", json={"faults": {}}) as r:
        assert r.status == 200
    assert (await rpc(client, sim.url, "getSlot"))[0] == 200
    async with client.post(sim.url + "/sim/control", json={"faults": {"gremlins": 0.5}}) as r:
        assert r.status == 400 and "gremlins" in (await r.json())["error"]
    assert set(FAULT_KINDS) == {"latency_spike", "timeout", "reset", "5xx", "malformed", "slow_body"}
