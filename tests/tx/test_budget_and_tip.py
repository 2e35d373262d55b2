"""Compute budget encoding, priority-fee arithmetic, program ids and Jito tips."""

from __future__ import annotations

import random

import pytest
import solders.compute_budget as solders_cb
import solders.system_program as solders_sp
import solders.token as solders_token
from hypothesis import given
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from broker.solana import Instruction
from galileo.tx import budget
from galileo.tx.programs import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    COMPUTE_BUDGET_PROGRAM_ID,
    SYSTEM_PROGRAM_ID,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    WSOL_MINT,
)
from galileo.tx.tip import (
    JITO_TIP_ACCOUNTS,
    MIN_JITO_TIP_LAMPORTS,
    is_jito_tip,
    random_tip_account,
    system_transfer,
    tip_instruction,
)
from tests.tx.shapes import ata, key

U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)


@given(U32)
def test_compute_unit_limit_round_trips(units: int) -> None:
    data = budget.encode_compute_unit_limit(units)
    assert data == bytes(solders_cb.set_compute_unit_limit(units).data)
    assert budget.decode_compute_unit_limit(data) == units
    ix = budget.compute_unit_limit_instruction(units)
    assert budget.is_compute_unit_limit(ix) and not budget.is_compute_unit_price(ix)


@given(U64)
def test_compute_unit_price_round_trips(micro_lamports: int) -> None:
    data = budget.encode_compute_unit_price(micro_lamports)
    assert data == bytes(solders_cb.set_compute_unit_price(micro_lamports).data)
    assert budget.decode_compute_unit_price(data) == micro_lamports
    ix = budget.compute_unit_price_instruction(micro_lamports)
    assert budget.is_compute_unit_price(ix) and budget.is_compute_budget(ix)


@given(U32)
def test_heap_frame_round_trips(size: int) -> None:
    data = budget.encode_request_heap_frame(size)
    assert data == bytes(solders_cb.request_heap_frame(size).data)
    assert budget.decode_request_heap_frame(data) == size


def test_real_capture_decodes() -> None:
    # "AsBcFQA=" and "AkANAwA=" from the Jupiter and DFlow captures (external-apis.md §1.6, §3.5).
    assert budget.decode_compute_unit_limit(bytes.fromhex("02c05c1500")) == 1_400_000
    assert budget.decode_compute_unit_limit(bytes.fromhex("02400d0300")) == 200_000


@pytest.mark.parametrize(
    "data", [b"", b"\x02", b"\x02\x00\x00\x00", b"\x02\x00\x00\x00\x00\x00", b"\x03\x00\x00\x00\x00"]
)
def test_decode_limit_rejects_other_data(data: bytes) -> None:
    with pytest.raises(ValueError, match="not SetComputeUnitLimit"):
        budget.decode_compute_unit_limit(data)


def test_decode_price_rejects_a_limit() -> None:
    with pytest.raises(ValueError, match="not SetComputeUnitPrice"):
        budget.decode_compute_unit_price(budget.encode_compute_unit_limit(5))


@pytest.mark.parametrize("units", [-1, 2**32])
def test_limit_out_of_range(units: int) -> None:
    with pytest.raises(ValueError, match="compute unit limit"):
        budget.encode_compute_unit_limit(units)


@pytest.mark.parametrize("price", [-1, 2**64])
def test_price_out_of_range(price: int) -> None:
    with pytest.raises(ValueError, match="compute unit price"):
        budget.encode_compute_unit_price(price)


def test_is_compute_budget_looks_at_the_program() -> None:
    other = Instruction(SYSTEM_PROGRAM_ID, (), budget.encode_compute_unit_limit(1))
    assert not budget.is_compute_budget(other)
    assert not budget.is_compute_unit_limit(other)


@pytest.mark.parametrize(
    ("limit", "price", "fee"),
    [
        (200_000, 5_000, 1_000),
        (1_400_000, 1, 2),  # 1.4 lamports rounds up
        (1_000_000, 1, 1),
        (999_999, 1, 1),
        (1, 1, 1),
        (0, 10**9, 0),
        (300_000, 0, 0),
        (1_400_000, 455_690, 637_966),
    ],
)
def test_priority_fee_examples(limit: int, price: int, fee: int) -> None:
    assert budget.priority_fee_lamports(limit, price) == fee


