"""Round-trip pieces, pure: trade sizes, batch plans, profit arithmetic."""

from __future__ import annotations

import random

from galileo.config.sections import BaseMintConfig, BlindStrategyConfig, IntermediumConfig, LaneConfig
from galileo.strategy.plan import batches, lane_sizes, plan_pairs
from galileo.strategy.profit import SOL_MINT, Costs, PriceBook, evaluate

USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"


def lane(lo: int, hi: int, n: int, strategy: str = "linear") -> LaneConfig:
    return LaneConfig(min=lo, max=hi, count=n, strategy=strategy)  # type: ignore[arg-type]


def test_linear_sizes() -> None:
    assert lane_sizes(lane(100, 500, 5), random.Random(0)) == [100, 200, 300, 400, 500]


def test_exponential_sizes_are_denser_at_the_small_end() -> None:
    sizes = lane_sizes(lane(1_000, 1_000_000, 4, "exponential"), random.Random(0))
    assert sizes == [1_000, 10_000, 100_000, 1_000_000]


def test_random_sizes_are_distinct_in_range_and_seeded() -> None:
    a = lane_sizes(lane(10, 1000, 7, "random"), random.Random(42))
    assert a == lane_sizes(lane(10, 1000, 7, "random"), random.Random(42))
    assert len(a) == 7 and all(10 <= x <= 1000 for x in a) and a == sorted(a)


def test_degenerate_lanes() -> None:
    assert lane_sizes(lane(5, 5, 3), random.Random(0)) == [5]
    assert lane_sizes(lane(5, 9, 1), random.Random(0)) == [9]
    assert lane_sizes(lane(1, 3, 5, "random"), random.Random(0)) == [1, 2, 3]  # too few integers: linear


def test_pairs_are_base_x_intermediate_x_size_deduplicated() -> None:
    strategy = BlindStrategyConfig(
        enable=True,
        base_mints=[
            BaseMintConfig(
                mint=SOL_MINT,
                trade_size_range=(100, 300),
                trade_range_count=3,
                lanes=[lane(300, 500, 2)],
                min_quote_profit=7,
            ),
            BaseMintConfig(mint=USDC, trade_size_range=(10, 10), min_quote_profit=9),
        ],
    )
    inter = IntermediumConfig(mints=[SOL_MINT, USDC, JUP], disable_mints=[JUP])
    pairs = plan_pairs(strategy, inter)
    assert [(p.base_mint, p.intermediate_mint, p.trade_size) for p in pairs] == [
        (SOL_MINT, USDC, 100),
        (SOL_MINT, USDC, 200),
        (SOL_MINT, USDC, 300),
        (SOL_MINT, USDC, 500),
        (USDC, SOL_MINT, 10),
    ]
    assert {p.base_mint: p.min_profit for p in pairs} == {SOL_MINT: 7, USDC: 9}  # per mint, not the minimum


def test_batches_rotate_and_ids_never_repeat() -> None:
    strategy = BlindStrategyConfig(
        enable=True, base_mints=[BaseMintConfig(mint=SOL_MINT, trade_size_range=(1, 3), trade_range_count=3)]
    )
    pairs = plan_pairs(strategy, IntermediumConfig(mints=[USDC]))
    first = [next(it) for it in [batches(pairs)] for _ in range(6)]
    assert [b.batch_id for b in first] == [1, 2, 3, 4, 5, 6]
    assert [b.trade_size for b in first] == [1, 2, 3, 2, 3, 1]  # each round starts one pair further on


def test_profit_arithmetic_sol_base() -> None:
    v = evaluate(
        size=1_000_000_000, sell_out=1_000_050_000, costs_in_base=Costs(tip=10_000).lamports, min_profit=20_000
    )
    assert (v.gross, v.costs, v.profit, v.profitable) == (50_000, 15_000, 35_000, True)
    # Judged on thresholds: the sell is held to size + costs + min profit, with what slippage that leaves.
    assert v.needed == 1_000_035_000 and v.slippage_bps == 0  # 0.15 bps of room: under one basis point
    assert v.floor == 35_000  # at 0 bps the minimum out is the quote itself
    roomy = evaluate(1_000_000_000, 1_001_000_000, 15_000, 20_000)
    assert roomy.slippage_bps == 9 and roomy.floor >= 20_000  # the chain guarantees the min profit
    assert not evaluate(1_000, 1_010, 15, 0).profitable  # costs exceed the gross
    assert evaluate(1_000, 1_016, 15, 0).floor == 1  # min profit 0 still means a gain: at least 1
    assert not evaluate(1_000, 1_015, 15, 0).profitable


def test_profit_per_mint_threshold_applies() -> None:
    assert not evaluate(100, 200, 10, min_profit=95).profitable
    assert evaluate(100, 200, 10, min_profit=90).profitable


def test_costs_in_usdc_from_observed_quotes() -> None:
    book = PriceBook()
    assert book.to_base(SOL_MINT, 15_000) == 15_000
    assert book.to_base(USDC, 15_000) is None
    book.observe(SOL_MINT, 1_000_000_000, USDC, 150_000_000)  # 1 SOL = 150 USDC
    assert book.to_base(USDC, 15_000) == 2_250  # 0.000015 SOL = 0.00225 USDC, raw 6 decimals
    book.observe(USDC, 300_000_000, SOL_MINT, 1_000_000_000)  # now 1 SOL = 300 USDC
    assert book.to_base(USDC, 1) == 1  # rounded up: costs are never understated
    assert book.to_base(USDC, 10_000) == 3_000
