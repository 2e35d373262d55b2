"""Jito tips: the eight tip accounts, the minimum tip, and the System transfer that pays one.

Jito requires every bundle to pay a tip (a SOL transfer to one of these accounts) and the
tip account to be a static key of the message, never loaded through an address lookup
table; :func:`galileo.tx.build.build_transaction` enforces the latter.
"""

from __future__ import annotations

import random
import struct
from typing import Final

from broker.solana import AccountMeta, Instruction
from galileo.tx.programs import SYSTEM_PROGRAM_ID

__all__ = [
    "JITO_TIP_ACCOUNTS",
    "MIN_JITO_TIP_LAMPORTS",
    "SYSTEM_TRANSFER",
    "is_jito_tip",
    "random_tip_account",
    "system_transfer",
    "tip_instruction",
]

# getTipAccounts, identical to the original bot's hard-coded list (external-apis.md §6.2).
JITO_TIP_ACCOUNTS: Final[tuple[str, ...]] = (
    "96gYZGLnJYVFmbjzopPSU6QiEV5fGqZNyN9nmNhvrZU5",
    "HFqU5x63VTqvQss8hp11i4wVV8bD44PvwucfZ2bU7gRe",
    "Cw8CFyM9FkoMi7K7Crf6HNQqf4uEMzpKw6QNghXLvLkY",
    "ADaUMid9yfUytqMBgopwjb2DTLSokTSzL1zt6iGPaS49",
    "DfXygSm4jCyNCybVYYK6DwvWqjKee8pbDmJGcLWNDXjh",
    "ADuUkR4vqLUMWXxW9gh6D6L8pMSawimctcNZ5pGwDcEt",
    "DttWaMuVvTiduZRnguLF7jNxTgiMBZ1hyAumKUiL2KRL",
    "3AVi9Tg9Uo68tJfuvoKvqKNWKkC5wPdSSdeBnizKZ6jT",
)
_TIP_SET: Final = frozenset(JITO_TIP_ACCOUNTS)

MIN_JITO_TIP_LAMPORTS: Final = 1000

# System program instruction index of Transfer (u32 LE), followed by lamports (u64 LE).
SYSTEM_TRANSFER: Final = 2
_TRANSFER: Final = struct.Struct("<IQ")


def system_transfer(source: str, destination: str, lamports: int) -> Instruction:
    """System program Transfer of ``lamports`` from ``source`` (signer) to ``destination``."""
    if not 0 <= lamports <= 0xFFFF_FFFF_FFFF_FFFF:
        raise ValueError(f"lamports must be a u64, got {lamports}")
    accounts = (AccountMeta(source, True, True), AccountMeta(destination, False, True))
    return Instruction(SYSTEM_PROGRAM_ID, accounts, _TRANSFER.pack(SYSTEM_TRANSFER, lamports))


def tip_instruction(payer: str, tip_account: str, lamports: int) -> Instruction:
    """The Jito tip: a transfer of ``lamports`` from ``payer`` to one of the tip accounts.

    Raises ``ValueError`` when ``tip_account`` is not a Jito tip account or the tip is below
    :data:`MIN_JITO_TIP_LAMPORTS` (Jito drops such bundles).
    """
    if tip_account not in _TIP_SET:
        raise ValueError(f"{tip_account} is not a Jito tip account (see JITO_TIP_ACCOUNTS)")
    if lamports < MIN_JITO_TIP_LAMPORTS:
        raise ValueError(f"Jito tip must be at least {MIN_JITO_TIP_LAMPORTS} lamports, got {lamports}")
    return system_transfer(payer, tip_account, lamports)


def is_jito_tip(ix: Instruction) -> bool:
    """True when ``ix`` is a System transfer to a Jito tip account."""
    return (
        ix.program_id == SYSTEM_PROGRAM_ID
        and len(ix.data) == _TRANSFER.size
        and _TRANSFER.unpack(ix.data)[0] == SYSTEM_TRANSFER
        and len(ix.accounts) == 2
        and ix.accounts[1].pubkey in _TIP_SET
    )


def random_tip_account(rng: random.Random) -> str:
    """One tip account chosen uniformly with ``rng`` (spreads write locks across the eight)."""
    return rng.choice(JITO_TIP_ACCOUNTS)
