"""Solana JSON-RPC: blockhashes, sends with and without preflight, statuses over time, ALT accounts."""

from __future__ import annotations

import base64

import aiohttp
import pytest
from solders.address_lookup_table_account import AddressLookupTable, LookupTableMeta
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from galileo.sim import SimServer
from galileo.sim.accounts import decode_alt, encode_alt, sim_accounts
from tests.sim.sim_helpers import SimFactory, b64, latest_blockhash, rpc, signed_tx, tip_ix

B64 = {"encoding": "base64"}


async def advance(client: aiohttp.ClientSession, sim: SimServer, slots: int) -> None:
    async with client.post(sim.url + "/sim/control", json={"advance_slots": slots}) as r:
        assert r.status == 200


async def test_blockhash_height_and_slot(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(blockhash_ttl_blocks=150, slot_ms=60_000)  # no slot passes between the calls
    _, first = await rpc(client, sim.url, "getLatestBlockhash")
    _, height = await rpc(client, sim.url, "getBlockHeight")
    _, slot = await rpc(client, sim.url, "getSlot")
    value = first["result"]["value"]
    assert value["lastValidBlockHeight"] == height["result"] + 150
    assert first["result"]["context"]["slot"] == slot["result"]
    await advance(client, sim, 1)
    _, second = await rpc(client, sim.url, "getLatestBlockhash")
    assert second["result"]["value"]["blockhash"] != value["blockhash"]
    _, err = await rpc(client, sim.url, "getLatestBlockhash", [{"minContextSlot": slot["result"] + 10_000}])
    assert err["error"]["code"] == -32016


async def test_send_and_statuses_over_time(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(slot_ms=60_000)  # slots move only when the test advances them
    kp = Keypair()
    tx = signed_tx(kp, await latest_blockhash(client, sim.url), [tip_ix(kp)])
    _, sent = await rpc(client, sim.url, "sendTransaction", [b64(tx), B64], "/staked")
    sig = sent["result"]
    seen = []
    for step in (0, 2, 1, 40):
        await advance(client, sim, step)
        _, st = await rpc(client, sim.url, "getSignatureStatuses", [[sig, str(Keypair().pubkey())]])
        value = st["result"]["value"]
        assert value[1] is None
        seen.append(None if value[0] is None else value[0]["confirmationStatus"])
    assert seen == [None, "processed", "confirmed", "finalized"]
    _, again = await rpc(client, sim.url, "sendTransaction", [b64(tx), B64])
    assert again["error"]["code"] == -32002
    assert again["error"]["data"]["err"] == "AlreadyProcessed"
    async with client.get(sim.url + "/sim/stats") as r:
        sends = (await r.json())["sends"]
    assert sends["staked"] == {"received": 1, "accepted": 1, "rejected": {}, "landed": 1}
    assert sends["rpc"]["rejected"] == {"already_processed": 1}


async def test_rejections(sim: SimServer, client: aiohttp.ClientSession) -> None:
    kp = Keypair()
    good = signed_tx(kp, await latest_blockhash(client, sim.url), [tip_ix(kp)])
    forged = bytearray(good)
    forged[10] ^= 1
    _, body = await rpc(client, sim.url, "sendTransaction", [b64(bytes(forged)), B64])
    assert body["error"] == {"code": -32003, "message": "Transaction signature verification failure"}
    stale = signed_tx(kp, Hash.new_unique(), [tip_ix(kp)])
    _, body = await rpc(client, sim.url, "sendTransaction", [b64(stale), B64])
    assert body["error"]["message"] == "Transaction simulation failed: Blockhash not found"
    _, body = await rpc(client, sim.url, "sendTransaction", [b64(stale), {**B64, "skipPreflight": True}])
    dropped_sig = body["result"]
    await advance(client, sim, 5)
    _, st = await rpc(client, sim.url, "getSignatureStatuses", [[dropped_sig]])
    assert st["result"]["value"] == [None]
    _, body = await rpc(client, sim.url, "sendTransaction", ["!!", B64])
    assert body["error"]["code"] == -32602
    _, body = await rpc(client, sim.url, "noSuchMethod")
    assert body["error"]["code"] == -32601
    async with client.get(sim.url + "/sim/stats") as r:
        rejected = (await r.json())["sends"]["rpc"]["rejected"]
    assert rejected == {
        "signature": 1,
        "blockhash_not_found": 1,
        "dropped:blockhash_not_found": 1,
        "malformed": 1,
    }


async def test_simulate_transaction(sim: SimServer, client: aiohttp.ClientSession) -> None:
    kp = Keypair()
    await rpc(client, sim.url, "requestAirdrop", [str(kp.pubkey()), 10**9])  # the payer must exist
    good = signed_tx(kp, await latest_blockhash(client, sim.url), [tip_ix(kp)])
    _, body = await rpc(client, sim.url, "simulateTransaction", [b64(good), {**B64, "sigVerify": True}])
    value = body["result"]["value"]
    assert value["err"] is None and value["unitsConsumed"] > 0
    assert value["logs"][0] == "Program 11111111111111111111111111111111 invoke [1]"
    stale = signed_tx(kp, Hash.new_unique(), [tip_ix(kp)])
    _, body = await rpc(client, sim.url, "simulateTransaction", [b64(stale), B64])
    assert body["result"]["value"]["err"] == "BlockhashNotFound"
    _, body = await rpc(client, sim.url, "simulateTransaction", [b64(stale), {**B64, "replaceRecentBlockhash": True}])
    assert body["result"]["value"]["err"] is None
    assert body["result"]["value"]["replacementBlockhash"]["blockhash"]
    opts = {**B64, "replaceRecentBlockhash": True, "sigVerify": True}
    _, body = await rpc(client, sim.url, "simulateTransaction", [b64(stale), opts])
    assert body["error"]["code"] == -32602


async def test_batch_request(sim: SimServer, client: aiohttp.ClientSession) -> None:
    batch = [{"jsonrpc": "2.0", "id": i, "method": m} for i, m in enumerate(("getSlot", "getBlockHeight", "nope"))]
    async with client.post(sim.url + "/rpc", json=batch) as r:
        body = await r.json()
    assert [x["id"] for x in body] == [0, 1, 2]
    assert isinstance(body[0]["result"], int) and body[2]["error"]["code"] == -32601


@pytest.mark.parametrize("authority", [Pubkey.new_unique(), None])
def test_alt_account_data_round_trip(authority: Pubkey | None) -> None:
    addresses = [Pubkey.new_unique() for _ in range(5)]
    meta = LookupTableMeta(last_extended_slot=42, last_extended_slot_start_index=3, authority=authority)
    data = encode_alt(meta, addresses)
    assert len(data) == 56 + 32 * 5
    assert data[:4] == b"\x01\x00\x00\x00"  # ProgramState::LookupTable
    table = decode_alt(data)
    assert table.addresses == addresses and table.meta == meta
    assert encode_alt(table.meta, table.addresses) == data


async def test_alt_accounts_over_rpc(sim: SimServer, client: aiohttp.ClientSession) -> None:
    accounts = sim_accounts()
    keys = [str(k) for k in accounts.alt_addresses]
    _, body = await rpc(client, sim.url, "getMultipleAccounts", [[*keys, str(Pubkey.new_unique())], B64])
    values = body["result"]["value"]
    assert values[-1] is None
    for key, value in zip(keys, values, strict=False):
        assert value["owner"] == "AddressLookupTab1e1111111111111111111111111"
        raw = base64.b64decode(value["data"][0])
        assert value["data"][1] == "base64" and value["space"] == len(raw)
        table = AddressLookupTable.deserialize(raw)
        assert table.addresses == accounts.alt_addresses[Pubkey.from_string(key)]
    _, one = await rpc(client, sim.url, "getAccountInfo", [keys[0], B64])
    assert one["result"]["value"] == values[0]
    _, b58 = await rpc(client, sim.url, "getAccountInfo", [keys[0]])
    assert b58["error"]["code"] == -32600  # ALT data is over 128 bytes: base58 refused, as a real node does


async def test_recent_prioritization_fees_cover_150_slots_and_repeat_under_a_seed(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    a, b = await sim_factory(slot_ms=60_000, seed=3), await sim_factory(slot_ms=60_000, seed=3)
    _, fees = await rpc(client, a.url, "getRecentPrioritizationFees", [[str(Keypair().pubkey())]])
    _, again = await rpc(client, b.url, "getRecentPrioritizationFees", [])
    _, slot = await rpc(client, a.url, "getSlot")
    rows = fees["result"]
    assert [r["slot"] for r in rows] == list(range(slot["result"] - 149, slot["result"] + 1))
    assert rows == again["result"]  # the same seed, the same fees
    zero = sum(1 for r in rows if r["prioritizationFee"] == 0)
    assert 20 < zero < 80 and all(isinstance(r["prioritizationFee"], int) for r in rows)
    _, bad = await rpc(client, a.url, "getRecentPrioritizationFees", [["not-a-key"]])
    assert bad["error"]["code"] == -32602
