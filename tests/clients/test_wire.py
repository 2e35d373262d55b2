"""Every job payload and result crosses the coordinator <-> worker wire intact, and has a handler."""

from __future__ import annotations

import typing

import pytest

import workers.clients  # noqa: F401
from broker.jobs import (
    DflowQuote,
    DflowSwapInstructions,
    HttpRequest,
    JitoBundleStatuses,
    JitoInflightStatuses,
    JitoSendBundle,
    JitoSendTransaction,
    JitoTipAccounts,
    JitoTipFloor,
    JobPayload,
    JupiterQuote,
    JupiterSwapInstructions,
    RpcGetMultipleAccounts,
    RpcGetTransaction,
    RpcLatestBlockhash,
    RpcPrioritizationFees,
    RpcSendTransaction,
    RpcSignatureStatuses,
    RpcSimulateTransaction,
    SecretRef,
    TitanConnect,
    TitanStop,
    TitanSubscribe,
    UltraExecute,
    UltraOrder,
)
from broker.protocol import Dispatch, Event, Outcome, Result, decode, encode
from broker.results import (
    AccountInfo,
    Accounts,
    Blockhash,
    BundleAccepted,
    BundleStatus,
    BundleStatuses,
    HttpResponse,
    PrioritizationFees,
    Quote,
    ResultValue,
    SignatureStatus,
    SignatureStatuses,
    Simulation,
    SwapInstructions,
    TipAccounts,
    TipFloor,
    TitanConnectionSummary,
    TitanInfo,
    TitanQuote,
    TitanStreamEnded,
    TitanStreamOpened,
    TokenBalance,
    TransactionMeta,
    TxSent,
    UltraExecuteResult,
    UltraOrderResult,
)
from broker.solana import AccountMeta, Instruction
from workers.executor import HANDLERS

KEY = SecretRef("x-api-key", "JUP_KEY")
IX = Instruction(
    "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4",
    (AccountMeta("So11111111111111111111111111111111111111112", True, False),),
    b"\x01\x02",
)

PAYLOADS: list[JobPayload] = [
    HttpRequest(url="http://x/"),
    JupiterQuote(
        base_url="b",
        input_mint="i",
        output_mint="o",
        amount=2**64 - 1,
        dexes=["A", "B"],
        swap_mode="ExactOut",
        secret=KEY,
    ),
    JupiterSwapInstructions(base_url="b", user_public_key="u", quote=b'{"a":1}', jito_tip_lamports=1000),
    DflowQuote(base_url="b", input_mint="i", output_mint="o", amount=1, slippage_bps="auto", max_route_length=3),
    DflowSwapInstructions(base_url="b", user_public_key="u", quote=b"{}", prioritization_fee_lamports="auto"),
    UltraOrder(base_url="b", input_mint="i", output_mint="o", amount=1, taker="t", exclude_routers=["okx"]),
    UltraExecute(base_url="b", signed_transaction=b"\x00" * 100, request_id="r"),
    JitoSendBundle(base_url="b", transactions=[b"\x01", b"\x02"], secret=SecretRef("x-jito-auth", "JITO_UUID")),
    JitoBundleStatuses(base_url="b", bundle_ids=["x"]),
    JitoInflightStatuses(base_url="b", bundle_ids=["x", "y"]),
    JitoTipAccounts(base_url="b"),
    JitoSendTransaction(base_url="b", transaction=b"\x01", bundle_only=True),
    RpcLatestBlockhash(url_env="RPC_URL", commitment="processed"),
    RpcSendTransaction(url="u", transaction=b"\x01", skip_preflight=True, max_retries=0),
    RpcSignatureStatuses(url="u", signatures=["s"], search_transaction_history=True),
    RpcGetMultipleAccounts(url="u", addresses=["a", "b"]),
    RpcSimulateTransaction(url="u", transaction=b"\x01", replace_recent_blockhash=True),
    JitoTipFloor(url="u"),
    RpcPrioritizationFees(url="u", accounts=["a"]),
    RpcGetTransaction(url_env="RPC_URL", signature="s", commitment="confirmed"),
    TitanConnect(url="ws://x", lease="TITAN_TOKEN#1", secret=SecretRef("Authorization", "TITAN_TOKEN", "Bearer ")),
    TitanSubscribe(
        lease="TITAN_TOKEN#1",
        input_mint="i",
        output_mint="o",
        amount=1,
        user_public_key="u",
        replace=3,
        providers=["T"],
    ),
    TitanStop(lease="TITAN_TOKEN#1", stream_id=4),
    TitanStop(lease="TITAN_TOKEN#1"),
]

