"""What each leg asks its upstream for (issue 15): slippage 0, its share of accounts, measured compute,
the sell's minimum out, Titan's input account kept open; and the orders no transaction of ours can carry."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from broker.jobs import (
    DflowQuote,
    DflowSwapInstructions,
    JupiterQuote,
    JupiterSwapInstructions,
    TitanSubscribe,
    UltraOrder,
)
from broker.results import Quote, ResultValue, SwapInstructions, UltraOrderResult
from broker.solana import AccountMeta, Instruction
from broker.types import JobOutcome, JobSpec
from galileo.chain import ChainState
from galileo.config import GalileoConfig, parse_config
from galileo.strategy.legs import AggregatorLeg, LegError, LegQuote, UltraLeg
from galileo.tx.build import to_solders_instruction
from galileo.upstreams import QuoteRequest, Upstreams
from tests.fakefarm import FakeFarm
from tests.tx.shapes import key

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
U = "http://127.0.0.1:9"
USER = str(Keypair.from_seed(bytes(32)).pubkey())


def config(extra: str = "") -> GalileoConfig:
    return parse_config(f"""
upstreams:
  jupiter: {{base_url: '{U}/jupiter', api_key_env: null}}
  dflow: {{base_url: '{U}/dflow', api_key_env: null}}
  ultra: {{base_url: '{U}/ultra', api_key_env: null}}
  rpc: {{urls: ['{U}/rpc']}}
blind_strategy: {{enable: false{extra}}}
""")


REQ = QuoteRequest(SOL, USDC, 10**9)


def test_quotes_are_asked_at_slippage_0_with_half_the_transactions_accounts() -> None:
    up = Upstreams(config())
    jupiter = up.quote(REQ, prefer_ip=None, task="quote_buy", provider="jupiter").payload
    assert isinstance(jupiter, JupiterQuote) and (jupiter.slippage_bps, jupiter.max_accounts) == (0, 30)
    dflow = up.quote(REQ, prefer_ip=None, task="quote_buy", provider="dflow").payload
    assert isinstance(dflow, DflowQuote) and dflow.slippage_bps == 0
    ultra = up.ultra_order(REQ, USER, prefer_ip=None, task="quote_buy").payload
    assert isinstance(ultra, UltraOrder) and ultra.slippage_bps == 0
    titan = up.titan_subscribe("TITAN_TOKEN#1", REQ, USER, ip="127.0.0.2").payload
    assert isinstance(titan, TitanSubscribe)
    assert (titan.slippage_bps, titan.accounts_limit_total, titan.close_input_token_account) == (0, 30, False)
    wide = Upstreams(config(", max_accounts: 40")).quote(REQ, prefer_ip=None, task="quote_buy", provider="jupiter")
    assert isinstance(wide.payload, JupiterQuote) and wide.payload.max_accounts == 18


def test_swap_instructions_ask_for_measured_compute_and_the_sells_minimum_out() -> None:
    up = Upstreams(config())
    raw = orjson.dumps({"outAmount": "1000960574", "otherAmountThreshold": "1000960574", "slippageBps": 0})
    for provider, kind in (("jupiter", JupiterSwapInstructions), ("dflow", DflowSwapInstructions)):
        job = up.swap_instructions(raw, USER, prefer_ip=None, provider=provider).payload
        assert isinstance(job, kind) and job.dynamic_compute_unit_limit is True and job.quote == raw
        held = up.swap_instructions(raw, USER, prefer_ip=None, provider=provider, min_out=1_000_035_000).payload
        assert isinstance(held, kind)
        assert orjson.loads(held.quote) == {
            "outAmount": "1000960574",
            "otherAmountThreshold": "1000059709",
            "slippageBps": 9,
        }
    with pytest.raises(ValueError, match="below"):
        up.swap_instructions(raw, USER, prefer_ip=None, provider="jupiter", min_out=1_000_960_575)


def aggregator_leg(answer: object) -> tuple[AggregatorLeg, FakeFarm]:
    farm = FakeFarm(["127.0.0.2"], answer=answer)  # type: ignore[arg-type]
    up = Upstreams(config())
    return AggregatorLeg("jupiter", farm, up, ChainState(farm, up), USER), farm


def test_the_sell_leg_is_held_to_what_the_round_trip_needs_or_not_built() -> None:
    ix = Instruction(key("jup"), (AccountMeta(USER, True, False),), b"r")
    leg, farm = aggregator_leg(lambda spec, ip: SwapInstructions(compute_budget=[], setup=[], swap=ix))
    raw = orjson.dumps({"outAmount": "1000", "otherAmountThreshold": "1000", "slippageBps": 0})
    quote = Quote(
        in_amount=5, out_amount=1000, other_amount_threshold=1000, slippage_bps=0, price_impact_pct=0, raw=raw
    )
    q = LegQuote("jupiter", QuoteRequest(USDC, SOL, 5), 5, 1000, None, 0.0, quote, min_out=1000)
    built = asyncio.run(leg.swap_leg(q, min_out=990))
    assert (built.min_out, built.input_mint, built.output_mint, built.label) == (990, USDC, SOL, "jupiter")
    (spec,) = [s for _, s, _ in farm.jobs]
    assert isinstance(spec.payload, JupiterSwapInstructions) and orjson.loads(spec.payload.quote)["slippageBps"] == 100
    with pytest.raises(LegError) as info:
        asyncio.run(leg.swap_leg(q, min_out=1001))
    assert info.value.result == "short" and len(farm.jobs) == 1  # not even asked


def order(signers: list[Keypair], *, gasless: bool = False) -> UltraOrderResult:
    metas = tuple(AccountMeta(str(k.pubkey()), True, True) for k in signers)
    ix = to_solders_instruction(Instruction(key("ultra-router"), metas, b"o"))
    message = MessageV0.try_compile(signers[0].pubkey(), [ix], [], Hash.default())
    unsigned = VersionedTransaction.populate(message, [Signature.default()] * len(signers))
    return UltraOrderResult(
        request_id="r",
        in_amount=10**9,
        out_amount=7,
        other_amount_threshold=7,
        transaction=bytes(unsigned),
        router="x",
        gasless=gasless,
    )


def ultra_quote(answer: UltraOrderResult) -> LegQuote:
    def reply(spec: JobSpec, ip: str) -> ResultValue | JobOutcome | None:
        return answer

    farm = FakeFarm(["127.0.0.2"], answer=reply)
    up = Upstreams(config())
    return asyncio.run(UltraLeg(farm, up, ChainState(farm, up), USER).quote(REQ, None, "quote_buy"))


def test_an_ultra_order_needing_another_signer_is_skipped_with_its_reason() -> None:
    me = Keypair.from_seed(bytes(32))
    assert ultra_quote(order([me])).min_out == 7  # ours alone: a leg
    for skipped in (order([me, Keypair()]), order([Keypair(), me]), order([me], gasless=True)):
        with pytest.raises(LegError) as info:
            ultra_quote(skipped)
        assert info.value.result == "needs_other_signer" and "cannot be merged" in str(info.value)
