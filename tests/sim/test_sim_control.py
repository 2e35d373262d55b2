"""/sim/control, /sim/health and API keys: steering a running simulator."""

from __future__ import annotations

from typing import Any

import aiohttp

from galileo.sim import SimServer
from tests.sim.sim_helpers import SOL, USDC, SessionFactory, SimFactory, rpc

QUOTE = {"inputMint": SOL, "outputMint": USDC, "amount": "1000000000"}


async def control(client: aiohttp.ClientSession, sim: SimServer, body: Any) -> tuple[int, Any]:
    async with client.post(sim.url + "/sim/control", json=body) as r:
        return r.status, await r.json()


async def test_ip_override_bans_one_ip_for_some_services(sim: SimServer, bound: SessionFactory) -> None:
    banned, free = bound("127.0.0.3"), bound("127.0.0.4")
    spec = {"127.0.0.3": {"status": 429, "retry_after": 2, "services": ["jupiter"]}}
    status, config = await control(free, sim, {"ip_overrides": spec})
    assert status == 200
    assert config["ip_overrides"] == {"127.0.0.3": {"status": 429, "retry_after": 2, "services": ["jupiter"]}}
    async with banned.get(sim.url + "/jupiter/swap/v1/quote", params=QUOTE) as r:
        assert (r.status, r.headers["Retry-After"], await r.json()) == (429, "2", {"error": "Too Many Requests"})
    async with banned.get(sim.url + "/dflow/quote", params=QUOTE) as r:
        assert r.status == 200
    async with free.get(sim.url + "/jupiter/swap/v1/quote", params=QUOTE) as r:
        assert r.status == 200
    await control(free, sim, {"ip_overrides": {"127.0.0.3": {"status": 403}}})
    status, body = await rpc(banned, sim.url, "getSlot")
    assert status == 403 and body["jsonrpc"] == "2.0" and "error" in body
    _, config = await control(free, sim, {"ip_overrides": {"127.0.0.3": None}})
    assert config["ip_overrides"] == {}
    async with banned.get(sim.url + "/jupiter/swap/v1/quote", params=QUOTE) as r:
        assert r.status == 200


async def test_rate_limit_at_run_time_and_bad_requests(sim: SimServer, client: aiohttp.ClientSession) -> None:
    status, config = await control(client, sim, {"rate_limit": 1, "burst_seconds": 1})
    assert status == 200 and config["rate_limit"] == 1.0
    statuses = [(await rpc(client, sim.url, "getSlot"))[0] for _ in range(3)]
    assert statuses[0] == 200 and statuses[-1] == 429
    await control(client, sim, {"rate_limit": None})
    assert (await rpc(client, sim.url, "getSlot"))[0] == 200
    for bad in ({"rate_limit": -1}, {"nope": 1}, {"ip_overrides": {"1.2.3.4": {"status": "x"}}}, [1]):
        status, body = await control(client, sim, bad)
        assert status == 400 and body["error"]
    status, body = await control(client, sim, {"pool_hold_slots": 1, "seed": 2})  # the market is the start's
    assert (
        status == 400 and body["error"].startswith("seed: fixed at start") and "pool_hold_slots: fixed" in body["error"]
    )
    assert config["pool_hold_slots"] == 6 and config["seed"] == 7
    async with client.get(sim.url + "/sim/health") as r:
        health = await r.json()
    assert health["status"] == "ok" and health["slot"] >= config["slot"]


async def test_api_keys(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(api_keys={"jupiter": "k1", "rpc": "k2"})
    async with client.get(sim.url + "/jupiter/swap/v1/quote", params=QUOTE) as r:
        assert r.status == 401
    async with client.get(sim.url + "/jupiter/swap/v1/quote", params=QUOTE, headers={"x-api-key": "k1"}) as r:
        assert r.status == 200
    assert (await rpc(client, sim.url, "getSlot"))[0] == 401
    assert (await rpc(client, sim.url, "getSlot", path="/rpc?api-key=k2"))[0] == 200
    async with client.get(sim.url + "/dflow/quote", params=QUOTE) as r:
        assert r.status == 200  # keyless services stay keyless
