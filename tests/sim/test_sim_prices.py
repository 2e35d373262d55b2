"""The price model: deterministic under a seed, different per service, profitable now and then."""

from __future__ import annotations

import itertools

import pytest

from galileo.sim.ledger import BASE_SLOT
from galileo.sim.prices import MAX_HOLD_SLOTS, MINTS, PriceModel
from tests.sim.sim_helpers import SOL, USDC

JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
SERVICES = ("jupiter", "dflow", "ultra", "titan:Titan", "titan:Metis")


def test_same_seed_same_answers_other_seed_other_answers() -> None:
    a, b, c = PriceModel(1, BASE_SLOT), PriceModel(1, BASE_SLOT), PriceModel(2, BASE_SLOT)
    for slot in (BASE_SLOT, BASE_SLOT + 500, BASE_SLOT + 3):  # out of order on purpose
        assert a.quote("jupiter", SOL, USDC, 10**9, False, slot) == b.quote("jupiter", SOL, USDC, 10**9, False, slot)
    assert a.quote("jupiter", SOL, USDC, 10**9, False, BASE_SLOT + 500) != c.quote(
        "jupiter", SOL, USDC, 10**9, False, BASE_SLOT + 500
    )


def test_services_quote_differently_and_prices_drift() -> None:
    model = PriceModel(4, BASE_SLOT)
    outs = {s: model.quote(s, SOL, USDC, 10**9, False, BASE_SLOT + 10) for s in SERVICES}
    # Services route through the pair's pools (three of them, each with its own price) ...
    assert len({q.out_amount for q in outs.values() if q}) > 1
    for q in outs.values():  # ... and a quote is exactly what its pool pays
        assert q is not None and q == model.quote("any", SOL, USDC, 10**9, False, BASE_SLOT + 10, q.pool)
    assert model.mid_usd(SOL, BASE_SLOT) != model.mid_usd(SOL, BASE_SLOT + 1000)
    assert 150 < model.mid_usd(SOL, BASE_SLOT + 1000) < 250


def test_round_trips_are_sometimes_profitable() -> None:
    model = PriceModel(0, BASE_SLOT)
    for other in (USDC, JUP):
        wins = total = 0
        for slot in range(BASE_SLOT, BASE_SLOT + 200):
            for s1, s2 in itertools.product(SERVICES, SERVICES):
                there = model.quote(s1, SOL, other, 10**9, False, slot)
                assert there is not None
                back = model.quote(s2, other, SOL, there.out_amount, False, slot)
                assert back is not None
                total += 1
                wins += back.out_amount - 10**9 > 20_000
        assert 0.05 <= wins / total <= 0.20, (MINTS[other].symbol, wins / total)


def test_exact_out_and_no_route() -> None:
    model = PriceModel(0, BASE_SLOT)
    q = model.quote("jupiter", USDC, SOL, 10**9, True, BASE_SLOT)
    assert q is not None and q.out_amount == 10**9 and 150e6 < q.in_amount < 250e6
    assert model.quote("jupiter", SOL, SOL, 10**9, False, BASE_SLOT) is None
    assert model.quote("jupiter", SOL, "Unknown1111111111111111111111111111111111111", 1, False, BASE_SLOT) is None
    assert model.quote("jupiter", SOL, USDC, 10**18, False, BASE_SLOT) is None  # deeper than the pools


def test_one_slot_hold_is_the_market_as_it_was() -> None:
    """``pool_hold_slots: 1`` gives, to the raw unit, what the model gave before prices were held."""
    model = PriceModel(0, BASE_SLOT, hold_slots=1)
    before = {  # (out_amount, pool) at BASE_SLOT + k, from the model before the hold existed
        ("jupiter", SOL, USDC, 10**9): [(200063763, 2), (199995228, 2), (200064738, 2), (200010185, 0), (200047948, 2)],
        ("dflow", USDC, SOL, 200 * 10**6): [
            (999221486, 2),
            (999563906, 2),
            (999216619, 2),
            (1000034515, 2),
            (999300483, 2),
        ],
    }
    for (service, a, b, amount), expected in before.items():
        got = [model.quote(service, a, b, amount, False, BASE_SLOT + k) for k in (0, 1, 2, 7, 500)]
        assert [(q.out_amount, q.pool) for q in got if q] == expected


def test_a_pool_holds_its_price_for_its_hold_period_each_pool_from_its_own_phase() -> None:
    hold = 6
    model = PriceModel(3, BASE_SLOT, hold_slots=hold)
    moves: dict[tuple[str, int], list[int]] = {}
    for other in (USDC, JUP):
        for index in range(3):
            states = [model.pool_state(SOL, other, index, BASE_SLOT + k) for k in range(40)]
            changed = [k for k in range(1, 40) if states[k] != states[k - 1]]
            # Piecewise constant: it moves once every `hold` slots, never in between.
            assert len(changed) >= 5 and all(b - a == hold for a, b in itertools.pairwise(changed)), changed
            moves[(other, index)] = changed
    # Pools move at different slots, so a gap between two of them opens and closes at either's move.
    assert len({changed[0] % hold for changed in moves.values()}) > 1
    # Within a period the pool pays a quote's exact amount whatever the slot; the mid walks on.
    start = moves[(USDC, 0)][0]
    q = model.quote("x", SOL, USDC, 10**9, False, BASE_SLOT + start, pool=0)
    later = model.quote("x", SOL, USDC, 10**9, False, BASE_SLOT + start + hold - 1, pool=0)
    assert q is not None and later is not None and later.out_amount == q.out_amount
    assert model.mid_usd(SOL, BASE_SLOT + start) != model.mid_usd(SOL, BASE_SLOT + start + hold - 1)


def _round_trips_that_still_pay(model: PriceModel, delay: int) -> tuple[int, int]:
    """(round trips worth 20 000 lamports found at a slot, those whose pools still pay it ``delay`` slots on)."""
    found = paid = 0
    for slot in range(BASE_SLOT, BASE_SLOT + 300):
        for other in (USDC, JUP):
            buy = model.quote("jupiter", SOL, other, 10**9, False, slot)
            assert buy is not None
            sell = model.quote("jupiter", other, SOL, buy.out_amount, False, slot)
            if sell is None or sell.out_amount < 10**9 + 20_000:
                continue
            found += 1
            buy_then = model.quote("jupiter", SOL, other, 10**9, False, slot + delay, pool=buy.pool)
            sell_then = model.quote("jupiter", other, SOL, buy.out_amount, False, slot + delay, pool=sell.pool)
            assert buy_then is not None and sell_then is not None
            paid += buy_then.out_amount >= buy.out_amount and sell_then.out_amount >= 10**9 + 20_000
    return found, paid


def test_held_gaps_mostly_outlive_the_slots_a_bundle_waits() -> None:
    """What the strategy meets: a round trip found now, executed two slots later (land_delay_slots)."""
    found, paid = _round_trips_that_still_pay(PriceModel(0, BASE_SLOT, hold_slots=6), 2)
    assert found > 30 and 0.35 <= paid / found <= 0.8, (found, paid)  # often, not always
    found, paid = _round_trips_that_still_pay(PriceModel(0, BASE_SLOT, hold_slots=1), 2)
    assert found > 30 and paid / found < 0.15, (found, paid)  # a fresh price every slot: mostly gone


def test_hold_slots_out_of_range_is_refused() -> None:
    for bad in (0, MAX_HOLD_SLOTS + 1):
        with pytest.raises(ValueError, match="hold_slots"):
            PriceModel(0, BASE_SLOT, hold_slots=bad)
