"""Jito block engine: bundle checks with real signed transactions, landing, statuses, sendTransaction."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
import pytest
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from galileo.sim import SimServer
from galileo.sim.common import b58decode, b58encode
from tests.sim.sim_helpers import TIP, SimFactory, b64, latest_blockhash, rpc, signed_tx, tip_ix

BUNDLES = "/jito/frankfurt/api/v1/bundles"
UNSIGNED = "bundles must not contain any duplicate transactions and every transaction must be signed"


async def send_bundle(client: aiohttp.ClientSession, sim: SimServer, txs: list[bytes]) -> tuple[int, Any]:
    return await rpc(client, sim.url, "sendBundle", [[b64(t) for t in txs], {"encoding": "base64"}], BUNDLES)


async def advance(client: aiohttp.ClientSession, sim: SimServer, slots: int) -> None:
    async with client.post(sim.url + "/sim/control", json={"advance_slots": slots}) as r:
        assert r.status == 200


async def test_good_bundle_lands(sim: SimServer, client: aiohttp.ClientSession) -> None:
    kp = Keypair()
    bh = await latest_blockhash(client, sim.url)
    other = Keypair()
    swap_tx = signed_tx(
        kp, bh, [transfer(TransferParams(from_pubkey=kp.pubkey(), to_pubkey=other.pubkey(), lamports=1_000_000))]
    )
    tip_tx = signed_tx(kp, bh, [tip_ix(kp, 2_444)])
    status, body = await send_bundle(client, sim, [swap_tx, tip_tx])
    assert status == 200, body
    sigs = [str(VersionedTransaction.from_bytes(t).signatures[0]) for t in (swap_tx, tip_tx)]
    assert body["result"] == hashlib.sha256(",".join(sigs).encode()).hexdigest()
    bundle_id = body["result"]
    _, inflight = await rpc(client, sim.url, "getInflightBundleStatuses", [[bundle_id]], BUNDLES)
    assert inflight["result"]["value"][0]["status"] == "Pending"
    _, statuses = await rpc(client, sim.url, "getBundleStatuses", [[bundle_id]], BUNDLES)
    assert statuses["result"]["value"] == [None]
    assert (await send_bundle(client, sim, [swap_tx, tip_tx]))[1]["result"] == bundle_id  # pending re-send: same id
    await advance(client, sim, 3)
    _, inflight = await rpc(client, sim.url, "getInflightBundleStatuses", [[bundle_id, "f" * 64]], BUNDLES)
    landed, unknown = inflight["result"]["value"]
    assert landed["status"] == "Landed" and isinstance(landed["landed_slot"], int)
    assert unknown == {"bundle_id": "f" * 64, "status": "Invalid", "landed_slot": None}
    _, statuses = await rpc(client, sim.url, "getBundleStatuses", [[bundle_id]], BUNDLES)
    entry = statuses["result"]["value"][0]
    assert entry["transactions"] == sigs and entry["confirmation_status"] == "confirmed"
    assert entry["err"] == {"Ok": None}
    _, sig_status = await rpc(client, sim.url, "getSignatureStatuses", [sigs])
    assert [s["confirmationStatus"] for s in sig_status["result"]["value"]] == ["confirmed", "confirmed"]
    status, body = await send_bundle(client, sim, [swap_tx, tip_tx])
    assert (status, body["error"]["message"]) == (400, "bundle contains an already processed transaction")
    async with client.get(sim.url + "/sim/stats") as r:
        sends = (await r.json())["sends"]["jito_bundle"]
    assert sends == {"received": 3, "accepted": 2, "rejected": {"already_processed": 1}, "landed": 1}


async def test_base58_encoding_is_accepted(sim: SimServer, client: aiohttp.ClientSession) -> None:
    kp = Keypair()
    tx = VersionedTransaction.from_bytes(signed_tx(kp, await latest_blockhash(client, sim.url), [tip_ix(kp)]))
    assert b58decode(str(tx.signatures[0])) == bytes(tx.signatures[0])
    status, body = await rpc(client, sim.url, "sendBundle", [[b58encode(bytes(tx))]], BUNDLES)
    assert status == 200 and len(body["result"]) == 64


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("bad_signature", UNSIGNED),
        ("duplicate", UNSIGNED),
        ("no_tip", "bundle does not lock any of the tip PDAs"),
        ("tip_via_alt", "bundle does not lock any of the tip PDAs"),
        ("tip_too_low", "bundle tip is below the minimum of 1000 lamports"),
        ("six_transactions", "bundle exceeds max transaction length"),
        ("unknown_blockhash", "bundle contains an invalid blockhash"),
        ("garbage", "transaction #0 could not be decoded"),
    ],
)
async def test_bad_bundles_are_rejected(sim: SimServer, client: aiohttp.ClientSession, case: str, message: str) -> None:
    kp = Keypair()
    bh = await latest_blockhash(client, sim.url)
    good = signed_tx(kp, bh, [tip_ix(kp)])
    if case == "bad_signature":
        raw = bytearray(good)
        raw[5] ^= 0xFF
        txs = [bytes(raw)]
    elif case == "duplicate":
        txs = [good, good]
    elif case == "no_tip":
        txs = [signed_tx(kp, bh, [tip_ix(kp, account=str(Keypair().pubkey()))])]
    elif case == "tip_via_alt":
        alt = AddressLookupTableAccount(Pubkey.new_unique(), [Pubkey.from_string(TIP)])
        tx = signed_tx(kp, bh, [tip_ix(kp)], [alt])
        assert TIP not in [str(k) for k in VersionedTransaction.from_bytes(tx).message.account_keys]
        txs = [tx]
    elif case == "tip_too_low":
        txs = [signed_tx(kp, bh, [tip_ix(kp, 999)])]
    elif case == "six_transactions":
        txs = [signed_tx(k, bh, [tip_ix(k)]) for k in (Keypair() for _ in range(6))]
    elif case == "unknown_blockhash":
        txs = [signed_tx(kp, Hash.new_unique(), [tip_ix(kp)])]
    else:
        txs = [b"\x01\x02\x03"]
    status, body = await send_bundle(client, sim, txs)
    assert status == 400
    assert body["error"]["code"] == -32602
    assert body["error"]["message"].startswith(message)


async def test_expired_blockhash(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(blockhash_ttl_blocks=5)
    kp = Keypair()
    bh = await latest_blockhash(client, sim.url)
    await advance(client, sim, 6)
    status, body = await send_bundle(client, sim, [signed_tx(kp, bh, [tip_ix(kp)])])
    assert (status, body["error"]["message"]) == (400, "bundle contains an expired blockhash")


async def test_send_transaction_endpoint(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(slot_ms=60_000)  # "processed" is one slot's status: slots move only when told
    kp = Keypair()
    bh = await latest_blockhash(client, sim.url)
    plain = signed_tx(
        kp, bh, [transfer(TransferParams(from_pubkey=kp.pubkey(), to_pubkey=Keypair().pubkey(), lamports=5))]
    )
    body = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "sendTransaction",
        "params": [b64(plain), {"encoding": "base64"}],
    }
    url = sim.url + "/jito/ny/api/v1/transactions"
    async with client.post(url, json=body) as r:
        assert r.status == 200
        sig = (await r.json())["result"]
        assert r.headers["x-bundle-id"] == hashlib.sha256(sig.encode()).hexdigest()
    other = signed_tx(
        kp, bh, [transfer(TransferParams(from_pubkey=kp.pubkey(), to_pubkey=Keypair().pubkey(), lamports=6))]
    )
    body["params"] = [b64(other), {"encoding": "base64"}]
    async with client.post(url, params={"bundleOnly": "true"}, json=body) as r:
        assert r.status == 400
        assert (await r.json())["error"]["message"] == "bundle does not lock any of the tip PDAs"
    tipped = signed_tx(kp, bh, [tip_ix(kp, 5_000)])
    body["params"] = [b64(tipped), {"encoding": "base64"}]
    async with client.post(url, params={"bundleOnly": "true"}, json=body) as r:
        assert r.status == 200 and "x-bundle-id" in r.headers
    await advance(client, sim, 2)
    _, statuses = await rpc(client, sim.url, "getSignatureStatuses", [[sig]])
    assert statuses["result"]["value"][0]["confirmationStatus"] == "processed"
