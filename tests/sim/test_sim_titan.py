"""Titan WebSocket: auth, subprotocol negotiation, stream lifecycle, errors, per-IP stats."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from galileo.sim import SimServer
from tests.sim.sim_helpers import SessionFactory, SimFactory, TitanClient, stream_request

COMPUTE_BUDGET = bytes(Pubkey.from_string("ComputeBudget111111111111111111111111111111"))


async def stats(client: aiohttp.ClientSession, sim: SimServer) -> dict[str, Any]:
    async with client.get(sim.url + "/sim/stats") as r:
        body: dict[str, Any] = (await r.json())["titan"]
        return body


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (("v1.api.titan.ag", "v1.api.titan.ag+gzip"), "v1.api.titan.ag+gzip"),
        (("v1.api.titan.ag",), "v1.api.titan.ag"),
    ],
)
async def test_stream_lifecycle(sim: SimServer, bound: SessionFactory, offered: tuple[str, ...], chosen: str) -> None:
    session = bound("127.0.0.3")
    titan = await TitanClient.connect(session, sim.url, protocols=offered)
    assert titan.ws.protocol == chosen
    try:
        await titan.send({"GetInfo": {}})
        info = (await titan.recv())["Response"]["data"]["GetInfo"]
        assert info["settings"]["connection"]["concurrentStreams"] >= 2
        rid = await titan.send(stream_request(Keypair().pubkey(), interval_ms=50))
        response = (await titan.recv())["Response"]
        assert response["requestId"] == rid and response["stream"]["dataType"] == "SwapQuotes"
        sid = response["stream"]["id"]
        frames = [(await titan.recv())["StreamData"] for _ in range(2)]
        assert [f["seq"] for f in frames] == [0, 1] and {f["id"] for f in frames} == {sid}
        for frame in frames:
            quotes = frame["payload"]["SwapQuotes"]["quotes"]
            assert len(quotes) >= 2
            for route in quotes.values():
                assert route["outAmount"] > 0 and route["computeUnitsSafe"] > route["computeUnits"] > 0
                assert all(len(alt) == 32 for alt in route["addressLookupTables"])
                for ix in route["instructions"]:
                    assert set(ix) == {"p", "a", "d"} and len(ix["p"]) == 32 and isinstance(ix["d"], bytes)
                    assert ix["p"] != COMPUTE_BUDGET
                    assert all(set(m) == {"p", "s", "w"} for m in ix["a"])
        s = await stats(session, sim)
        assert s["active_streams_by_ip"] == {"127.0.0.3": 1}
        assert s["connections"][-1]["ip"] == "127.0.0.3" and s["connections"][-1]["protocol"] == chosen
        await titan.send({"StopStream": {"id": sid}})
        while "StreamData" in (msg := await titan.recv()):
            pass
        assert msg == {"Response": {"requestId": rid + 1, "data": {"StreamStopped": {"id": sid}}}}
        assert await titan.recv() == {"StreamEnd": {"id": sid}}
    finally:
        await titan.close()
    for _ in range(100):
        s = await stats(session, sim)
        if not s["connections"][-1]["open"]:
            break
        await asyncio.sleep(0.01)
    assert s["connections_open"] == 0 and s["streams_opened"] == 1 and s["streams_closed"] == 1
    assert s["active_streams"] == 0
    (stream,) = s["streams"]
    assert stream["ip"] == "127.0.0.3" and not stream["active"] and stream["frames"] >= 2


async def test_auth(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(titan_tokens=["good"])
    for token in ("bad", ""):
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await TitanClient.connect(client, sim.url, token=token)
        assert err.value.status == 401
    titan = await TitanClient.connect(client, sim.url, token="good", via_query=True)
    await titan.close()
    async with client.get(sim.url + "/sim/stats") as r:
        by_service = (await r.json())["requests"]["by_service"]["titan"]
    assert by_service == {"401": 2, "101": 1}


async def test_errors_and_stream_limit(sim: SimServer, client: aiohttp.ClientSession) -> None:
    titan = await TitanClient.connect(client, sim.url)
    try:
        user = Keypair().pubkey()
        rid = await titan.send({"NewSwapQuoteStream": {"swap": {"amount": 1}}})
        error = (await titan.recv())["Error"]
        assert error["requestId"] == rid and error["code"] == 400
        unknown = bytes(Pubkey.new_unique())
        rid = await titan.send(stream_request(user, inputMint=unknown))
        assert (await titan.recv())["Error"]["code"] == 404
        rid = await titan.send({"Nope": {}})
        assert (await titan.recv())["Error"]["code"] == 501
        for _ in range(4):
            await titan.send(stream_request(user, interval_ms=5_000))
        limit_rid = await titan.send(stream_request(user, interval_ms=5_000))
        while True:
            msg = await titan.recv()
            if "Error" in msg:
                break
        assert msg["Error"]["requestId"] == limit_rid and msg["Error"]["code"] == 429
    finally:
        await titan.close()
