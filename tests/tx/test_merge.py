"""Merging legs: one compute budget, deduplicated setup, swaps in order, WSOL close last."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.solana import Instruction
from galileo.tx import budget
from galileo.tx.merge import SwapLeg, merge_legs
from galileo.tx.programs import ASSOCIATED_TOKEN_PROGRAM_ID, COMPUTE_BUDGET_PROGRAM_ID, WSOL_MINT
from galileo.tx.tip import JITO_TIP_ACCOUNTS, tip_instruction
from tests.tx.shapes import (
    USDC_MINT,
    ata,
    close_account,
    create_ata_idempotent,
    dflow_leg,
    jupiter_leg,
    key,
    r,
    sync_native,
    w,
)

OWNER = key("owner")
WSOL = ata(OWNER, WSOL_MINT)


def limits(ixs: tuple[Instruction, ...]) -> list[int]:
    return [budget.decode_compute_unit_limit(ix.data) for ix in ixs if budget.is_compute_unit_limit(ix)]


def prices(ixs: tuple[Instruction, ...]) -> list[int]:
    return [budget.decode_compute_unit_price(ix.data) for ix in ixs if budget.is_compute_unit_price(ix)]


def test_one_jupiter_leg_keeps_its_order_and_gets_a_fresh_budget() -> None:
    leg = jupiter_leg(OWNER)
    merged = merge_legs([leg], cu_price_micro_lamports=10_000)
    assert merged.instructions == (
        budget.compute_unit_limit_instruction(300_000),  # the leg's computeUnitLimit, not its 1.4M ix
        budget.compute_unit_price_instruction(10_000),
        *leg.setup,
        *leg.swap,
        *leg.cleanup,
    )
    assert merged.alts == leg.alts
    assert merged.compute_unit_limit == 300_000
    assert merged.priority_fee_lamports == 3_000


def test_jupiter_and_dflow_legs() -> None:
    jup, dflow = jupiter_leg(OWNER), dflow_leg(OWNER)
    tip = tip_instruction(OWNER, JITO_TIP_ACCOUNTS[0], 2_444)
    merged = merge_legs([jup, dflow], tail=[tip])
    ixs = merged.instructions

    # One limit (300k from Jupiter's field + 200k from DFlow's instruction), no price: Jito.
    assert ixs[0] == budget.compute_unit_limit_instruction(500_000)
    assert limits(ixs) == [500_000] and prices(ixs) == []
    assert sum(budget.is_compute_budget(ix) for ix in ixs) == 1

    # Setup: both legs create the WSOL ATA; it is created once, before the wrap.
    creates = [ix for ix in ixs if ix.program_id == ASSOCIATED_TOKEN_PROGRAM_ID]
    assert creates == [
        create_ata_idempotent(OWNER, OWNER, WSOL_MINT),
        create_ata_idempotent(OWNER, OWNER, USDC_MINT),
    ]
    assert ixs[1:5] == jup.setup

    # Swaps in leg order, right after setup; the WSOL close once, last before the tip.
    assert ixs[5:7] == (*jup.swap, *dflow.swap)
    assert ixs[7:] == (close_account(WSOL, OWNER), tip)
    assert merged.alts == (key("alt-jupiter"), key("alt-dflow"))


def test_price_and_multiplier() -> None:
    merged = merge_legs([jupiter_leg(OWNER), dflow_leg(OWNER)], cu_price_micro_lamports=7, cu_limit_multiplier=1.1)
    assert limits(merged.instructions) == [550_000]  # exactly, no float fuzz (500000 * 1.1)
    assert prices(merged.instructions) == [7]
    merged = merge_legs([jupiter_leg(OWNER)], cu_limit_multiplier=0.92)
    assert merged.compute_unit_limit == 276_000


def test_limit_defaults_and_cap() -> None:
    bare = SwapLeg(swap=(Instruction(key("prog"), (w(key("a")),), b"x"),))
    assert merge_legs([bare]).compute_unit_limit == 200_000
    assert merge_legs([bare, bare, bare]).compute_unit_limit == 600_000
    big = SwapLeg(swap=bare.swap, compute_unit_limit=1_000_000)
    assert merge_legs([big, big]).compute_unit_limit == 1_400_000
    assert merge_legs([big], cu_limit_multiplier=2).compute_unit_limit == 1_400_000


def test_two_wraps_of_different_amounts_are_both_kept_and_synced_after_both() -> None:
    a, b = jupiter_leg(OWNER, lamports=1_000, tag="a"), jupiter_leg(OWNER, lamports=2_000, tag="b")
    setup = merge_legs([a, b]).instructions[1:]
    transfers = [ix for ix in setup if ix in (a.setup[1], b.setup[1])]
    assert transfers == [a.setup[1], b.setup[1]]
    syncs = [i for i, ix in enumerate(setup) if ix == sync_native(WSOL)]
    assert len(syncs) == 1
    assert syncs[0] > setup.index(b.setup[1])  # after the second transfer
    assert setup.index(a.swap[0]) > syncs[0]


def test_byte_identical_wraps_are_not_duplicated() -> None:
    leg = jupiter_leg(OWNER, lamports=1_000)
    merged = merge_legs([leg, leg])
    assert Counter(merged.instructions)[leg.setup[1]] == 1
    assert [ix for ix in merged.instructions if ix in leg.swap] == [*leg.swap, *leg.swap]


def test_ata_create_dedupes_by_owner_and_mint_even_with_another_payer() -> None:
    mine = create_ata_idempotent(OWNER, OWNER, USDC_MINT)
    sponsored = create_ata_idempotent(key("sponsor"), OWNER, USDC_MINT)
    other_mint = create_ata_idempotent(OWNER, OWNER, key("mint"))
    swap = (Instruction(key("prog"), (), b"s"),)
    merged = merge_legs([SwapLeg(setup=(mine,), swap=swap), SwapLeg(setup=(sponsored, other_mint), swap=swap)])
    assert [ix for ix in merged.instructions if ix.program_id == ASSOCIATED_TOKEN_PROGRAM_ID] == [
        mine,
        other_mint,
    ]


def test_cleanup_order_non_wsol_closes_in_place_wsol_last() -> None:
    usdc = ata(OWNER, USDC_MINT)
    other = Instruction(key("memo"), (r(OWNER),), b"bye")
    leg1 = SwapLeg(swap=(Instruction(key("p1"), (), b"1"),), cleanup=(close_account(WSOL, OWNER), other))
    leg2 = SwapLeg(
        swap=(Instruction(key("p2"), (), b"2"),),
        cleanup=(close_account(usdc, OWNER), other, close_account(WSOL, OWNER)),
    )
    cleanup = merge_legs([leg1, leg2]).instructions[3:]
    assert cleanup == (other, close_account(usdc, OWNER), close_account(WSOL, OWNER))


def test_wsol_close_of_a_non_ata_account_recognised_from_the_setup() -> None:
    temp = key("temporary-wsol")
    leg = SwapLeg(
        setup=(sync_native(temp),),
        swap=(Instruction(key("p"), (), b"s"),),
        cleanup=(close_account(temp, OWNER), Instruction(key("memo"), (), b"after")),
    )
    assert merge_legs([leg]).instructions[-1] == close_account(temp, OWNER)


def test_compute_budget_anywhere_in_a_leg_is_replaced() -> None:
    stray = budget.compute_unit_price_instruction(99)
    heap = Instruction(COMPUTE_BUDGET_PROGRAM_ID, (), budget.encode_request_heap_frame(64 * 1024))
    bigger = Instruction(COMPUTE_BUDGET_PROGRAM_ID, (), budget.encode_request_heap_frame(128 * 1024))
    leg1 = SwapLeg(compute_budget=(heap,), swap=(Instruction(key("p"), (), b"1"),), other=(stray,))
    leg2 = SwapLeg(compute_budget=(bigger,), setup=(stray,), swap=(Instruction(key("p"), (), b"2"),))
    ixs = merge_legs([leg1, leg2], cu_price_micro_lamports=5).instructions
    assert ixs[:3] == (
        budget.compute_unit_limit_instruction(400_000),
        budget.compute_unit_price_instruction(5),
        bigger,
    )
    assert not any(budget.is_compute_budget(ix) for ix in ixs[3:])


def test_alt_addresses_concatenated_and_deduplicated_in_order() -> None:
    swap = (Instruction(key("p"), (), b""),)
    legs = [SwapLeg(swap=swap, alts=("A", "B", "A")), SwapLeg(swap=swap, alts=("C", "B")), SwapLeg(swap=swap)]
    assert merge_legs(legs).alts == ("A", "B", "C")


def test_bad_input() -> None:
    leg = jupiter_leg(OWNER)
    with pytest.raises(ValueError, match="at least one leg"):
        merge_legs([])
    for multiplier in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="multiplier"):
            merge_legs([leg], cu_limit_multiplier=multiplier)
    with pytest.raises(ValueError, match="tail"):
        merge_legs([leg], tail=[budget.compute_unit_price_instruction(1)])
    with pytest.raises(ValueError, match="compute unit price"):
        merge_legs([leg], cu_price_micro_lamports=-1)
    with pytest.raises(ValueError, match="leg 1: compute_unit_limit"):
        merge_legs([leg, SwapLeg(compute_unit_limit=-5)])
    broken = SwapLeg(compute_budget=(Instruction(COMPUTE_BUDGET_PROGRAM_ID, (), b"\x02\x01"),))
    with pytest.raises(ValueError, match="leg 0: not SetComputeUnitLimit"):
        merge_legs([broken])


# Property: a pool of realistic instructions, including every compute budget kind, shuffled into legs.
POOL = [
    budget.compute_unit_limit_instruction(150_000),
    budget.compute_unit_limit_instruction(1_400_000),
    budget.compute_unit_price_instruction(1_000),
    Instruction(COMPUTE_BUDGET_PROGRAM_ID, (), budget.encode_request_heap_frame(256 * 1024)),
    Instruction(COMPUTE_BUDGET_PROGRAM_ID, (), b"\x04\x00\x00\x01\x00"),
    create_ata_idempotent(OWNER, OWNER, WSOL_MINT),
    create_ata_idempotent(OWNER, OWNER, USDC_MINT),
    create_ata_idempotent(key("sponsor"), OWNER, USDC_MINT),
    sync_native(WSOL),
    close_account(WSOL, OWNER),
    close_account(ata(OWNER, USDC_MINT), OWNER),
    tip_instruction(OWNER, JITO_TIP_ACCOUNTS[1], 1_000),
    *(Instruction(key(f"program-{i % 3}"), (w(key(f"acct-{i}")),), bytes([i])) for i in range(8)),
]
IXS = st.lists(st.sampled_from(POOL), max_size=6).map(tuple)
LEGS = st.lists(
    st.builds(
        SwapLeg,
        compute_budget=IXS,
        setup=IXS,
        swap=IXS,
        other=IXS,
        cleanup=IXS,
        compute_unit_limit=st.none() | st.integers(0, 1_400_000),
        alts=st.lists(st.sampled_from(["A", "B", "C"]), max_size=3).map(tuple),
    ),
    min_size=1,
    max_size=4,
)


def owner_mints(ixs: Sequence[Instruction]) -> list[tuple[str, str]]:
    pairs = [
        (ix.accounts[2].pubkey, ix.accounts[3].pubkey) for ix in ixs if ix.program_id == ASSOCIATED_TOKEN_PROGRAM_ID
    ]
    return sorted(pairs)


@settings(max_examples=300, deadline=None)
@given(LEGS, st.sampled_from([0, 1, 455_690]), st.sampled_from([0.5, 0.92, 1.0, 1.2]))
def test_merge_never_loses_a_swap_nor_duplicates_compute_budget(
    legs: list[SwapLeg], price: int, multiplier: float
) -> None:
    merged = merge_legs(legs, cu_price_micro_lamports=price, cu_limit_multiplier=multiplier)
    ixs = merged.instructions
    assert merge_legs(legs, cu_price_micro_lamports=price, cu_limit_multiplier=multiplier) == merged

    kinds = Counter(ix.data[:1] for ix in ixs if budget.is_compute_budget(ix))
    assert kinds[b"\x02"] == 1 and kinds[b"\x03"] == (1 if price else 0)
    assert all(count == 1 for count in kinds.values())
    assert ixs[0] == budget.compute_unit_limit_instruction(merged.compute_unit_limit)
    assert merged.compute_unit_limit <= budget.MAX_COMPUTE_UNIT_LIMIT

    def kept(part: str) -> list[Instruction]:
        return [ix for leg in legs for ix in getattr(leg, part) if not budget.is_compute_budget(ix)]

    swaps, others, cleanup_in = kept("swap"), kept("other"), kept("cleanup")
    head = kinds.total()
    setup_len = len(ixs) - head - len(swaps) - len(others) - len(set(cleanup_in))
    setup_out = ixs[head : head + setup_len]
    rest = ixs[head + setup_len :]
    assert list(rest[: len(swaps)]) == swaps  # every swap, in leg order, none deduplicated
    assert list(rest[len(swaps) : len(swaps) + len(others)]) == others
    cleanup_out = rest[len(swaps) + len(others) :]

    setup_in = kept("setup")
    assert len(set(setup_out)) == len(setup_out) and set(setup_out) <= set(setup_in)
    assert {ix for ix in setup_in if ix.program_id != ASSOCIATED_TOKEN_PROGRAM_ID} <= set(setup_out)
    assert owner_mints(setup_out) == sorted(set(owner_mints(setup_in)))

    assert set(cleanup_out) == set(cleanup_in) and len(cleanup_out) == len(set(cleanup_in))
    if close_account(WSOL, OWNER) in cleanup_in:
        assert cleanup_out[-1] == close_account(WSOL, OWNER)
    assert merged.alts == tuple(dict.fromkeys(a for leg in legs for a in leg.alts))
