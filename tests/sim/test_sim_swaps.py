"""swap-instructions: realistic instruction sets, issued blockhashes, ALTs that resolve and land."""

from __future__ import annotations

import base64
import struct
from typing import Any

import aiohttp
from solders.address_lookup_table_account import AddressLookupTable, AddressLookupTableAccount
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address
from solders.transaction import VersionedTransaction

from galileo.sim import SimServer
from tests.sim.sim_helpers import SOL, USDC, SimFactory, b64, rpc

QUOTE = {"inputMint": SOL, "outputMint": USDC, "amount": "1000000000", "slippageBps": "30"}


def to_ix(obj: dict[str, Any]) -> Instruction:
    metas = [AccountMeta(Pubkey.from_string(a["pubkey"]), a["isSigner"], a["isWritable"]) for a in obj["accounts"]]
    return Instruction(Pubkey.from_string(obj["programId"]), base64.b64decode(obj["data"]), metas)


async def jupiter(client: aiohttp.ClientSession, sim: SimServer, user: Pubkey, **extra: Any) -> tuple[Any, Any]:
    async with client.get(sim.url + "/jupiter/swap/v1/quote", params=QUOTE) as r:
        quote = await r.json()
    body = {"quoteResponse": quote, "userPublicKey": str(user), **extra}
    async with client.post(sim.url + "/jupiter/swap/v1/swap-instructions", json=body) as r:
        assert r.status == 200
        return quote, await r.json()


async def test_jupiter_instruction_set(sim: SimServer, client: aiohttp.ClientSession) -> None:
    user = Keypair().pubkey()
    quote, si = await jupiter(client, sim, user, computeUnitPriceMicroLamports=1234)
    budget = [base64.b64decode(ix["data"]) for ix in si["computeBudgetInstructions"]]
    assert budget[0] == b"\x02" + struct.pack("<I", si["computeUnitLimit"]) and si["computeUnitLimit"] == 1_400_000
    assert budget[1] == b"\x03" + struct.pack("<Q", 1234)
    wsol_ata = str(get_associated_token_address(user, Pubkey.from_string(SOL)))
    setup = [(ix["programId"], base64.b64decode(ix["data"])) for ix in si["setupInstructions"]]
    assert ("11111111111111111111111111111111", struct.pack("<IQ", 2, 1_000_000_000)) in setup
    assert ("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", b"\x11") in setup
    assert setup[-1] == ("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL", b"\x01")
    swap = si["swapInstruction"]
    data = base64.b64decode(swap["data"])
    assert swap["programId"] == "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"
    assert data[:8].hex() == "e517cb977ae3ad2a"
    in_amount, out_amount, slippage, fee = struct.unpack_from("<QQHB", data, len(data) - 19)
    assert (in_amount, out_amount, slippage, fee) == (
        1_000_000_000,
        int(quote["outAmount"]),  # quoted_out_amount; the program applies slippage_bps
        30,
        0,
    )
    assert {"pubkey": str(user), "isSigner": True, "isWritable": False} in swap["accounts"]
    cleanup = si["cleanupInstruction"]
    assert base64.b64decode(cleanup["data"]) == b"\x09" and cleanup["accounts"][0]["pubkey"] == wsol_ata
    assert Hash(bytes(si["blockhashWithMetadata"]["blockhash"])) is not None
    assert str(Hash(bytes(si["blockhashWithMetadata"]["blockhash"]))) in sim.state.ledger.issued
    _, tipped = await jupiter(client, sim, user, prioritizationFeeLamports={"jitoTipLamports": 5000})
    (tip,) = tipped["otherInstructions"]
    assert base64.b64decode(tip["data"]) == struct.pack("<IQ", 2, 5000)
    assert tipped["prioritizationType"] == {"jito": {"lamports": 5000}}


