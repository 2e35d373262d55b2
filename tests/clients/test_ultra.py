"""Jupiter Ultra client: order → sign with solders → execute, and every way an execute fails."""

from __future__ import annotations

from pathlib import Path

from solders.keypair import Keypair
from solders.transaction import VersionedTransaction

from broker.jobs import UltraExecute, UltraOrder
from broker.results import UltraExecuteResult, UltraOrderResult
from galileo.sim import SimServer
from tests.clients.conftest import SOL, USDC, Stub, Worker

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference"


def ultra(sim: SimServer) -> str:
    return sim.url + "/jupiter/ultra/v1"


async def order(sim: SimServer, worker: Worker, taker: Keypair | None) -> UltraOrderResult:
    out = (
        await worker.run(
            UltraOrder(
                base_url=ultra(sim),
                input_mint=SOL,
                output_mint=USDC,
                amount=250_000_000,
                taker=str(taker.pubkey()) if taker else None,
            )
        )
    ).outcome
    assert out.result == "ok", out
    assert isinstance(out.value, UltraOrderResult)
    return out.value


async def test_order_sign_execute_lands(sim: SimServer, worker: Worker) -> None:
    kp = Keypair()
    o = await order(sim, worker, kp)
    assert o.request_id and o.in_amount == 250_000_000 and o.out_amount > 0
    assert o.router in {"aggregator", "jupiterz", "dflow"} and o.route and o.signature_fee_lamports == 5000
    unsigned = VersionedTransaction.from_bytes(o.transaction)
    assert unsigned.message.account_keys[0] == kp.pubkey()
    signed = VersionedTransaction(unsigned.message, [kp])
    out = (
        await worker.run(UltraExecute(base_url=ultra(sim), signed_transaction=bytes(signed), request_id=o.request_id))
    ).outcome
    assert out.result == "ok", out
    r = out.value
    assert isinstance(r, UltraExecuteResult)
    assert (r.status, r.code, r.signature) == ("Success", 0, str(signed.signatures[0]))
    # The swap ran slots after the order: it paid what the pool paid then, within the slippage.
    assert r.slot > 0 and r.input_amount == o.in_amount and r.output_amount >= o.other_amount_threshold > 0


async def test_order_without_taker_has_no_transaction(sim: SimServer, worker: Worker) -> None:
    o = await order(sim, worker, None)
    assert o.transaction == b"" and o.out_amount > 0


async def test_failed_executes_are_http_errors_with_the_code(sim: SimServer, worker: Worker) -> None:
    kp = Keypair()
    o = await order(sim, worker, kp)
    unknown = await worker.run(UltraExecute(base_url=ultra(sim), signed_transaction=o.transaction, request_id="nope"))
    assert (unknown.outcome.result, unknown.outcome.status) == ("http_error", 200)
    assert "code -1:" in unknown.outcome.error and unknown.outcome.value is None
    unsigned = await worker.run(
        UltraExecute(base_url=ultra(sim), signed_transaction=o.transaction, request_id=o.request_id)
    )
    assert unsigned.outcome.result == "http_error" and "Failed, code -1003" in unsigned.outcome.error
    assert "signature" in unsigned.outcome.error


async def test_reference_order_and_execute_error_bodies(stub: Stub, worker: Worker) -> None:
    stub.answer("/order", (REFERENCE / "ultra_order.json").read_bytes())
    out = (
        await worker.run(UltraOrder(base_url=stub.url, input_mint=USDC, output_mint=SOL, amount=100_000_000))
    ).outcome
    o = out.value
    assert isinstance(o, UltraOrderResult), out
    assert (o.request_id, o.in_amount, o.out_amount, o.other_amount_threshold) == (
        "019a2b6c-8f3e-7c1d-9a4b-2c5d6e7f8a9b",
        100_000_000,
        461_208_958,
        460_024_271,
    )
    assert (o.transaction, o.router, o.route, o.fee_bps, o.prioritization_fee_lamports) == (
        b"\x01\x00\x00\x00",
        "aggregator",
        ["MeteoraDLMM"],
        2,
        696_237,
    )
    stub.answer("/execute", '{"error":"Missing requestId","code":-4}', status=400)
    out = (await worker.run(UltraExecute(base_url=stub.url, signed_transaction=b"x", request_id=""))).outcome
    assert (out.result, out.status) == ("http_error", 400) and "-4: Missing requestId" in out.error
    stub.answer("/execute", (REFERENCE / "ultra_execute_failed.json").read_bytes())
    out = (await worker.run(UltraExecute(base_url=stub.url, signed_transaction=b"x", request_id="r"))).outcome
    assert out.result == "http_error" and "Failed, code -1005: Transaction expired" in out.error
    stub.answer("/execute", (REFERENCE / "ultra_execute.json").read_bytes())
    out = (await worker.run(UltraExecute(base_url=stub.url, signed_transaction=b"x", request_id="r"))).outcome
    assert isinstance(out.value, UltraExecuteResult) and out.value.slot == 376_435_416
