"""Every simulator endpoint answers with the field names and JSON types of the reference payloads."""

from __future__ import annotations

from typing import Any

import aiohttp
from solders.hash import Hash
from solders.keypair import Keypair
from solders.transaction import VersionedTransaction

from galileo.sim import SimServer
from tests.sim.sim_helpers import (
    SOL,
    USDC,
    SimFactory,
    TitanClient,
    as_reference_bytes,
    b64,
    latest_blockhash,
    reference,
    rpc,
    shape_problems,
    signed_tx,
    stream_request,
    tip_ix,
)

USER = "Cm7vjoV12JuVqCduW6rkGGcgN77NPkzqZr66pkVTzb5b"
SOL_USDC = {"inputMint": SOL, "outputMint": USDC, "amount": "1000000000", "slippageBps": "50"}


def check(actual: Any, ref_name: str, extra: frozenset[str] = frozenset(), maps: frozenset[str] = frozenset()) -> None:
    problems = shape_problems(actual, reference(ref_name), extra=extra, maps=maps)
    assert not problems, f"{ref_name}: " + "; ".join(problems)


async def test_jupiter_quote_and_swap_instructions(sim: SimServer, client: aiohttp.ClientSession) -> None:
    async with client.get(sim.url + "/jupiter/swap/v1/quote", params=SOL_USDC) as r:
        assert r.status == 200
        quote = await r.json()
    check(quote, "jupiter_quote.json", maps=frozenset({"$.mostReliableAmmsQuoteReport.info"}))
    body = {"quoteResponse": quote, "userPublicKey": USER}
    async with client.post(sim.url + "/jupiter/swap/v1/swap-instructions", json=body) as r:
        assert r.status == 200
        check(await r.json(), "jupiter_swap_instructions.json")
    params = {**SOL_USDC, "inputMint": "BadMint1111111111111111111111111111111111111"}
    async with client.get(sim.url + "/jupiter/swap/v1/quote", params=params) as r:
        assert r.status == 400
        assert await r.json() == reference("jupiter_no_route.json")


async def test_jupiter_swap_accepts_the_bots_trimmed_quote(sim: SimServer, client: aiohttp.ClientSession) -> None:
    async with client.get(sim.url + "/jupiter/swap/v1/quote", params=SOL_USDC) as r:
        quote = await r.json()
    documented = (
        "inputMint",
        "inAmount",
        "outputMint",
        "outAmount",
        "otherAmountThreshold",
        "swapMode",
        "slippageBps",
        "priceImpactPct",
        "routePlan",
        "contextSlot",
    )
    trimmed = {k: quote[k] for k in documented} | {"marketInfos": []}
    body = {"quoteResponse": trimmed, "userPublicKey": USER, "wrapAndUnwrapSol": False}
    async with client.post(sim.url + "/jupiter/swap/v1/swap", json=body) as r:
        assert r.status == 200
        swap = await r.json()
    assert set(swap) >= {"swapTransaction", "lastValidBlockHeight", "prioritizationFeeLamports"}
    tx = VersionedTransaction.from_bytes(__import__("base64").b64decode(swap["swapTransaction"]))
    assert str(tx.message.account_keys[0]) == USER


async def test_dflow_quote_and_swap_instructions(sim: SimServer, client: aiohttp.ClientSession) -> None:
    async with client.get(sim.url + "/dflow/quote", params=SOL_USDC) as r:
        assert r.status == 200
        quote = await r.json()
    check(quote, "dflow_quote.json", extra=frozenset({"$.simulatedComputeUnits"}))
    body = {
        "quoteResponse": quote,
        "userPublicKey": USER,
        "dynamicComputeUnitLimit": True,
        "wrapAndUnwrapSol": False,
    }
    async with client.post(sim.url + "/dflow/swap-instructions", json=body) as r:
        assert r.status == 200
        check(await r.json(), "dflow_swap_instructions.json")
    params = {**SOL_USDC, "outputMint": SOL}
    async with client.get(sim.url + "/dflow/quote", params=params) as r:
        assert r.status == 400
        check(await r.json(), "dflow_no_route.json")


async def test_ultra_order_and_execute(sim: SimServer, client: aiohttp.ClientSession) -> None:
    kp = Keypair()
    async with client.get(sim.url + "/jupiter/ultra/v1/order", params={**SOL_USDC, "taker": str(kp.pubkey())}) as r:
        assert r.status == 200
        order = await r.json()
    check(order, "ultra_order.json", extra=frozenset({"$.platformFee"}))
    tx = VersionedTransaction.from_bytes(__import__("base64").b64decode(order["transaction"]))
    signed = VersionedTransaction(tx.message, [kp])
    body = {"signedTransaction": b64(bytes(signed)), "requestId": order["requestId"]}
    async with client.post(sim.url + "/jupiter/ultra/v1/execute", json=body) as r:
        assert r.status == 200
        check(await r.json(), "ultra_execute.json")
    body["requestId"] = "00000000-0000-4000-8000-000000000000"
    async with client.post(sim.url + "/jupiter/ultra/v1/execute", json=body) as r:
        check(await r.json(), "ultra_execute_failed.json")


