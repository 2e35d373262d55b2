"""Titan WebSocket: auth, subprotocol negotiation, stream lifecycle, errors, per-IP stats."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from galileo.sim import SimServer
from galileo.sim.titan_auth import TokenClaims, claims_of, mint_token
from tests.sim.sim_helpers import SOL, USDC, SessionFactory, SimFactory, TitanClient, stream_request

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


# --- Titan's limits: one connection per jti, concurrentStreams, tokens that expire -------------------


async def post_control(client: aiohttp.ClientSession, sim: SimServer, body: dict[str, Any]) -> dict[str, Any]:
    async with client.post(sim.url + "/sim/control", json=body) as r:
        answer: dict[str, Any] = await r.json()
        assert r.status == 200, answer
        return answer


async def test_one_connection_per_jti_switchable_at_run_time(sim: SimServer, client: aiohttp.ClientSession) -> None:
    a1 = await TitanClient.connect(client, sim.url, token=mint_token("alice"))
    b1 = await TitanClient.connect(client, sim.url, token=mint_token("bob"))  # another jti: fine
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:  # alice again, with a new token of hers
        await TitanClient.connect(client, sim.url, token=mint_token("alice", ttl=600))
    assert err.value.status == 409
    assert (await post_control(client, sim, {"titan_connections_per_jti": 0}))["titan_connections_per_jti"] == 0
    a2 = await TitanClient.connect(client, sim.url, token=mint_token("alice"))
    s = await stats(client, sim)
    assert s["refused"] == {"token_in_use": 1} and s["connections_open"] == 3
    assert len({c["token"] for c in s["connections"]}) == 2 and "alice" not in str(s)  # fingerprints only
    await post_control(client, sim, {"titan_connections_per_jti": 1})
    await a1.close()
    with pytest.raises(aiohttp.WSServerHandshakeError):  # a2 still holds alice's one
        await TitanClient.connect(client, sim.url, token=mint_token("alice"))
    for titan in (a2, b1):
        await titan.close()
    plain = await TitanClient.connect(client, sim.url, token="not-a-jwt")  # a plain token is its own jti
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await TitanClient.connect(client, sim.url, token="not-a-jwt", via_query=True)
    await plain.close()


async def test_concurrent_streams_follow_the_control_and_get_info(
    sim: SimServer, client: aiohttp.ClientSession
) -> None:
    await post_control(client, sim, {"titan_concurrent_streams": 2})
    titan = await TitanClient.connect(client, sim.url)
    try:
        await titan.send({"GetInfo": {}})
        info = (await titan.recv())["Response"]["data"]["GetInfo"]
        assert info["settings"]["connection"]["concurrentStreams"] == 2
        user = Keypair().pubkey()
        ids = [await titan.send(stream_request(user, amount=10**9 * (i + 1), interval_ms=5_000)) for i in range(3)]
        answers: list[dict[str, Any]] = []
        while len(answers) < 3:
            msg = await titan.recv()
            if "StreamData" not in msg:
                answers.append(msg)
        assert [("Error" in m) for m in answers] == [False, False, True]
        assert answers[2]["Error"] == {
            "requestId": ids[2],
            "code": 429,
            "message": "too many concurrent streams (max 2)",
        }
        s = await stats(client, sim)
        assert s["refused"] == {"stream_limit": 1}
        assert sorted(st["amount"] for st in s["streams"] if st["active"]) == [10**9, 2 * 10**9]
        assert {st["pair"] for st in s["streams"]} == {f"{SOL}->{USDC}"}
    finally:
        await titan.close()


async def test_a_connection_is_closed_when_its_token_expires(sim: SimServer, client: aiohttp.ClientSession) -> None:
    expired = mint_token("carol", ttl=-1)
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await TitanClient.connect(client, sim.url, token=expired)
    assert err.value.status == 401
    titan = await TitanClient.connect(client, sim.url, token=mint_token("dave", ttl=0.5))
    msg = await titan.ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and (msg.data, msg.extra) == (1008, "token expired")
    s = await stats(client, sim)
    assert s["refused"] == {"token_expired": 2} and s["connections"][-1]["close_reason"] == "token expired"
    # Switched off at run time: an expired token is let in and kept.
    await post_control(client, sim, {"titan_token_expiry": False})
    kept = await TitanClient.connect(client, sim.url, token=expired)
    await kept.send({"GetInfo": {}})
    assert "Response" in await kept.recv()
    await post_control(client, sim, {"titan_token_expiry": True})  # and on again: closed within a second
    msg = await kept.ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008


async def test_titan_limits_are_validated(sim: SimServer, client: aiohttp.ClientSession) -> None:
    for body in ({"titan_concurrent_streams": 0}, {"titan_connections_per_jti": -1}):
        async with client.post(sim.url + "/sim/control", json=body) as r:
            assert r.status == 400 and next(iter(body)) in (await r.json())["error"]


def test_token_claims() -> None:
    token = mint_token("erin", ttl=60, now=1_000)
    assert claims_of(token) == TokenClaims(jti="erin", exp=1_060)
    assert claims_of("plain") == TokenClaims(jti="plain", exp=None)
    assert claims_of("a.b.c") == TokenClaims(jti="a.b.c", exp=None)  # not JSON claims: the token itself
