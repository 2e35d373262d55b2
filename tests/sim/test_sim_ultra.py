"""Jupiter Ultra: order a real unsigned transaction, sign it, execute it, see it land."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import aiohttp
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from galileo.sim import SimServer
from tests.sim.sim_helpers import SOL, USDC, SimFactory, b64, rpc

ORDER = {"inputMint": SOL, "outputMint": USDC, "amount": "25000000"}  # the funded wallet holds SOL


async def order(
    client: aiohttp.ClientSession, sim: SimServer, taker: Keypair | None, amount: str = "25000000"
) -> dict[str, Any]:
    params = {**ORDER, "amount": amount} | ({"taker": str(taker.pubkey())} if taker else {})
    async with client.get(sim.url + "/jupiter/ultra/v1/order", params=params) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def execute(client: aiohttp.ClientSession, sim: SimServer, body: dict[str, Any]) -> tuple[int, Any]:
    async with client.post(sim.url + "/jupiter/ultra/v1/execute", json=body) as r:
        return r.status, await r.json()


def sign(order_body: dict[str, Any], kp: Keypair) -> str:
    unsigned = VersionedTransaction.from_bytes(base64.b64decode(order_body["transaction"]))
    return b64(bytes(VersionedTransaction(unsigned.message, [kp])))


async def test_order_sign_execute_lands(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(slot_ms=60_000, land_delay_slots=0)  # one slot: the pool pays what was quoted
    kp = Keypair()
    o = await order(client, sim, kp)
    uuid.UUID(o["requestId"])
    tx = VersionedTransaction.from_bytes(base64.b64decode(o["transaction"]))
    msg = tx.message
    assert isinstance(msg, MessageV0) and msg.account_keys[0] == kp.pubkey() and msg.address_table_lookups
    assert str(msg.recent_blockhash) in sim.state.ledger.issued
    assert bytes(msg.instructions[0].data)[0] == 2  # SetComputeUnitLimit first
    signed = sign(o, kp)
    status, result = await execute(client, sim, {"signedTransaction": signed, "requestId": o["requestId"]})
    assert status == 200 and result["status"] == "Success" and result["code"] == 0
    assert result["signature"] == str(VersionedTransaction.from_bytes(base64.b64decode(signed)).signatures[0])
    assert result["totalOutputAmount"] == o["outAmount"]
    _, st = await rpc(client, sim.url, "getSignatureStatuses", [[result["signature"]]])
    assert st["result"]["value"][0]["slot"] == int(result["slot"])
    again = await execute(client, sim, {"signedTransaction": signed, "requestId": o["requestId"]})
    assert again == (200, result)  # executing the same signed order again is idempotent


async def test_order_without_taker_has_no_transaction(sim: SimServer, client: aiohttp.ClientSession) -> None:
    o = await order(client, sim, None)
    assert o["transaction"] == "" and o["taker"] is None and int(o["outAmount"]) > 0


async def test_execute_failures(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(slot_ms=20, blockhash_ttl_blocks=3)
    kp = Keypair()
    o = await order(client, sim, kp)
    rid = o["requestId"]
    status, body = await execute(client, sim, {"signedTransaction": sign(o, kp)})
    assert (status, body["code"]) == (400, -4)
    status, body = await execute(client, sim, {"requestId": rid})
    assert (status, body["code"]) == (400, -5)
    _, body = await execute(client, sim, {"signedTransaction": sign(o, kp), "requestId": str(uuid.uuid4())})
    assert (body["status"], body["code"]) == ("Failed", -1)
    _, body = await execute(client, sim, {"signedTransaction": "bm90IGEgdHg=", "requestId": rid})
    assert body["code"] == -2
    _, body = await execute(client, sim, {"signedTransaction": o["transaction"], "requestId": rid})
    assert body["code"] == -1003  # the unsigned transaction, sent back as is
    forged = VersionedTransaction.from_bytes(base64.b64decode(o["transaction"]))
    forged.signatures = [Signature.new_unique()]
    _, body = await execute(client, sim, {"signedTransaction": b64(bytes(forged)), "requestId": rid})
    assert body["code"] == -2
    other = await order(client, sim, kp, amount="26000000")
    _, body = await execute(client, sim, {"signedTransaction": sign(other, kp), "requestId": rid})
    assert body["code"] == -3  # a transaction that is not the ordered one
    async with client.post(sim.url + "/sim/control", json={"advance_slots": 10}) as r:
        assert r.status == 200
    _, body = await execute(client, sim, {"signedTransaction": sign(o, kp), "requestId": rid})
    assert (body["status"], body["code"]) == ("Failed", -1005)
    async with client.get(sim.url + "/sim/stats") as r:
        rejected = (await r.json())["sends"]["ultra"]["rejected"]
    assert rejected == {
        "unknown_request_id": 1,
        "malformed": 1,
        "unsigned": 1,
        "signature": 1,
        "message_mismatch": 1,
        "expired": 1,
    }


async def test_order_errors(sim: SimServer, client: aiohttp.ClientSession) -> None:
    async with client.get(sim.url + "/jupiter/ultra/v1/order", params={**ORDER, "outputMint": SOL}) as r:
        assert r.status == 400 and (await r.json())["error"] == "Circular arbitrage is disabled"
    async with client.get(sim.url + "/jupiter/ultra/v1/order", params={**ORDER, "amount": "lots"}) as r:
        body = await r.json()
        assert r.status == 400 and "amount" in body["error"] and set(body) == {"error"}
    bonk = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
    async with client.get(
        sim.url + "/jupiter/ultra/v1/order", params={**ORDER, "outputMint": bonk, "amount": str(10**18)}
    ) as r:
        assert (r.status, await r.json()) == (400, {"error": "Could not find any route"})
