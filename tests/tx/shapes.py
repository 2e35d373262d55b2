"""Deterministic keys and upstream-shaped swap legs for the transaction tests.

Shapes follow external-apis.md §1.6 (Jupiter ``/swap-instructions``, SOL→USDC with a WSOL
wrap) and §3.5 (DFlow): same programs, same account roles, same instruction data layouts.
"""

from __future__ import annotations

import hashlib
import struct

from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address

from broker.solana import AccountMeta, Instruction
from galileo.tx import budget
from galileo.tx.merge import SwapLeg
from galileo.tx.programs import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    SYSTEM_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    WSOL_MINT,
)
from galileo.tx.tip import system_transfer

USDC_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
JUPITER_PROGRAM = "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"
DFLOW_PROGRAM = "DF1ow4tspfHX9JwWJsAb9epbkA8hmpSEAtxXy1V27QBH"
SYSVAR_INSTRUCTIONS = "Sysvar1nstructions1111111111111111111111111"


def key(name: str) -> str:
    """A stable base58 public key derived from ``name``."""
    return str(Pubkey(hashlib.sha256(name.encode()).digest()))


def ata(owner: str, mint: str) -> str:
    return str(get_associated_token_address(Pubkey.from_string(owner), Pubkey.from_string(mint)))


def w(pubkey: str) -> AccountMeta:
    return AccountMeta(pubkey, False, True)


def r(pubkey: str) -> AccountMeta:
    return AccountMeta(pubkey, False, False)


def create_ata_idempotent(payer: str, owner: str, mint: str) -> Instruction:
    accounts = (
        AccountMeta(payer, True, True),
        w(ata(owner, mint)),
        r(owner),
        r(mint),
        r(SYSTEM_PROGRAM_ID),
        r(TOKEN_PROGRAM_ID),
    )
    return Instruction(ASSOCIATED_TOKEN_PROGRAM_ID, accounts, b"\x01")


def sync_native(account: str) -> Instruction:
    return Instruction(TOKEN_PROGRAM_ID, (w(account),), b"\x11")


def close_account(account: str, owner: str) -> Instruction:
    return Instruction(TOKEN_PROGRAM_ID, (w(account), w(owner), AccountMeta(owner, True, False)), b"\x09")


def jupiter_leg(owner: str, lamports: int = 51_586_500, pools: int = 3, tag: str = "jup") -> SwapLeg:
    """SOL→USDC through Jupiter's ``route``: wrap SOL, swap, unwrap (the §1.6 capture)."""
    wsol = ata(owner, WSOL_MINT)
    route = bytes.fromhex("e517cb977ae3ad2a") + struct.pack("<QQHB", lamports, 10_000_000, 50, 0)
    swap = Instruction(
        JUPITER_PROGRAM,
        (
            r(TOKEN_PROGRAM_ID),
            AccountMeta(owner, True, False),
            w(wsol),
            w(ata(owner, USDC_MINT)),
            *(w(key(f"{tag}-pool-{i}")) for i in range(pools)),
            r(SYSVAR_INSTRUCTIONS),
        ),
        route,
    )
    return SwapLeg(
        compute_budget=(budget.compute_unit_limit_instruction(1_400_000),),
        setup=(
            create_ata_idempotent(owner, owner, WSOL_MINT),
            system_transfer(owner, wsol, lamports),
            sync_native(wsol),
            create_ata_idempotent(owner, owner, USDC_MINT),
        ),
        swap=(swap,),
        cleanup=(close_account(wsol, owner),),
        compute_unit_limit=300_000,
        alts=(key("alt-jupiter"),),
    )


def dflow_leg(owner: str, pools: int = 3, tag: str = "dflow") -> SwapLeg:
    """USDC→SOL through DFlow (the §3.5 shape): WSOL out, unwrapped by the cleanup."""
    wsol = ata(owner, WSOL_MINT)
    swap = Instruction(
        DFLOW_PROGRAM,
        (
            AccountMeta(owner, True, True),
            w(ata(owner, USDC_MINT)),
            w(wsol),
            *(w(key(f"{tag}-pool-{i}")) for i in range(pools)),
            r(TOKEN_PROGRAM_ID),
        ),
        b"\x07" + struct.pack("<QHH", 10_000_000, 50, 0),
    )
    return SwapLeg(
        compute_budget=(
            budget.compute_unit_limit_instruction(200_000),
            budget.compute_unit_price_instruction(455_690),
        ),
        setup=(create_ata_idempotent(owner, owner, WSOL_MINT),),
        swap=(swap,),
        cleanup=(close_account(wsol, owner),),
        compute_unit_limit=None,
        alts=(key("alt-jupiter"), key("alt-dflow")),
    )
