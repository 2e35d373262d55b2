"""Jito and Solana RPC clients: a signed bundle round trip, statuses, accounts, JSON-RPC error mapping."""

from __future__ import annotations

import hashlib

import aiohttp
from solders.address_lookup_table_account import AddressLookupTable
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from broker.jobs import (
    JitoBundleStatuses,
    JitoInflightStatuses,
    JitoSendBundle,
    JitoSendTransaction,
    JitoTipAccounts,
    JupiterQuote,
    JupiterSwapInstructions,
    RpcGetMultipleAccounts,
    RpcLatestBlockhash,
    RpcSendTransaction,
    RpcSignatureStatuses,
    RpcSimulateTransaction,
)
from broker.results import (
    Accounts,
    Blockhash,
    BundleAccepted,
    BundleStatuses,
    Quote,
    SignatureStatuses,
    Simulation,
    SwapInstructions,
    TipAccounts,
    TxSent,
)
from galileo.sim import SimServer
from tests.clients.conftest import SOL, USDC, USER, Stub, Worker, control, sim_stats

ALT_PROGRAM = "AddressLookupTab1e1111111111111111111111111"
TIP_ACCOUNTS = [
    "96gYZGLnJYVFmbjzopPSU6QiEV5fGqZNyN9nmNhvrZU5",
    "HFqU5x63VTqvQss8hp11i4wVV8bD44PvwucfZ2bU7gRe",
    "Cw8CFyM9FkoMi7K7Crf6HNQqf4uEMzpKw6QNghXLvLkY",
    "ADaUMid9yfUytqMBgopwjb2DTLSokTSzL1zt6iGPaS49",
    "DfXygSm4jCyNCybVYYK6DwvWqjKee8pbDmJGcLWNDXjh",
    "ADuUkR4vqLUMWXxW9gh6D6L8pMSawimctcNZ5pGwDcEt",
    "DttWaMuVvTiduZRnguLF7jNxTgiMBZ1hyAumKUiL2KRL",
    "3AVi9Tg9Uo68tJfuvoKvqKNWKkC5wPdSSdeBnizKZ6jT",
]


def signed(payer: Keypair, blockhash: str, ixs: list[Instruction]) -> VersionedTransaction:
    msg = MessageV0.try_compile(payer.pubkey(), ixs, [], Hash.from_string(blockhash))
    return VersionedTransaction(msg, [payer])


def tip(payer: Keypair, account: str, lamports: int) -> Instruction:
    return transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Pubkey.from_string(account), lamports=lamports)
    )


async def blockhash(sim: SimServer, worker: Worker) -> Blockhash:
    out = (await worker.run(RpcLatestBlockhash(url=sim.url + "/rpc", commitment="confirmed"))).outcome
    assert isinstance(out.value, Blockhash), out
    return out.value


async def test_bundle_round_trip(sim: SimServer, worker: Worker) -> None:
    ny = sim.url + "/jito/ny"
    tips = (await worker.run(JitoTipAccounts(base_url=ny))).outcome.value
    assert isinstance(tips, TipAccounts) and tips.accounts == TIP_ACCOUNTS
    bh = await blockhash(sim, worker)
    assert sim.state.ledger.issued[bh.blockhash] == bh.last_valid_block_height and bh.slot > 0
    kp = Keypair()
    tx = signed(kp, bh.blockhash, [tip(kp, tips.accounts[3], 1000)])
    sig = str(tx.signatures[0])
    sent = (await worker.run(JitoSendBundle(base_url=ny, transactions=[bytes(tx)]))).outcome
    assert sent.result == "ok", sent
    assert sent.value == BundleAccepted(bundle_id=hashlib.sha256(sig.encode()).hexdigest())
    bundle_id = sent.value.bundle_id
    await control(sim, {"advance_slots": 5})
    out = (await worker.run(JitoBundleStatuses(base_url=ny, bundle_ids=[bundle_id, "f" * 64]))).outcome
    statuses = out.value
    assert isinstance(statuses, BundleStatuses), out
    landed, unknown = statuses.statuses
    assert unknown is None and landed is not None
    assert (landed.bundle_id, landed.transactions, landed.err) == (bundle_id, [sig], "")
    assert landed.status in ("confirmed", "finalized") and landed.slot and landed.slot <= statuses.slot
    inflight = (await worker.run(JitoInflightStatuses(base_url=ny, bundle_ids=[bundle_id]))).outcome.value
    assert isinstance(inflight, BundleStatuses)
    assert inflight.statuses[0] is not None and inflight.statuses[0].status == "Landed"
    assert inflight.statuses[0].slot == landed.slot


