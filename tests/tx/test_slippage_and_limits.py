"""The arithmetic the chain holds a round trip to: minimum outs, derived slippage, compute limits."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from galileo.tx.budget import MAX_COMPUTE_UNIT_LIMIT, limit_for_units
from galileo.tx.slippage import BPS, min_out, slippage_for
from galileo.upstreams import leg_accounts, with_min_out


def test_min_out_floors_as_the_programs_do() -> None:
    assert min_out(1_000_960_574, 0) == 1_000_960_574
    assert min_out(1_000_960_574, 9) == 1_000_059_709  # 1_000_960_574 x 9991 / 10000, floored
    with pytest.raises(ValueError, match=r"0\.\.10000"):
        min_out(1, 10_001)


def test_the_slippage_a_round_trip_can_afford() -> None:
    out, needed = 1_000_960_574, 1_000_035_000
    bps = slippage_for(out, needed)
    assert bps == 9 and min_out(out, 9) >= needed > min_out(out, 10)
    assert slippage_for(out, out) == 0  # exactly the quote: no slippage at all
    assert slippage_for(out, out + 1) is None  # a quote below what it must pay: no slippage makes it
    assert slippage_for(0, 0) is None and slippage_for(5, 0) == BPS


@given(st.integers(1, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_derived_slippage_is_the_most_that_still_pays_what_is_needed(out: int, needed: int) -> None:
    bps = slippage_for(out, needed)
    if needed > out:
        assert bps is None
        return
    assert bps is not None and min_out(out, bps) >= needed
    assert bps == BPS or min_out(out, bps + 1) < needed


def test_compute_limit_is_the_units_times_the_margin_exactly_and_capped() -> None:
    assert limit_for_units(211_892, 1.1) == 233_082  # ceil(211 892 x 11/10): what the first round trip got
    assert limit_for_units(200_000, 1.1) == 220_000  # no float fuzz (200000 x 1.1 = 220000.00000000003)
    assert limit_for_units(150, 1.0) == 150
    assert limit_for_units(1_300_000, 1.2) == MAX_COMPUTE_UNIT_LIMIT
    for margin in (0.92, 0.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="margin"):
            limit_for_units(100_000, margin)


def test_each_leg_gets_half_the_transactions_accounts_after_ours() -> None:
    assert leg_accounts(None) == 30  # (64 - 3) // 2: two legs and our three always fit 64 locks
    assert leg_accounts(128) == 62 and leg_accounts(40) == 18


def test_a_quote_held_to_a_minimum_out_keeps_every_other_field() -> None:
    raw = orjson.dumps(
        {
            "inAmount": "200067379",
            "outAmount": "1000960574",
            "otherAmountThreshold": "1000960574",
            "minOutAmount": "1000960574",
            "slippageBps": 0,
            "swapMode": "ExactIn",
            "routePlan": [{"marketKey": "K"}],
            "contextSlot": 7,
        }
    )
    patched = orjson.loads(with_min_out(raw, 1_000_035_000))
    assert patched["slippageBps"] == 9
    assert patched["otherAmountThreshold"] == patched["minOutAmount"] == "1000059709"
    assert {k: v for k, v in patched.items() if k not in ("slippageBps", "otherAmountThreshold", "minOutAmount")} == {
        "inAmount": "200067379",
        "outAmount": "1000960574",
        "swapMode": "ExactIn",
        "routePlan": [{"marketKey": "K"}],
        "contextSlot": 7,
    }
    with pytest.raises(ValueError, match="below the 1000960575 it must pay"):
        with_min_out(raw, 1_000_960_575)
    with pytest.raises(ValueError, match="ExactIn"):
        with_min_out(orjson.dumps({"outAmount": "5", "swapMode": "ExactOut"}), 1)
