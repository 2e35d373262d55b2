"""The simulator tells clients apart by source address, and /sim/stats counts every request once."""

from __future__ import annotations

import aiohttp

from galileo.sim import SimServer
from tests.sim.sim_helpers import SOL, USDC, SessionFactory, SimFactory, rpc

QUOTE = {"inputMint": SOL, "outputMint": USDC, "amount": "250000000"}


async def test_stats_show_each_source_ip(sim: SimServer, bound: SessionFactory) -> None:
    a, b = bound("127.0.0.2"), bound("127.0.0.3")
    for _ in range(3):
        async with a.get(sim.url + "/jupiter/swap/v1/quote", params=QUOTE) as r:
            assert r.status == 200
    for _ in range(2):
        assert (await rpc(b, sim.url, "getSlot"))[0] == 200
    async with b.get(sim.url + "/jupiter/swap/v1/quote", params={**QUOTE, "amount": "x"}) as r:
        assert r.status == 400
    async with a.get(sim.url + "/sim/stats") as r:
        stats = await r.json()
    req = stats["requests"]
    assert req["by_ip"] == {"127.0.0.2": {"200": 3}, "127.0.0.3": {"200": 2, "400": 1}}
    assert req["by_ip_service"]["127.0.0.3"] == {"rpc": {"200": 2}, "jupiter": {"400": 1}}
    assert req["total"] == 6 and req["by_status"] == {"200": 5, "400": 1}
    assert sim.state.stats.by_ip["127.0.0.2"]["200"] == 3


async def test_reset_stats(sim: SimServer, client: aiohttp.ClientSession) -> None:
    assert (await rpc(client, sim.url, "getSlot"))[0] == 200
    async with client.post(sim.url + "/sim/control", json={"reset_stats": True}) as r:
        assert r.status == 200
    async with client.get(sim.url + "/sim/stats") as r:
        assert (await r.json())["requests"]["total"] == 0


async def test_unknown_paths_are_counted_not_limited(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(rate_limit=1.0, faults={"5xx": 1.0})
    for _ in range(3):
        async with client.get(sim.url + "/nope") as r:
            assert r.status == 404
    async with client.get(sim.url + "/sim/stats") as r:
        assert (await r.json())["requests"]["by_service"] == {"other": {"404": 3}}
