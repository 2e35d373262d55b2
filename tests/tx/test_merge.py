"""Merging legs by effect: one budget, ATA creates once, one wrap, WSOL closed once at the end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.solana import AccountMeta, Instruction
from galileo.tx import budget
from galileo.tx.errors import NeedsOtherSigner
from galileo.tx.merge import SwapLeg, leg_accounts, merge_legs
from galileo.tx.programs import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    COMPUTE_BUDGET_PROGRAM_ID,
    SYSTEM_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    WSOL_MINT,
)
from galileo.tx.tip import JITO_TIP_ACCOUNTS, system_transfer, tip_instruction
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
USDC = ata(OWNER, USDC_MINT)


def limits(ixs: tuple[Instruction, ...]) -> list[int]:
    return [budget.decode_compute_unit_limit(ix.data) for ix in ixs if budget.is_compute_unit_limit(ix)]


def prices(ixs: tuple[Instruction, ...]) -> list[int]:
    return [budget.decode_compute_unit_price(ix.data) for ix in ixs if budget.is_compute_unit_price(ix)]


def closes(ixs: Sequence[Instruction]) -> list[str]:
    return [ix.accounts[0].pubkey for ix in ixs if ix.program_id == TOKEN_PROGRAM_ID and ix.data == b"\x09"]


def titan_buy(lamports: int = 1_000_000_000) -> SwapLeg:
    """SOL→USDC as a Titan route streams it: wrap, swap and its own WSOL close in one list."""
    route = Instruction(key("titan"), (AccountMeta(OWNER, True, False), w(WSOL), w(USDC), w(key("pool"))), b"t")
    return SwapLeg(
        swap=(
            create_ata_idempotent(OWNER, OWNER, WSOL_MINT),
            system_transfer(OWNER, WSOL, lamports),
            sync_native(WSOL),
            create_ata_idempotent(OWNER, OWNER, USDC_MINT),
            route,
            close_account(WSOL, OWNER),
        ),
        compute_unit_limit=180_000,
        input_mint=WSOL_MINT,
        output_mint=USDC_MINT,
        label="titan",
    )


def test_one_jupiter_leg_gets_a_fresh_budget_creates_first_then_its_wrap() -> None:
    leg = jupiter_leg(OWNER)
    create_wsol, transfer, sync, create_usdc = leg.setup
    merged = merge_legs([leg], cu_price_micro_lamports=10_000)
    assert merged.instructions == (
        budget.compute_unit_limit_instruction(300_000),  # the leg's computeUnitLimit, not its 1.4M ix
        budget.compute_unit_price_instruction(10_000),
        create_wsol,
        create_usdc,
        transfer,
        sync,
        *leg.swap,
        *leg.cleanup,
    )
    assert merged.alts == leg.alts
    assert merged.priority_fee_lamports == 3_000


def test_jupiter_buy_and_dflow_sell() -> None:
    jup, dflow = jupiter_leg(OWNER), dflow_leg(OWNER)
    tip = tip_instruction(OWNER, JITO_TIP_ACCOUNTS[0], 2_444)
    ixs = merge_legs([jup, dflow], tail=[tip]).instructions
    # One limit (300k from Jupiter's field + 200k from DFlow's instruction), no price: Jito.
    assert ixs[0] == budget.compute_unit_limit_instruction(500_000)
    assert limits(ixs) == [500_000] and prices(ixs) == []
    # Both legs create the WSOL ATA: created once; then the one wrap; swaps in leg order.
    assert ixs[1:5] == (
        create_ata_idempotent(OWNER, OWNER, WSOL_MINT),
        create_ata_idempotent(OWNER, OWNER, USDC_MINT),
        jup.setup[1],
        sync_native(WSOL),
    )
    assert ixs[5:7] == (*jup.swap, *dflow.swap)
    assert ixs[7:] == (close_account(WSOL, OWNER), tip)  # the WSOL close once, last before the tip


def test_a_titan_route_that_closes_wsol_itself_has_its_close_moved_after_the_sell() -> None:
    buy, sell = titan_buy(), dflow_leg(OWNER)
    ixs = merge_legs([buy, sell]).instructions
    route = buy.swap[4]
    assert ixs.index(route) < ixs.index(sell.swap[0]) < ixs.index(close_account(WSOL, OWNER))
    assert closes(ixs) == [WSOL] and ixs[-1] == close_account(WSOL, OWNER)


def test_a_sell_of_the_wsol_the_buy_bought_wraps_nothing() -> None:
    # Base USDC, intermediate SOL: the buy pays WSOL into the account, the sell spends it.
    buy = SwapLeg(
        setup=(create_ata_idempotent(OWNER, OWNER, WSOL_MINT),),
        swap=(Instruction(key("buy"), (w(USDC), w(WSOL)), b"b"),),
        cleanup=(close_account(WSOL, OWNER),),
        input_mint=USDC_MINT,
        output_mint=WSOL_MINT,
    )
    sell = jupiter_leg(OWNER, lamports=7_000)  # SOL→USDC with its own wrap of 7 000 lamports
    sell = SwapLeg(**{**{f: getattr(sell, f) for f in sell.__struct_fields__}, "input_mint": WSOL_MINT})
    ixs = merge_legs([buy, sell]).instructions
    assert not any(ix.program_id == SYSTEM_PROGRAM_ID for ix in ixs)  # no second wrap
    assert not any(ix.data == b"\x11" and ix.program_id == TOKEN_PROGRAM_ID for ix in ixs)
    assert closes(ixs) == [WSOL] and ixs[-1] == close_account(WSOL, OWNER)
    # Without the mints it cannot know: the wrap stays (the close then returns the extra SOL).
    unknown = SwapLeg(**{**{f: getattr(sell, f) for f in sell.__struct_fields__}, "input_mint": ""})
    assert system_transfer(OWNER, WSOL, 7_000) in merge_legs([buy, unknown]).instructions


def test_two_wraps_into_one_account_are_one_transfer_of_the_sum_and_one_sync() -> None:
    a, b = jupiter_leg(OWNER, lamports=1_000, tag="a"), jupiter_leg(OWNER, lamports=2_000, tag="b")
    ixs = merge_legs([a, b]).instructions
    assert [ix for ix in ixs if ix.program_id == SYSTEM_PROGRAM_ID] == [system_transfer(OWNER, WSOL, 3_000)]
    assert Counter(ixs)[sync_native(WSOL)] == 1
    assert ixs.index(system_transfer(OWNER, WSOL, 3_000)) < ixs.index(sync_native(WSOL)) < ixs.index(a.swap[0])
    assert [ix for ix in ixs if ix in (a.swap[0], b.swap[0])] == [a.swap[0], b.swap[0]]


def test_ata_creates_once_per_account_whoever_pays_and_always_idempotent() -> None:
    mine = create_ata_idempotent(OWNER, OWNER, USDC_MINT)
    sponsored = create_ata_idempotent(key("sponsor"), OWNER, USDC_MINT)
    plain = Instruction(ASSOCIATED_TOKEN_PROGRAM_ID, create_ata_idempotent(OWNER, OWNER, key("mint")).accounts, b"")
    swap = (Instruction(key("prog"), (), b"s"),)
    merged = merge_legs([SwapLeg(setup=(mine,), swap=swap), SwapLeg(setup=(sponsored, plain), swap=swap)])
    creates = [ix for ix in merged.instructions if ix.program_id == ASSOCIATED_TOKEN_PROGRAM_ID]
    assert creates == [mine, Instruction(ASSOCIATED_TOKEN_PROGRAM_ID, plain.accounts, b"\x01")]


def test_a_close_of_an_account_the_other_leg_uses_is_removed_and_one_of_its_own_stays() -> None:
    own = key("temporary")
    memo = Instruction(key("memo"), (r(OWNER),), b"bye")
    buy = SwapLeg(
        swap=(Instruction(key("p1"), (w(USDC), w(own)), b"1"),),
        cleanup=(close_account(USDC, OWNER), close_account(own, OWNER), memo),
    )
    sell = SwapLeg(swap=(Instruction(key("p2"), (w(USDC),), b"2"),))
    ixs = merge_legs([buy, sell]).instructions
    assert closes(ixs) == [own]  # USDC: the sell pays into it; the temporary account is the buy's own
    assert ixs[1:] == (buy.swap[0], close_account(own, OWNER), memo, sell.swap[0])


def test_wsol_close_of_a_non_ata_account_recognised_by_its_sync() -> None:
    temp = key("temporary-wsol")
    leg = SwapLeg(
        setup=(system_transfer(OWNER, temp, 5), sync_native(temp)),
        swap=(Instruction(key("p"), (w(temp),), b"s"),),
        cleanup=(close_account(temp, OWNER), Instruction(key("memo"), (), b"after")),
    )
    ixs = merge_legs([leg]).instructions
    assert ixs[-1] == close_account(temp, OWNER) and ixs[1:3] == (system_transfer(OWNER, temp, 5), sync_native(temp))


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


def test_limit_measured_or_from_the_legs_and_capped() -> None:
    legs = [jupiter_leg(OWNER), dflow_leg(OWNER)]
    assert merge_legs(legs, cu_limit=233_082).compute_unit_limit == 233_082  # measured: taken as it is
    assert merge_legs(legs, cu_limit_multiplier=1.1).compute_unit_limit == 550_000  # exactly (500000 x 1.1)
    bare = SwapLeg(swap=(Instruction(key("prog"), (w(key("a")),), b"x"),))
    assert merge_legs([bare, bare, bare]).compute_unit_limit == 600_000  # 200k a leg that says nothing
    assert merge_legs([bare], cu_limit=5_000_000).compute_unit_limit == 1_400_000


def test_a_leg_that_needs_another_signer_is_refused_by_name() -> None:
    maker = key("rfq-maker")
    rfq = SwapLeg(
        swap=(Instruction(key("rfq"), (AccountMeta(OWNER, True, True), AccountMeta(maker, True, False)), b"f"),),
        label="ultra",
    )
    with pytest.raises(NeedsOtherSigner, match=f"ultra needs {maker} to sign too"):
        merge_legs([jupiter_leg(OWNER), rfq], payer=OWNER)
    assert merge_legs([jupiter_leg(OWNER)], payer=OWNER).instructions  # our own signature only: fine


def test_alt_addresses_concatenated_and_deduplicated_in_order() -> None:
    swap = (Instruction(key("p"), (), b""),)
    legs = [SwapLeg(swap=swap, alts=("A", "B", "A")), SwapLeg(swap=swap, alts=("C", "B")), SwapLeg(swap=swap)]
    assert merge_legs(legs).alts == ("A", "B", "C")


def test_leg_accounts_counts_distinct_keys_and_programs() -> None:
    assert leg_accounts(jupiter_leg(OWNER, pools=3)) == 13  # 3 pools, owner, 2 ATAs, 2 mints, a sysvar, 4 programs


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
    with pytest.raises(ValueError, match="cu_limit"):
        merge_legs([leg], cu_limit=-1)
    with pytest.raises(ValueError, match="leg 1: compute_unit_limit"):
        merge_legs([leg, SwapLeg(compute_unit_limit=-5)])
    broken = SwapLeg(compute_budget=(Instruction(COMPUTE_BUDGET_PROGRAM_ID, (), b"\x02\x01"),))
    with pytest.raises(ValueError, match="leg 0: not SetComputeUnitLimit"):
        merge_legs([broken])


# Property: a pool of realistic instructions, including every compute budget kind, shuffled into legs.
OTHERS = [Instruction(key(f"program-{i % 3}"), (w(key(f"acct-{i}")),), bytes([i])) for i in range(8)]
POOL = [
    budget.compute_unit_limit_instruction(150_000),
    budget.compute_unit_limit_instruction(1_400_000),
    budget.compute_unit_price_instruction(1_000),
    Instruction(COMPUTE_BUDGET_PROGRAM_ID, (), budget.encode_request_heap_frame(256 * 1024)),
    Instruction(COMPUTE_BUDGET_PROGRAM_ID, (), b"\x04\x00\x00\x01\x00"),
    create_ata_idempotent(OWNER, OWNER, WSOL_MINT),
    create_ata_idempotent(OWNER, OWNER, USDC_MINT),
    create_ata_idempotent(key("sponsor"), OWNER, USDC_MINT),
    system_transfer(OWNER, WSOL, 1_000),
    system_transfer(OWNER, WSOL, 2_000),
    sync_native(WSOL),
    close_account(WSOL, OWNER),
    close_account(USDC, OWNER),
    tip_instruction(OWNER, JITO_TIP_ACCOUNTS[1], 1_000),
    Instruction(key("swap"), (w(USDC), w(WSOL)), b"uses both"),
    *OTHERS,
]
IXS = st.lists(st.sampled_from(POOL), max_size=6).map(tuple)
MINTS = st.sampled_from(["", WSOL_MINT, USDC_MINT])
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
        input_mint=MINTS,
        output_mint=MINTS,
    ),
    min_size=1,
    max_size=4,
)


def is_effect(ix: Instruction) -> bool:
    """Instructions the merge rewrites by what they do (the rest it must keep as they are)."""
    wrap = ix.program_id == SYSTEM_PROGRAM_ID and ix.accounts[1].pubkey == WSOL
    token = ix.program_id == TOKEN_PROGRAM_ID and ix.data in (b"\x09", b"\x11")
    return budget.is_compute_budget(ix) or ix.program_id == ASSOCIATED_TOKEN_PROGRAM_ID or wrap or token


@settings(max_examples=300, deadline=None)
@given(LEGS, st.sampled_from([0, 1, 455_690]))
def test_merge_keeps_every_swap_in_order_and_each_effect_once(legs: list[SwapLeg], price: int) -> None:
    merged = merge_legs(legs, cu_price_micro_lamports=price)
    ixs = merged.instructions
    assert merge_legs(legs, cu_price_micro_lamports=price) == merged

    kinds = Counter(ix.data[:1] for ix in ixs if budget.is_compute_budget(ix))
    assert kinds[b"\x02"] == 1 and kinds[b"\x03"] == (1 if price else 0)
    assert all(count == 1 for count in kinds.values()) and kinds[b"\x04"] == 0
    assert ixs[0] == budget.compute_unit_limit_instruction(merged.compute_unit_limit)

    # Every instruction the merge does not rewrite, in leg order, none dropped or deduplicated ...
    kept = [ix for leg in legs for ix in leg.instructions() if not is_effect(ix)]
    assert [ix for ix in ixs if not is_effect(ix)] == kept
    # ... each ATA created once, idempotently; at most one wrap and one SyncNative, before any of it ...
    creates = [ix for ix in ixs if ix.program_id == ASSOCIATED_TOKEN_PROGRAM_ID]
    assert len({c.accounts[1].pubkey for c in creates}) == len(creates) and {c.data for c in creates} <= {b"\x01"}
    wraps = [i for i, ix in enumerate(ixs) if ix.program_id == SYSTEM_PROGRAM_ID and ix.accounts[1].pubkey == WSOL]
    syncs = [i for i, ix in enumerate(ixs) if ix == sync_native(WSOL)]
    assert len(wraps) <= 1 and len(syncs) == len(wraps)
    if wraps:
        first = min((ixs.index(ix) for ix in kept), default=len(ixs))
        assert wraps[0] < syncs[0] < first
    # ... and the WSOL account closed at most once, after everything else.
    if close_account(WSOL, OWNER) in ixs:
        assert closes(ixs).count(WSOL) == 1 and ixs[-1] == close_account(WSOL, OWNER)
    # The USDC account is never closed while another leg uses it.
    users = [i for i, leg in enumerate(legs) if any(a.pubkey == USDC for ix in leg.instructions() for a in ix.accounts)]
    if len(users) > 1:
        assert USDC not in closes(ixs)
    assert merged.alts == tuple(dict.fromkeys(a for leg in legs for a in leg.alts))