async def test_jupiter_swap_compiles_with_fetched_alts_and_lands(sim: SimServer, client: aiohttp.ClientSession) -> None:
    kp = Keypair()
    _, si = await jupiter(client, sim, kp.pubkey(), dynamicComputeUnitLimit=True)
    assert si["computeUnitLimit"] < 1_400_000 and isinstance(si["simulationSlot"], int)
    _, accts = await rpc(
        client, sim.url, "getMultipleAccounts", [si["addressLookupTableAddresses"], {"encoding": "base64"}]
    )
    alts = [
        AddressLookupTableAccount(
            Pubkey.from_string(key), AddressLookupTable.deserialize(base64.b64decode(v["data"][0])).addresses
        )
        for key, v in zip(si["addressLookupTableAddresses"], accts["result"]["value"], strict=True)
    ]
    pool_keys = {a["pubkey"] for a in si["swapInstruction"]["accounts"] if not a["isSigner"]}
    alt_keys = {str(k) for alt in alts for k in alt.addresses}
    assert len(pool_keys & alt_keys) >= 4  # the pool and its vaults live in the simulator's ALT
    ixs = [
        *si["computeBudgetInstructions"],
        *si["setupInstructions"],
        si["swapInstruction"],
        *si["otherInstructions"],
    ]
    ixs.append(si["cleanupInstruction"])
    blockhash = Hash(bytes(si["blockhashWithMetadata"]["blockhash"]))
    msg = MessageV0.try_compile(kp.pubkey(), [to_ix(i) for i in ixs], alts, blockhash)
    assert msg.address_table_lookups
    tx = bytes(VersionedTransaction(msg, [kp]))
    _, sent = await rpc(client, sim.url, "sendTransaction", [b64(tx), {"encoding": "base64"}], "/staked")
    assert sent["result"] == str(VersionedTransaction.from_bytes(tx).signatures[0])
    async with client.post(sim.url + "/sim/control", json={"advance_slots": 2}) as r:
        assert r.status == 200
    _, st = await rpc(client, sim.url, "getSignatureStatuses", [[sent["result"]]])
    assert st["result"]["value"][0]["confirmationStatus"] in ("processed", "confirmed")


async def test_dflow_instruction_set(sim: SimServer, client: aiohttp.ClientSession) -> None:
    user = Keypair().pubkey()
    async with client.get(sim.url + "/dflow/quote", params=QUOTE) as r:
        quote = await r.json()
    quote["slippageBps"] = 7  # the bot rewrites slippage locally before posting the quote back
    body = {
        "quoteResponse": quote,
        "userPublicKey": str(user),
        "wrapAndUnwrapSol": False,
        "dynamicComputeUnitLimit": True,
    }
    async with client.post(sim.url + "/dflow/swap-instructions", json=body) as r:
        si = await r.json()
    assert si["swapInstruction"]["programId"] == "DF1ow4tspfHX9JwWJsAb9epbkA8hmpSEAtxXy1V27QBH"
    data = base64.b64decode(si["swapInstruction"]["data"])
    assert struct.unpack("<H", data[-4:-2])[0] == 7 and struct.unpack("<H", data[-2:])[0] == 0
    assert si["swapInstruction"]["accounts"][0] == {"pubkey": str(user), "isSigner": True, "isWritable": False}
    assert si["cleanupInstructions"] == [] and len(si["setupInstructions"]) == 1  # no wrap: only the output ATA
    assert si["blockhashWithMetadata"]["blockhash"] in sim.state.ledger.issued
    assert base64.b64decode(si["computeBudgetInstructions"][0]["data"])[0] == 2


async def test_quotes_differ_by_service_and_repeat_under_a_seed(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    first = await sim_factory(seed=11, slot_ms=600_000)
    second = await sim_factory(seed=11, slot_ms=600_000)
    outs = []
    for server in (first, second):
        async with client.get(server.url + "/jupiter/swap/v1/quote", params=QUOTE) as r:
            outs.append((await r.json())["outAmount"])
        async with client.get(server.url + "/dflow/quote", params=QUOTE) as r:
            outs.append((await r.json())["outAmount"])
    assert outs[0] == outs[2] and outs[1] == outs[3]  # same seed, same slot, same answer
    assert outs[0] != outs[1]  # Jupiter and DFlow quote differently
    async with client.get(
        first.url + "/jupiter/swap/v1/quote", params={**QUOTE, "swapMode": "ExactOut", "amount": "5000000"}
    ) as r:
        exact_out = await r.json()
    assert exact_out["outAmount"] == "5000000" and int(exact_out["otherAmountThreshold"]) >= int(exact_out["inAmount"])
