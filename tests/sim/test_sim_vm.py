"""The simulator's chain, through its own Jito and RPC endpoints: plain aiohttp + solders clients.

Slots move only when a test advances them (``slot_ms`` of a minute), so every outcome is exact.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import aiohttp
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.compute_budget import set_compute_unit_limit
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.token.associated import get_associated_token_address
from solders.transaction import VersionedTransaction

from galileo.sim import SimServer
from galileo.sim.accounts import decode_alt
from tests.sim.sim_helpers import SOL, USDC, SimFactory, b64, latest_blockhash, rpc, signed_tx, tip_ix

BUNDLES = "/jito/ny/api/v1/bundles"
B64 = {"encoding": "base64"}
TOKEN = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
ATA = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
SYSTEM = Pubkey.from_string("11111111111111111111111111111111")
WSOL = Pubkey.from_string(SOL)
FEE = 5_000  # one signature


async def advance(client: aiohttp.ClientSession, sim: SimServer, slots: int) -> None:
    async with client.post(sim.url + "/sim/control", json={"advance_slots": slots}) as r:
        assert r.status == 200


async def airdrop(client: aiohttp.ClientSession, sim: SimServer, kp: Keypair, lamports: int = 10**9) -> str:
    _, body = await rpc(client, sim.url, "requestAirdrop", [str(kp.pubkey()), lamports])
    signature: str = body["result"]
    return signature


async def balance(client: aiohttp.ClientSession, sim: SimServer, key: Pubkey) -> int:
    _, body = await rpc(client, sim.url, "getBalance", [str(key)])
    value: int = body["result"]["value"]
    return value


async def send_bundle(client: aiohttp.ClientSession, sim: SimServer, txs: list[bytes]) -> str:
    _, body = await rpc(client, sim.url, "sendBundle", [[b64(t) for t in txs], B64], BUNDLES)
    bundle_id: str = body["result"]
    return bundle_id


async def inflight(client: aiohttp.ClientSession, sim: SimServer, bundle_id: str) -> dict[str, Any]:
    _, body = await rpc(client, sim.url, "getInflightBundleStatuses", [[bundle_id]], BUNDLES)
    status: dict[str, Any] = body["result"]["value"][0]
    return status


async def chain(client: aiohttp.ClientSession, sim: SimServer) -> dict[str, Any]:
    async with client.get(sim.url + "/sim/stats") as r:
        body: dict[str, Any] = (await r.json())["chain"]
    return body


def wrap_then_close_then_use(kp: Keypair) -> list[Instruction]:
    """Wrap 0.1 SOL, close the wrapped account, then SyncNative the closed account."""
    ata = get_associated_token_address(kp.pubkey(), WSOL)
    owner = kp.pubkey()
    create = Instruction(
        ATA,
        b"\x01",
        [
            AccountMeta(owner, True, True),
            AccountMeta(ata, False, True),
            AccountMeta(owner, False, False),
            AccountMeta(WSOL, False, False),
            AccountMeta(SYSTEM, False, False),
            AccountMeta(TOKEN, False, False),
        ],
    )
    sync = Instruction(TOKEN, b"\x11", [AccountMeta(ata, False, True)])
    close = Instruction(
        TOKEN,
        b"\x09",
        [AccountMeta(ata, False, True), AccountMeta(owner, False, True), AccountMeta(owner, True, False)],
    )
    fund = transfer(TransferParams(from_pubkey=owner, to_pubkey=ata, lamports=10**8))
    return [create, fund, sync, close, sync]


async def test_a_fresh_keypair_gets_one_sol_with_request_airdrop(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    sim = await sim_factory(slot_ms=60_000)
    kp = Keypair()
    assert await balance(client, sim, kp.pubkey()) == 0
    signature = await airdrop(client, sim, kp)
    assert await balance(client, sim, kp.pubkey()) == 10**9
    _, st = await rpc(client, sim.url, "getSignatureStatuses", [[signature]])
    assert st["result"]["value"][0]["err"] is None
    _, info = await rpc(client, sim.url, "getAccountInfo", [str(kp.pubkey()), B64])
    assert info["result"]["value"]["lamports"] == 10**9 and info["result"]["value"]["owner"] == str(SYSTEM)


async def test_a_tip_only_bundle_lands_and_costs_the_tip_plus_the_fee(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    sim = await sim_factory(slot_ms=60_000)
    kp = Keypair()
    await airdrop(client, sim, kp)
    tx = signed_tx(kp, await latest_blockhash(client, sim.url), [tip_ix(kp, 10_000)])
    bundle_id = await send_bundle(client, sim, [tx])
    assert (await inflight(client, sim, bundle_id))["status"] == "Pending"
    assert await balance(client, sim, kp.pubkey()) == 10**9  # nothing runs before its slot
    await advance(client, sim, 2)
    landed = await inflight(client, sim, bundle_id)
    assert landed["status"] == "Landed" and isinstance(landed["landed_slot"], int)
    assert await balance(client, sim, kp.pubkey()) == 10**9 - 10_000 - FEE
    _, statuses = await rpc(client, sim.url, "getBundleStatuses", [[bundle_id]], BUNDLES)
    assert statuses["result"]["value"][0]["err"] == {"Ok": None}


async def test_a_bundle_that_closes_a_token_account_then_uses_it_fails_and_costs_nothing(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    sim = await sim_factory(slot_ms=60_000)
    kp, friend = Keypair(), Keypair()
    await airdrop(client, sim, kp)
    bh = await latest_blockhash(client, sim.url)
    # First transaction is fine on its own (pays a friend); the second fails: all or nothing.
    gift = signed_tx(
        kp, bh, [transfer(TransferParams(from_pubkey=kp.pubkey(), to_pubkey=friend.pubkey(), lamports=2 * 10**8))]
    )
    bad = signed_tx(kp, bh, [*wrap_then_close_then_use(kp), tip_ix(kp)])
    bundle_id = await send_bundle(client, sim, [gift, bad])
    await advance(client, sim, 2)
    assert (await inflight(client, sim, bundle_id))["status"] == "Failed"
    assert await balance(client, sim, kp.pubkey()) == 10**9
    assert await balance(client, sim, friend.pubkey()) == 0
    _, statuses = await rpc(client, sim.url, "getBundleStatuses", [[bundle_id]], BUNDLES)
    assert statuses["result"]["value"] == [None]
    assert (await chain(client, sim))["failures_by_error"] == {"token: IncorrectProgramId": 1}


async def test_a_failing_rpc_transaction_pays_its_fee_and_preflight_refuses_it_for_free(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    sim = await sim_factory(slot_ms=60_000)
    kp = Keypair()
    await airdrop(client, sim, kp)
    bad = signed_tx(kp, await latest_blockhash(client, sim.url), wrap_then_close_then_use(kp))
    _, refused = await rpc(client, sim.url, "sendTransaction", [b64(bad), B64])
    assert refused["error"]["code"] == -32002
    assert refused["error"]["message"].endswith("Error processing Instruction 4: incorrect program id for instruction")
    assert await balance(client, sim, kp.pubkey()) == 10**9
    _, sent = await rpc(client, sim.url, "sendTransaction", [b64(bad), {**B64, "skipPreflight": True}])
    await advance(client, sim, 2)
    _, st = await rpc(client, sim.url, "getSignatureStatuses", [[sent["result"]]])
    assert st["result"]["value"][0]["err"] == {"InstructionError": [4, "IncorrectProgramId"]}
    assert await balance(client, sim, kp.pubkey()) == 10**9 - FEE


async def _tables(client: aiohttp.ClientSession, sim: SimServer, keys: list[str]) -> list[AddressLookupTableAccount]:
    _, body = await rpc(client, sim.url, "getMultipleAccounts", [keys, B64])
    return [
        AddressLookupTableAccount(Pubkey.from_string(k), list(decode_alt(base64.b64decode(v["data"][0])).addresses))
        for k, v in zip(keys, body["result"]["value"], strict=True)
    ]


def _ix(obj: dict[str, Any]) -> Instruction:
    metas = [AccountMeta(Pubkey.from_string(a["pubkey"]), a["isSigner"], a["isWritable"]) for a in obj["accounts"]]
    return Instruction(Pubkey.from_string(obj["programId"]), base64.b64decode(obj["data"]), metas)


async def _jupiter_swap(
    client: aiohttp.ClientSession,
    sim: SimServer,
    kp: Keypair,
    amount: int,
    slippage: int,
    cu_limit: int | None = None,
    tip: int = 10_000,
) -> tuple[dict[str, Any], bytes]:
    query = {"inputMint": SOL, "outputMint": USDC, "amount": str(amount), "slippageBps": str(slippage)}
    async with client.get(sim.url + "/jupiter/swap/v1/quote", params=query) as r:
        quote = await r.json()
    body = {"quoteResponse": quote, "userPublicKey": str(kp.pubkey()), "dynamicComputeUnitLimit": True}
    async with client.post(sim.url + "/jupiter/swap/v1/swap-instructions", json=body) as r:
        si = await r.json()
    budget = [set_compute_unit_limit(cu_limit)] if cu_limit else [_ix(i) for i in si["computeBudgetInstructions"]]
    ixs = [*budget, *map(_ix, si["setupInstructions"]), _ix(si["swapInstruction"]), _ix(si["cleanupInstruction"])]
    tables = await _tables(client, sim, si["addressLookupTableAddresses"])
    bh = Hash(bytes(si["blockhashWithMetadata"]["blockhash"]))
    return quote, signed_tx(kp, bh, [*ixs, tip_ix(kp, tip)], tables)


async def test_a_swap_lands_for_its_quote_and_fails_with_6001_once_the_quote_is_stale(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    sim = await sim_factory(slot_ms=60_000, land_delay_slots=0)
    kp = Keypair()
    await airdrop(client, sim, kp, 2 * 10**9)
    quote, fresh = await _jupiter_swap(client, sim, kp, 10**9, slippage=0)
    bundle_id = await send_bundle(client, sim, [fresh])
    assert (await inflight(client, sim, bundle_id))["status"] == "Landed"
    usdc = get_associated_token_address(kp.pubkey(), Pubkey.from_string(USDC))
    _, tb = await rpc(client, sim.url, "getTokenAccountBalance", [str(usdc)])
    assert tb["result"]["value"]["amount"] == quote["outAmount"]  # in its slot, the pool pays the quote
    # A later slot whose pool pays less than this quote promised (slippage 0) ...
    quote, stale = await _jupiter_swap(client, sim, kp, 10**8, slippage=0)
    prices, slot = sim.state.prices, quote["contextSlot"]
    pool = next(
        p for p in sim.state.accounts.pools[(SOL, USDC)] if str(p.amm) == quote["routePlan"][0]["swapInfo"]["ammKey"]
    )
    later = next(
        s
        for s in range(slot + 1, slot + 100)
        if (q := prices.quote("x", SOL, USDC, 10**8, False, s, pool.index)) and q.out_amount < int(quote["outAmount"])
    )
    await advance(client, sim, later - slot)
    bundle_id = await send_bundle(client, sim, [stale])
    assert (await inflight(client, sim, bundle_id))["status"] == "Failed"
    assert (await chain(client, sim))["failures_by_error"] == {"jupiter: 6001 SlippageToleranceExceeded": 1}


async def test_a_swap_over_its_compute_limit_fails(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(slot_ms=60_000, land_delay_slots=0)
    kp = Keypair()
    await airdrop(client, sim, kp)
    _, tight = await _jupiter_swap(client, sim, kp, 10**8, slippage=50, cu_limit=50_000)
    _, sim_body = await rpc(client, sim.url, "simulateTransaction", [b64(tight), B64])
    value = sim_body["result"]["value"]  # as on mainnet: the meter runs out inside the router
    assert value["err"]["InstructionError"][1] == "ProgramFailedToComplete"
    assert any("exceeded CUs meter" in line for line in value["logs"])
    _, roomy = await _jupiter_swap(client, sim, kp, 10**8, slippage=50)
    _, sim_body = await rpc(client, sim.url, "simulateTransaction", [b64(roomy), B64])
    value = sim_body["result"]["value"]
    assert value["err"] is None, value["logs"]
    limit = struct.unpack_from("<I", bytes(VersionedTransaction.from_bytes(roomy).message.instructions[0].data), 1)[0]
    assert value["unitsConsumed"] <= limit <= 1.3 * value["unitsConsumed"]  # dynamicComputeUnitLimit fits


def _titan_ix(obj: dict[str, Any]) -> Any:
    from broker.solana import AccountMeta as WireMeta
    from broker.solana import Instruction as WireIx

    metas = tuple(WireMeta(str(Pubkey(a["p"])), a["s"], a["w"]) for a in obj["a"])
    return WireIx(str(Pubkey(obj["p"])), metas, bytes(obj["d"]))


def _wire_ix(obj: dict[str, Any]) -> Any:
    from broker.solana import AccountMeta as WireMeta
    from broker.solana import Instruction as WireIx

    metas = tuple(WireMeta(a["pubkey"], a["isSigner"], a["isWritable"]) for a in obj["accounts"])
    return WireIx(obj["programId"], metas, base64.b64decode(obj["data"]))


async def _titan_buy_and_jupiter_sell(client: aiohttp.ClientSession, sim: SimServer, kp: Keypair) -> tuple[Any, Any]:
    """Titan buy SOL→USDC (its route wraps and closes WSOL itself) and a Jupiter sell of its output."""
    from galileo.tx import SwapLeg
    from tests.sim.sim_helpers import TitanClient, stream_request

    titan = await TitanClient.connect(client, sim.url)
    await titan.send(stream_request(kp.pubkey(), amount=10**9, providers=["Titan"]))
    while "StreamData" not in (msg := await titan.recv()):
        pass
    route = msg["StreamData"]["payload"]["SwapQuotes"]["quotes"]["Titan"]
    await titan.close()
    buy = SwapLeg(
        swap=tuple(_titan_ix(i) for i in route["instructions"]),
        compute_unit_limit=route["computeUnitsSafe"],
        alts=tuple(str(Pubkey(a)) for a in route["addressLookupTables"]),
        input_mint=SOL,
        output_mint=USDC,
    )
    assert buy.swap[-1].program_id == str(TOKEN) and buy.swap[-1].data == b"\x09"  # closes WSOL itself
    query = {"inputMint": USDC, "outputMint": SOL, "amount": str(route["outAmount"]), "slippageBps": "50"}
    async with client.get(sim.url + "/jupiter/swap/v1/quote", params=query) as r:
        quote = await r.json()
    body = {"quoteResponse": quote, "userPublicKey": str(kp.pubkey())}
    async with client.post(sim.url + "/jupiter/swap/v1/swap-instructions", json=body) as r:
        si = await r.json()
    sell = SwapLeg(
        setup=tuple(map(_wire_ix, si["setupInstructions"])),
        swap=(_wire_ix(si["swapInstruction"]),),
        cleanup=(_wire_ix(si["cleanupInstruction"]),),
        compute_unit_limit=si["computeUnitLimit"],
        alts=tuple(si["addressLookupTableAddresses"]),
        input_mint=USDC,
        output_mint=SOL,
    )
    return buy, sell


async def test_a_multi_leg_round_trip_built_as_main_built_it_is_refused(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    """The instruction list main (ee64f65) assembled for a multi-leg bundle, built here explicitly:
    one limit, the sell's setup, the Titan route whole (its own WSOL close included), the sell's
    swap, the sell's cleanup, the tip. The sell swap pays into the account the Titan route closed."""
    from galileo.tx import budget, build_transaction, tip_instruction

    sim = await sim_factory(slot_ms=60_000, land_delay_slots=0)
    kp = Keypair()
    await airdrop(client, sim, kp, 5 * 10**9)
    buy, sell = await _titan_buy_and_jupiter_sell(client, sim, kp)
    tip = tip_instruction(str(kp.pubkey()), "96gYZGLnJYVFmbjzopPSU6QiEV5fGqZNyN9nmNhvrZU5", 10_000)
    limit = budget.compute_unit_limit_instruction(buy.compute_unit_limit + sell.compute_unit_limit)
    old_shape = [limit, *sell.setup, *buy.swap, *sell.swap, *sell.cleanup, tip]
    tables = await _tables(client, sim, list(dict.fromkeys([*buy.alts, *sell.alts])))
    built = build_transaction(kp, old_shape, tables, str(await latest_blockhash(client, sim.url)))
    bundle_id = await send_bundle(client, sim, [built.wire])
    assert (await inflight(client, sim, bundle_id))["status"] == "Failed"
    assert await balance(client, sim, kp.pubkey()) == 5 * 10**9
    failures = (await chain(client, sim))["failures_by_error"]
    # The sell's router pays into the closed account: the token program refuses its transfer.
    assert failures == {"jupiter → token: InvalidAccountData": 1}, failures
    (failure,) = (await chain(client, sim))["recent_failures"]
    assert failure["bundle_id"] == bundle_id and failure["error"] == "jupiter → token: InvalidAccountData"
    assert any("invalid account data" in line for line in failure["logs"]), failure["logs"]
    # The buy leg alone, with the same route, executes: the merge is what cannot.
    alone = build_transaction(kp, [limit, *buy.swap, tip], tables, built.blockhash)
    assert (await inflight(client, sim, await send_bundle(client, sim, [alone.wire])))["status"] == "Landed"