@given(U32, U64)
def test_priority_fee_is_the_exact_ceiling(limit: int, price: int) -> None:
    fee = budget.priority_fee_lamports(limit, price)
    assert fee * 1_000_000 >= limit * price > (fee - 1) * 1_000_000


def test_priority_fee_rejects_negatives() -> None:
    with pytest.raises(ValueError):
        budget.priority_fee_lamports(-1, 1)


def test_program_ids_match_solders() -> None:
    assert str(solders_cb.ID) == COMPUTE_BUDGET_PROGRAM_ID
    assert str(solders_sp.ID) == SYSTEM_PROGRAM_ID
    assert str(solders_token.ID) == TOKEN_PROGRAM_ID
    for program in (ASSOCIATED_TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID, WSOL_MINT):
        assert str(Pubkey.from_string(program)) == program
    # The WSOL ATA of the §1.6 capture's wallet, derived through the ATA program id.
    owner = "Cm7vjoV12JuVqCduW6rkGGcgN77NPkzqZr66pkVTzb5b"
    assert ata(owner, WSOL_MINT) == "FkHuP6FSfa8x1WY43U224RU7d9yLodB3XEeNAytX68ZB"
    derived, _ = Pubkey.find_program_address(
        [bytes(Pubkey.from_string(owner)), bytes(solders_token.ID), bytes(Pubkey.from_string(WSOL_MINT))],
        Pubkey.from_string(ASSOCIATED_TOKEN_PROGRAM_ID),
    )
    assert str(derived) == "FkHuP6FSfa8x1WY43U224RU7d9yLodB3XEeNAytX68ZB"


def test_the_eight_tip_accounts() -> None:
    assert len(set(JITO_TIP_ACCOUNTS)) == 8
    assert all(str(Pubkey.from_string(a)) == a for a in JITO_TIP_ACCOUNTS)
    assert MIN_JITO_TIP_LAMPORTS == 1000


def test_tip_is_a_system_transfer_solders_agrees_with() -> None:
    payer, tip = key("payer"), JITO_TIP_ACCOUNTS[3]
    ix = tip_instruction(payer, tip, 2_444)
    expected = solders_sp.transfer(
        solders_sp.TransferParams(
            from_pubkey=Pubkey.from_string(payer), to_pubkey=Pubkey.from_string(tip), lamports=2_444
        )
    )
    assert ix.program_id == str(expected.program_id)
    assert ix.data == bytes(expected.data) == bytes.fromhex("02000000") + (2_444).to_bytes(8, "little")
    got = [(a.pubkey, a.is_signer, a.is_writable) for a in ix.accounts]
    assert got == [(str(m.pubkey), m.is_signer, m.is_writable) for m in expected.accounts]
    assert got == [(payer, True, True), (tip, False, True)]
    decoded = solders_sp.decode_transfer(expected)
    assert decoded["lamports"] == 2_444
    assert is_jito_tip(ix)


def test_tip_rules() -> None:
    with pytest.raises(ValueError, match="at least 1000"):
        tip_instruction(key("payer"), JITO_TIP_ACCOUNTS[0], 999)
    with pytest.raises(ValueError, match="not a Jito tip account"):
        tip_instruction(key("payer"), key("somebody"), 5_000)
    assert tip_instruction(key("payer"), JITO_TIP_ACCOUNTS[0], MIN_JITO_TIP_LAMPORTS)
    with pytest.raises(ValueError, match="u64"):
        system_transfer(key("a"), key("b"), 2**64)


def test_is_jito_tip_only_for_transfers_to_tip_accounts() -> None:
    assert not is_jito_tip(system_transfer(key("a"), key("b"), 5_000))
    assert not is_jito_tip(budget.compute_unit_limit_instruction(1))
    allocate = Instruction(SYSTEM_PROGRAM_ID, tip_instruction(key("a"), JITO_TIP_ACCOUNTS[0], 1000).accounts, b"")
    assert not is_jito_tip(allocate)


def test_random_tip_account_is_seeded_and_uniform_over_the_eight() -> None:
    draws = [random_tip_account(random.Random(7)) for _ in range(3)]
    assert len(set(draws)) == 1  # same seed, same account
    rng = random.Random(1)
    seen = [random_tip_account(rng) for _ in range(400)]
    assert set(seen) == set(JITO_TIP_ACCOUNTS)
