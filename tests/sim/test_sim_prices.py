"""The price model: deterministic under a seed, different per service, profitable now and then."""

from __future__ import annotations

import itertools

from galileo.sim.ledger import BASE_SLOT
from galileo.sim.prices import MINTS, PriceModel
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