async def test_the_same_legs_merged_by_effect_execute(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    """galileo's merge (issue 15): the Titan route's WSOL close moved after the sell, one wrap, one close."""
    from galileo.tx import build_transaction, merge_legs, tip_instruction

    sim = await sim_factory(slot_ms=60_000, land_delay_slots=0)
    kp = Keypair()
    await airdrop(client, sim, kp, 5 * 10**9)
    buy, sell = await _titan_buy_and_jupiter_sell(client, sim, kp)
    tip = tip_instruction(str(kp.pubkey()), "96gYZGLnJYVFmbjzopPSU6QiEV5fGqZNyN9nmNhvrZU5", 10_000)
    merged = merge_legs([buy, sell], payer=str(kp.pubkey()), tail=(tip,))
    tables = await _tables(client, sim, list(merged.alts))
    built = build_transaction(kp, merged.instructions, tables, str(await latest_blockhash(client, sim.url)))
    bundle_id = await send_bundle(client, sim, [built.wire])
    assert (await inflight(client, sim, bundle_id))["status"] == "Landed", await chain(client, sim)
    assert (await chain(client, sim))["failures_by_error"] == {}
    _, wsol = await rpc(client, sim.url, "getAccountInfo", [str(get_associated_token_address(kp.pubkey(), WSOL)), B64])
    assert wsol["result"]["value"] is None  # unwrapped once, at the end


async def _scenario(sim_factory: SimFactory, client: aiohttp.ClientSession, seed: int) -> tuple[list[str], Any]:
    """Four fixed wallets swap with three tips each, slots advancing between sends."""
    sim = await sim_factory(slot_ms=60_000, seed=seed, auction_contention=0.5)
    statuses = []
    for i in range(4):
        kp = Keypair.from_seed(bytes([i + 1]) * 32)
        await airdrop(client, sim, kp, 3 * 10**9)
        for tip in (1_000, 20_000, 2_000_000):
            _, tx = await _jupiter_swap(client, sim, kp, 10**8 * (i + 1), slippage=5, tip=tip)
            bundle_id = await send_bundle(client, sim, [tx])
            await advance(client, sim, 2 + tip % 3)
            statuses.append((await inflight(client, sim, bundle_id))["status"])
    return statuses, (await chain(client, sim))["pnl"]


async def test_the_same_seed_gives_the_same_landings_and_pnl(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    first = await _scenario(sim_factory, client, seed=21)
    again = await _scenario(sim_factory, client, seed=21)
    assert first == again
    assert set(first[0]) == {"Landed", "Failed"}  # the auction and the prices said no now and then
    assert first[1]["wallets"] == 4 and first[1]["total_lamports"] != 0


async def test_a_bundle_lands_more_often_the_more_it_tips(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    sim = await sim_factory(slot_ms=60_000, auction_contention=1.0, land_delay_slots=0)
    kp = Keypair()
    await airdrop(client, sim, kp, 10 * 10**9)
    bh = await latest_blockhash(client, sim.url)
    landed = {}
    for tip in (1_000, 30_000, 20_000_000):
        ids = [await send_bundle(client, sim, [signed_tx(kp, bh, [tip_ix(kp, tip + i)])]) for i in range(30)]
        landed[tip] = [(await inflight(client, sim, b))["status"] for b in ids].count("Landed")
    assert landed[1_000] < landed[30_000] < landed[20_000_000], landed
    lost = (await chain(client, sim))["failures_by_error"]["auction: outbid"]
    assert lost == 90 - sum(landed.values())


PROGRAMS = {
    "system": "11111111111111111111111111111111",
    "compute budget": "ComputeBudget111111111111111111111111111111",
    "token": "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    "token-2022": "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
    "associated token account": "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL",
    "memo": "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr",
    "address lookup table": "AddressLookupTab1e1111111111111111111111111",
    "jupiter (the router)": "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4",
    "dflow (the router)": "DF1ow4tspfHX9JwWJsAb9epbkA8hmpSEAtxXy1V27QBH",
    "titan (the router)": "T1TANpTeScyeqVzzgNViGDNrkQ6qHz9KrSBS4aNXvGT",
}


async def test_the_programs_routes_use_are_on_the_chain_and_the_native_mint_is_written(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    sim = await sim_factory(slot_ms=60_000)
    _, body = await rpc(client, sim.url, "getMultipleAccounts", [list(PROGRAMS.values()), B64])
    for name, account in zip(PROGRAMS, body["result"]["value"], strict=True):
        assert account is not None and account["executable"], name
    _, mint = await rpc(client, sim.url, "getAccountInfo", [SOL, B64])
    assert mint["result"]["value"]["owner"] == str(TOKEN)  # LiteSVM lacks it: the simulator writes it


async def test_a_bundle_that_spends_more_than_the_wallet_holds_fails_and_costs_nothing(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    sim = await sim_factory(slot_ms=60_000, land_delay_slots=0)
    kp = Keypair()
    await airdrop(client, sim, kp, 10**8)  # 0.1 SOL, and a swap of 1 SOL
    _, tx = await _jupiter_swap(client, sim, kp, 10**9, slippage=50)
    bundle_id = await send_bundle(client, sim, [tx])
    assert (await inflight(client, sim, bundle_id))["status"] == "Failed"
    assert await balance(client, sim, kp.pubkey()) == 10**8
    (failure,) = (await chain(client, sim))["recent_failures"]
    assert failure["error"] == "system: 1 ResultWithNegativeLamports"  # the WSOL wrap's transfer


async def test_a_transaction_locking_more_accounts_than_the_limit_fails(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    sim = await sim_factory(slot_ms=60_000, land_delay_slots=0)
    kp = Keypair()
    await airdrop(client, sim, kp)
    # The simulator's three pool tables hold 79 distinct accounts; a Memo naming them all (read
    # only, through the tables) stays far under 1232 bytes but over the 64-account lock limit.
    tables = await _tables(
        client, sim, [str(t) for t in sorted({p.alt for _, _, p in sim.state.accounts.pool_by_amm.values()})]
    )
    keys = list(dict.fromkeys(a for t in tables for a in t.addresses))
    assert len(keys) > 64
    memo = Instruction(Pubkey.from_string(PROGRAMS["memo"]), b"hi", [AccountMeta(k, False, False) for k in keys])
    tx = signed_tx(kp, await latest_blockhash(client, sim.url), [memo, tip_ix(kp)], tables)
    bundle_id = await send_bundle(client, sim, [tx])
    assert (await inflight(client, sim, bundle_id))["status"] == "Failed"
    assert (await chain(client, sim))["failures_by_error"] == {"TooManyAccountLocks": 1}
    assert await balance(client, sim, kp.pubkey()) == 10**9


async def test_the_chains_knobs_change_at_run_time(sim_factory: SimFactory, client: aiohttp.ClientSession) -> None:
    sim = await sim_factory(slot_ms=60_000, land_delay_slots=0)

    async def control(body: dict[str, Any]) -> None:
        async with client.post(sim.url + "/sim/control", json=body) as r:
            assert r.status == 200, await r.text()

    kp = Keypair()
    await airdrop(client, sim, kp)
    bh = await latest_blockhash(client, sim.url)
    # execution off: an accepted bundle lands as it is, without running (the bench's baseline).
    await control({"execution": False})
    unrun = signed_tx(kp, bh, [*wrap_then_close_then_use(kp), tip_ix(kp, 10_000)])
    assert (await inflight(client, sim, await send_bundle(client, sim, [unrun])))["status"] == "Landed"
    await control({"execution": True})
    run = signed_tx(kp, bh, [*wrap_then_close_then_use(kp), tip_ix(kp, 10_001)])
    assert (await inflight(client, sim, await send_bundle(client, sim, [run])))["status"] == "Failed"
    # auction_contention: 1 makes a tip at the floor's bottom lose most draws, 0 lands them all.
    await control({"auction_contention": 1.0})
    low = [await send_bundle(client, sim, [signed_tx(kp, bh, [tip_ix(kp, 1_000 + i)])]) for i in range(10)]
    assert [(await inflight(client, sim, b))["status"] for b in low].count("Landed") < 8
    await control({"auction_contention": 0.0})
    low = [await send_bundle(client, sim, [signed_tx(kp, bh, [tip_ix(kp, 2_000 + i)])]) for i in range(10)]
    assert {(await inflight(client, sim, b))["status"] for b in low} == {"Landed"}
    # land_delay_slots: a bundle now waits three slots.
    await control({"land_delay_slots": 3})
    later = await send_bundle(client, sim, [signed_tx(kp, bh, [tip_ix(kp, 3_000)])])
    await advance(client, sim, 2)
    assert (await inflight(client, sim, later))["status"] == "Pending"
    await advance(client, sim, 1)
    assert (await inflight(client, sim, later))["status"] == "Landed"
    # fund_lamports: a new wallet that asks for a route is credited that much, once (0: nothing).
    for fund in (0, 123_456_789):
        await control({"fund_lamports": fund})
        newcomer = Keypair()
        await _jupiter_swap(client, sim, newcomer, 10**6, slippage=50)
        assert await balance(client, sim, newcomer.pubkey()) == fund