async def test_bundle_limits_are_checked_before_sending(sim: SimServer, worker: Worker) -> None:
    ny = sim.url + "/jito/ny"
    out = (await worker.run(JitoSendBundle(base_url=ny, transactions=[b"tx"] * 6), ip="127.0.0.9")).outcome
    assert out.result == "decode_error" and "at most 5 transactions" in out.error and "nothing was sent" in out.error
    out = (await worker.run(JitoBundleStatuses(base_url=ny, bundle_ids=["a"] * 6), ip="127.0.0.9")).outcome
    assert out.result == "decode_error"
    assert "127.0.0.9" not in (await sim_stats(sim))["requests"]["by_ip"]


async def test_jito_rejections_and_rate_limits(sim: SimServer, worker: Worker) -> None:
    ny = sim.url + "/jito/ny"
    kp = Keypair()
    stale = signed(kp, str(Hash.new_unique()), [tip(kp, TIP_ACCOUNTS[0], 5000)])
    out = (await worker.run(JitoSendBundle(base_url=ny, transactions=[bytes(stale)]))).outcome
    assert (out.result, out.status) == ("http_error", 400)
    assert "JSON-RPC -32602: bundle contains an invalid blockhash" in out.error
    await control(sim, {"ip_overrides": {"127.0.0.3": {"status": 429, "retry_after": 2, "services": ["jito"]}}})
    out = (await worker.run(JitoTipAccounts(base_url=ny), ip="127.0.0.3")).outcome
    assert (out.result, out.status, out.retry_after) == ("rate_limited", 429, 2.0) and "-32097" in out.error
    assert (await worker.run(JitoTipAccounts(base_url=ny), ip="127.0.0.4")).outcome.result == "ok"
    await control(sim, {"faults": {"5xx": 1.0}})
    out = (await worker.run(JitoTipAccounts(base_url=ny))).outcome
    assert (out.result, out.status) == ("http_error", 503)


async def test_jito_send_transaction_bundle_only(sim: SimServer, worker: Worker) -> None:
    kp = Keypair()
    bh = await blockhash(sim, worker)
    tx = signed(kp, bh.blockhash, [tip(kp, TIP_ACCOUNTS[1], 1500)])
    out = (
        await worker.run(JitoSendTransaction(base_url=sim.url + "/jito/ams", transaction=bytes(tx), bundle_only=True))
    ).outcome
    sig = str(tx.signatures[0])
    assert out.value == TxSent(signature=sig, bundle_id=hashlib.sha256(sig.encode()).hexdigest())


async def test_rate_limit_in_a_200_answer(stub: Stub, worker: Worker) -> None:
    stub.answer(
        "/api/v1/bundles",
        '{"jsonrpc":"2.0","error":{"code":-32097,"message":"Rate limit exceeded. Retry after 250ms"},"id":1}',
    )
    out = (await worker.run(JitoTipAccounts(base_url=stub.url))).outcome
    assert (out.result, out.status, out.retry_after) == ("rate_limited", 200, 0.25)
    stub.answer("/rpc", '{"jsonrpc":"2.0","error":{"code":-32429,"message":"max usage reached"},"id":1}')
    out = (await worker.run(RpcLatestBlockhash(url=stub.url + "/rpc"))).outcome
    assert (out.result, out.status) == ("rate_limited", 200)
    stub.answer(
        "/rpc",
        '{"jsonrpc":"2.0","error":{"code":-32005,"message":"Node is behind","data":{"numSlotsBehind":42}},"id":1}',
    )
    out = (await worker.run(RpcLatestBlockhash(url=stub.url + "/rpc"))).outcome
    assert (out.result, out.status) == ("http_error", 503) and "numSlotsBehind: 42" in out.error
    stub.answer("/rpc", '{"jsonrpc":"2.0","result":{"context":{"slot":1},"value":{"blockhash":"x"}},"id":1}')
    out = (await worker.run(RpcLatestBlockhash(url=stub.url + "/rpc"))).outcome
    assert out.result == "decode_error" and "`lastValidBlockHeight`" in out.error and "$.result.value" in out.error
    stub.answer("/rpc", '{"jsonrpc":"2.0","id":1}')
    assert (await worker.run(RpcLatestBlockhash(url=stub.url + "/rpc"))).outcome.result == "decode_error"


