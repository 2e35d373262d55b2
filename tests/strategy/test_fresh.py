"""The freshness rule every leg is held to: contextSlot against the chain, Titan's expiresAfterSlot, age."""

from __future__ import annotations

from broker.results import Quote, TitanQuote, UltraOrderResult
from galileo.strategy.fresh import staleness
from galileo.strategy.legs import LegQuote
from galileo.upstreams import QuoteRequest

REQ = QuoteRequest("So11111111111111111111111111111111111111112", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 10**9)


def jupiter(context_slot: int, received: float = 100.0) -> LegQuote:
    q = Quote(
        in_amount=10**9, out_amount=5, other_amount_threshold=5, slippage_bps=0, price_impact_pct=0.0,
        context_slot=context_slot,
    )  # fmt: skip
    return LegQuote("jupiter", REQ, 10**9, 5, "10.0.0.1", 0.01, q, received)


def titan(context_slot: int, expires_after_slot: int, received: float = 100.0) -> LegQuote:
    q = TitanQuote(
        provider="Titan", in_amount=10**9, out_amount=5, slippage_bps=0, instructions=[], seq=1, stream_id=0,
        context_slot=context_slot, expires_after_slot=expires_after_slot,
    )  # fmt: skip
    return LegQuote("titan", REQ, 10**9, 5, "10.0.0.1", 0.0, q, received)


def ultra(received: float) -> LegQuote:
    order = UltraOrderResult(request_id="r", in_amount=10**9, out_amount=5, transaction=b"\x01")
    return LegQuote("ultra", REQ, 10**9, 5, "10.0.0.1", 0.01, order, received)


def test_a_quote_more_than_the_allowed_slots_behind_the_chain_is_stale() -> None:
    assert staleness(jupiter(1000), chain_slot=1004, now=100.0, max_slots=4) is None
    assert staleness(jupiter(1000), chain_slot=1005, now=100.0, max_slots=4) == "stale_quote"
    assert staleness(jupiter(1006), chain_slot=1005, now=100.0, max_slots=4) is None  # the aggregator saw further
    assert staleness(jupiter(1000), chain_slot=None, now=100.0, max_slots=4) is None  # the chain not known yet


def test_a_titan_quote_is_held_to_its_expiry_slot_and_its_age() -> None:
    assert staleness(titan(1000, 1002), chain_slot=1002, now=100.0, max_slots=4) is None
    assert staleness(titan(1000, 1002), chain_slot=1003, now=100.0, max_slots=4) == "quote_expired"
    assert staleness(titan(1000, 0), chain_slot=1010, now=100.0, max_slots=4) == "stale_quote"  # no expiry: age


def test_a_quote_without_a_slot_is_held_to_the_time_since_it_arrived() -> None:
    assert staleness(ultra(received=100.0), chain_slot=1000, now=101.6, max_slots=4) is None  # 4 slots of 400 ms
    assert staleness(ultra(received=100.0), chain_slot=1000, now=101.7, max_slots=4) == "stale_quote"
    assert staleness(jupiter(1000, received=100.0), chain_slot=None, now=102.0, max_slots=4) == "stale_quote"