async def test_jito_methods(sim: SimServer, client: aiohttp.ClientSession) -> None:
    kp = Keypair()
    bh = await latest_blockhash(client, sim.url)
    tx = signed_tx(kp, bh, [tip_ix(kp)])
    bundles = sim.url + "/jito/ny/api/v1/bundles"
    status, body = await rpc(
        client, sim.url, "sendBundle", [[b64(tx)], {"encoding": "base64"}], "/jito/ny/api/v1/bundles"
    )
    assert status == 200
    check(body, "jito_send_bundle.json")
    bundle_id = body["result"]
    async with client.post(sim.url + "/sim/control", json={"advance_slots": 40}) as r:
        assert r.status == 200
    for method, ref in (
        ("getBundleStatuses", "jito_bundle_statuses.json"),
        ("getInflightBundleStatuses", "jito_inflight_bundle_statuses.json"),
    ):
        status, body = await rpc(client, sim.url, method, [[bundle_id]], "/jito/ny/api/v1/bundles")
        assert status == 200
        check(body, ref)
    _, body = await rpc(client, sim.url, "getTipAccounts", [], "/jito/ny/api/v1/bundles")
    assert body == reference("jito_tip_accounts.json")
    async with client.get(sim.url + "/jito/api/v1/bundles/tip_floor") as r:
        check(await r.json(), "jito_tip_floor.json")
    bad = signed_tx(kp, Hash.new_unique(), [tip_ix(kp, 20_000)])
    async with client.post(
        bundles,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "sendBundle",
            "params": [[b64(bad)], {"encoding": "base64"}],
        },
    ) as r:
        assert r.status == 400
        assert await r.json() == reference("jito_invalid_blockhash.json")


async def test_rpc_methods(sim: SimServer, client: aiohttp.ClientSession) -> None:
    status, body = await rpc(client, sim.url, "getLatestBlockhash", [{"commitment": "processed"}])
    assert status == 200
    check(body, "rpc_get_latest_blockhash.json", extra=frozenset({"$.result.context.apiVersion"}))
    kp = Keypair()
    bh = Hash.from_string(body["result"]["value"]["blockhash"])
    tx = signed_tx(kp, bh, [tip_ix(kp)])
    _, body = await rpc(client, sim.url, "sendTransaction", [b64(tx), {"encoding": "base64"}])
    check(body, "rpc_send_transaction.json")
    stale = signed_tx(kp, Hash.new_unique(), [tip_ix(kp)])
    _, body = await rpc(client, sim.url, "sendTransaction", [b64(stale), {"encoding": "base64"}])
    extras = frozenset({"$.error.data.innerInstructions", "$.error.data.replacementBlockhash"})
    check(body, "rpc_preflight_failure.json", extra=extras)


async def test_rate_limited_bodies_are_the_reference_ones(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    sim = await sim_factory(rate_limit=1.0, burst_seconds=1.0)
    for _ in range(2):
        status, body = await rpc(client, sim.url, "getSlot")
    assert status == 429
    assert body == reference("rpc_rate_limited.json")
    for _ in range(2):
        status, body = await rpc(client, sim.url, "getTipAccounts", [], "/jito/ams/api/v1/bundles")
    assert status == 429
    assert body == reference("jito_rate_limited.json")


async def test_titan_messages(sim: SimServer, client: aiohttp.ClientSession) -> None:
    titan = await TitanClient.connect(client, sim.url)
    try:
        await titan.send({"GetInfo": {}})
        check(as_reference_bytes(await titan.recv()), "titan_get_info.json")
        await titan.send(stream_request(Keypair().pubkey()))
        check(as_reference_bytes(await titan.recv()), "titan_new_stream_response.json")
        data = as_reference_bytes(await titan.recv())
        quotes = "$.StreamData.payload.SwapQuotes.quotes"
        check(
            data,
            "titan_stream_data.json",
            maps=frozenset({quotes}),
            extra=frozenset({quotes + ".*.expiresAfterSlot"}),
        )
        assert set(data["StreamData"]["payload"]["SwapQuotes"]["quotes"]) == {"Titan", "Metis"}
        await titan.send({"StopStream": {"id": 0}})
        while "StreamData" in (msg := await titan.recv()):
            pass
        check(msg, "titan_stream_stopped.json")
        check(await titan.recv(), "titan_stream_end.json")
        await titan.send({"StopStream": {"id": 99}})
        check(await titan.recv(), "titan_error.json")
    finally:
        await titan.close()