VALUES: list[ResultValue] = [
    HttpResponse(status=200, body=b"{}"),
    Quote(
        in_amount=1,
        out_amount=2,
        other_amount_threshold=2,
        slippage_bps=0,
        price_impact_pct=0.1,
        route=["X"],
        raw=b"{}",
    ),
    SwapInstructions(
        compute_budget=[IX], setup=[], swap=IX, cleanup=[IX], alts=["a"], blockhash="h", last_valid_block_height=9
    ),
    UltraOrderResult(request_id="r", in_amount=1, out_amount=2, transaction=b"\x01\x00", router="dflow"),
    UltraExecuteResult(status="Success", signature="s", slot=5, input_amount=1, output_amount=2),
    BundleAccepted(bundle_id="b"),
    BundleStatuses(slot=3, statuses=[BundleStatus(bundle_id="b", status="Landed", slot=2), None]),
    TipAccounts(accounts=["t"]),
    TxSent(signature="s", bundle_id="b"),
    Blockhash(blockhash="h", last_valid_block_height=10, slot=3),
    SignatureStatuses(
        slot=4, statuses=[SignatureStatus(slot=3, confirmations=None, confirmation_status="finalized"), None]
    ),
    Simulation(slot=7, units_consumed=211_884, err='{"InstructionError":[4,{"Custom":6001}]}', logs=["l"]),
    Accounts(
        slot=1, accounts=[AccountInfo(address="a", data=b"\x00", owner="o", lamports=5), AccountInfo(address="m")]
    ),
    TitanQuote(
        provider="Titan",
        in_amount=1,
        out_amount=2,
        slippage_bps=0,
        instructions=[IX],
        seq=3,
        stream_id=0,
        providers={"Titan": 2},
    ),
    TipFloor(p25=1000, p50=10_000, p75=36_000, p95=1_400_000, p99=10_000_000, ema50=9_000),
    PrioritizationFees(slot=9, fees=[0, 5000, 12_000]),
    TransactionMeta(
        slot=9,
        fee=5000,
        pre_balances=[10, 0],
        post_balances=[4, 2],
        pre_token_balances=[],
        post_token_balances=[TokenBalance(1, "m", "o", 2**64 - 1)],
    ),
    TransactionMeta(found=False),
    TitanInfo(concurrent_streams=4, interval_ms_min=50, interval_ms_max=10_000, protocol="v1.api.titan.ag+gzip"),
    TitanStreamOpened(stream_id=3, interval_ms=400),
    TitanStreamEnded(stream_id=3, updates=0, error_code=503, error_message="provider down"),
    TitanConnectionSummary(ended_by="server", streams_opened=4, updates=99, close_code=1008, close_reason="expired"),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_payload_round_trip(payload: JobPayload) -> None:
    tag = type(payload).__struct_config__.tag
    msg = Dispatch(job_id=3, attempt=1, kind=str(tag), upstream="u", timeout=2.0, payload=payload)
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_result_and_event_round_trip(value: ResultValue) -> None:
    result = Result(job_id=3, attempt=0, outcome=Outcome(result="ok", status=200, latency=0.01, value=value))
    assert decode(encode(result)) == result
    event = Event(job_id=3, name="quote", value=value)
    assert decode(encode(event)) == event


def test_every_payload_kind_is_covered_and_has_a_handler() -> None:
    kinds = set(typing.get_args(JobPayload))
    assert {type(p) for p in PAYLOADS} == kinds
    assert {type(v) for v in VALUES} == set(typing.get_args(ResultValue))
    assert kinds <= set(HANDLERS)