async def test_rpc_send_statuses_and_preflight(sim: SimServer, worker: Worker) -> None:
    rpc = sim.url + "/rpc"
    kp, dest = Keypair(), Keypair().pubkey()
    bh = await blockhash(sim, worker)
    # Enough for a new account's rent: the simulator runs the transfer (preflight first).
    pay = transfer(TransferParams(from_pubkey=kp.pubkey(), to_pubkey=dest, lamports=1_000_000))
    tx = signed(kp, bh.blockhash, [pay])
    out = (await worker.run(RpcSendTransaction(url=rpc, transaction=bytes(tx), max_retries=0))).outcome
    sig = str(tx.signatures[0])
    assert out.value == TxSent(signature=sig)
    await control(sim, {"advance_slots": 3})
    other = str(Keypair().sign_message(b"x"))
    got = (await worker.run(RpcSignatureStatuses(url=rpc, signatures=[sig, other]))).outcome.value
    assert isinstance(got, SignatureStatuses)
    first, second = got.statuses
    assert second is None and first is not None and first.err == ""
    assert first.confirmation_status == "confirmed" and first.slot <= got.slot
    bad = signed(
        kp, str(Hash.new_unique()), [transfer(TransferParams(from_pubkey=kp.pubkey(), to_pubkey=dest, lamports=1))]
    )
    out = (await worker.run(RpcSendTransaction(url=rpc, transaction=bytes(bad), skip_preflight=False))).outcome
    assert out.result == "http_error" and "-32002" in out.error and '"BlockhashNotFound"' in out.error
    await control(sim, {"ip_overrides": {"127.0.0.3": {"status": 429, "retry_after": 1, "services": ["rpc"]}}})
    out = (await worker.run(RpcLatestBlockhash(url=rpc), ip="127.0.0.3")).outcome
    assert (out.result, out.retry_after) == ("rate_limited", 1.0) and "-32429" in out.error
    await control(sim, {"faults": {"5xx": 1.0}})
    out = (await worker.run(RpcLatestBlockhash(url=rpc))).outcome
    assert (out.result, out.status) == ("http_error", 503) and "-32005" in out.error


async def test_lookup_tables_of_a_swap_come_back_as_account_data(sim: SimServer, worker: Worker) -> None:
    q = (
        await worker.run(
            JupiterQuote(base_url=sim.url + "/jupiter/swap/v1", input_mint=SOL, output_mint=USDC, amount=10**9)
        )
    ).outcome.value
    assert isinstance(q, Quote)
    s = (
        await worker.run(
            JupiterSwapInstructions(base_url=sim.url + "/jupiter/swap/v1", user_public_key=USER, quote=q.raw)
        )
    ).outcome.value
    assert isinstance(s, SwapInstructions)
    missing = str(Keypair().pubkey())
    out = (await worker.run(RpcGetMultipleAccounts(url=sim.url + "/rpc", addresses=[*s.alts, missing]))).outcome
    accounts = out.value
    assert isinstance(accounts, Accounts), out
    *alts, absent = accounts.accounts
    assert absent.address == missing and absent.data is None
    for alt in alts:
        assert alt.owner == ALT_PROGRAM and alt.data is not None and alt.lamports > 0
        table = AddressLookupTable.deserialize(alt.data)
        swap_keys = {m.pubkey for m in s.swap.accounts}
        assert swap_keys & {str(a) for a in table.addresses}  # the pool's accounts are in the table
    too_many = (await worker.run(RpcGetMultipleAccounts(url=sim.url + "/rpc", addresses=[missing] * 101))).outcome
    assert too_many.result == "decode_error"


async def test_a_simulation_says_the_units_a_transaction_consumes_and_why_it_fails(
    sim: SimServer, worker: Worker
) -> None:
    rpc = sim.url + "/rpc"
    payer = Keypair()
    bh = (await worker.run(RpcLatestBlockhash(url=rpc))).outcome.value
    assert isinstance(bh, Blockhash)
    pay = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=10**6))
    message = MessageV0.try_compile(payer.pubkey(), [pay], [], Hash.from_string(bh.blockhash))
    unsigned = bytes(VersionedTransaction.populate(message, [Signature.default()]))  # no signature needed
    out = (await worker.run(RpcSimulateTransaction(url=rpc, transaction=unsigned))).outcome
    assert out.result == "ok" and isinstance(out.value, Simulation), out  # a failing transaction is an answer
    assert out.value.err == '"AccountNotFound"' and out.value.slot > 0  # nobody funded the payer
    async with aiohttp.ClientSession() as client:
        body = {"jsonrpc": "2.0", "id": 1, "method": "requestAirdrop", "params": [str(payer.pubkey()), 10**9]}
        async with client.post(rpc, json=body) as r:
            assert r.status == 200
    out = (await worker.run(RpcSimulateTransaction(url=rpc, transaction=unsigned))).outcome
    assert isinstance(out.value, Simulation) and out.value.err == "" and out.value.units_consumed == 150, out
