"""getTransaction: what an executed transaction did to balances, shaped as a node answers it."""

from __future__ import annotations

import aiohttp
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address
from solders.transaction import VersionedTransaction

import workers.clients  # noqa: F401  (registers the handlers)
from broker.jobs import RpcGetTransaction
from broker.results import TransactionMeta
from tests.clients.conftest import Worker
from tests.sim.sim_helpers import USDC, SimFactory, b64, latest_blockhash, rpc, signed_tx, tip_ix
from tests.sim.test_sim_vm import FEE, _jupiter_swap, advance, airdrop, send_bundle, wrap_then_close_then_use

V0 = {"encoding": "base64", "maxSupportedTransactionVersion": 0}


async def test_a_landed_swap_shows_its_balance_changes_once_confirmed(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    sim = await sim_factory(slot_ms=60_000, land_delay_slots=0)
    kp = Keypair()
    await airdrop(client, sim, kp, 2 * 10**9)
    quote, wire = await _jupiter_swap(client, sim, kp, 10**9, slippage=0, tip=20_000)
    await send_bundle(client, sim, [wire])
    signature = str(VersionedTransaction.from_bytes(wire).signatures[0])
    _, body = await rpc(client, sim.url, "getTransaction", [signature, V0])
    assert body["result"] is None  # processed, not yet confirmed
    _, refused = await rpc(client, sim.url, "getTransaction", [signature, {**V0, "commitment": "processed"}])
    assert refused["error"]["message"] == "Method does not support commitment below `confirmed`"
    await advance(client, sim, 1)
    _, legacy_only = await rpc(client, sim.url, "getTransaction", [signature, {"encoding": "base64"}])
    assert legacy_only["error"]["code"] == -32015
    _, body = await rpc(client, sim.url, "getTransaction", [signature, V0])
    got = body["result"]
    meta = got["meta"]
    assert got["version"] == 0 and got["transaction"] == [b64(wire), "base64"]
    assert meta["err"] is None and meta["status"] == {"Ok": None} and meta["fee"] == FEE
    usdc = str(get_associated_token_address(kp.pubkey(), Pubkey.from_string(USDC)))
    wallet = str(kp.pubkey())
    (after,) = [t for t in meta["postTokenBalances"] if t["mint"] == USDC and t["owner"] == wallet]
    assert after["uiTokenAmount"]["amount"] == quote["outAmount"]
    assert not [t for t in meta["preTokenBalances"] if t["owner"] == wallet]  # its accounts were made by the swap
    keys = [str(k) for k in VersionedTransaction.from_bytes(wire).message.account_keys]
    keys += meta["loadedAddresses"]["writable"] + meta["loadedAddresses"]["readonly"]
    assert len(meta["preBalances"]) == len(meta["postBalances"]) == len(keys) and keys[after["accountIndex"]] == usdc
    rent = meta["postBalances"][after["accountIndex"]]
    # The wallet paid the SOL it swapped, the fee, the tip and the new account's rent: nothing else.
    assert meta["preBalances"][0] - meta["postBalances"][0] == 10**9 + FEE + 20_000 + rent
    _, body = await rpc(client, sim.url, "getTransaction", [signature, {"maxSupportedTransactionVersion": 0}])
    assert body["result"]["transaction"]["signatures"] == [signature]  # the default json encoding


async def test_a_failed_bundle_is_not_found_and_a_failed_transaction_shows_the_fee_it_paid(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    sim = await sim_factory(slot_ms=60_000, land_delay_slots=0)
    kp = Keypair()
    await airdrop(client, sim, kp)
    bh = await latest_blockhash(client, sim.url)
    bundled = signed_tx(kp, bh, [*wrap_then_close_then_use(kp), tip_ix(kp)])
    await send_bundle(client, sim, [bundled])
    plain = signed_tx(kp, bh, wrap_then_close_then_use(kp))
    _, sent = await rpc(client, sim.url, "sendTransaction", [b64(plain), {"encoding": "base64", "skipPreflight": True}])
    await advance(client, sim, 1)
    bundled_sig = str(VersionedTransaction.from_bytes(bundled).signatures[0])
    _, body = await rpc(client, sim.url, "getTransaction", [bundled_sig, V0])
    assert body["result"] is None
    _, body = await rpc(client, sim.url, "getTransaction", [sent["result"], V0])
    meta = body["result"]["meta"]
    assert meta["err"] is not None and meta["status"] == {"Err": meta["err"]}
    assert meta["preBalances"][0] - meta["postBalances"][0] == FEE


async def test_the_worker_reads_a_transactions_meta_and_says_when_it_is_not_known(
    sim_factory: SimFactory, client: aiohttp.ClientSession
) -> None:
    sim = await sim_factory(slot_ms=60_000, land_delay_slots=0)
    kp = Keypair()
    await airdrop(client, sim, kp)
    wire = signed_tx(kp, await latest_blockhash(client, sim.url), [tip_ix(kp, 7_000)])
    await send_bundle(client, sim, [wire])
    await advance(client, sim, 1)
    signature = str(VersionedTransaction.from_bytes(wire).signatures[0])
    worker = Worker()
    try:
        ran = await worker.run(RpcGetTransaction(url=sim.url + "/rpc", signature=signature, commitment="confirmed"))
        unknown = await worker.run(RpcGetTransaction(url=sim.url + "/rpc", signature=str(Keypair().pubkey())))
    finally:
        await worker.close()
    meta = ran.outcome.value
    assert isinstance(meta, TransactionMeta) and meta.found and meta.err == "" and meta.fee == FEE
    assert meta.pre_balances[0] - meta.post_balances[0] == 7_000 + FEE
    assert unknown.outcome.result == "ok" and unknown.outcome.value == TransactionMeta(found=False)
