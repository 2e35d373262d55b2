"""Well-known Solana program ids and mints, as the base58 strings instructions carry.

Each value is checked against solders' own constants in the tests.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ASSOCIATED_TOKEN_PROGRAM_ID",
    "COMPUTE_BUDGET_PROGRAM_ID",
    "SYSTEM_PROGRAM_ID",
    "TOKEN_2022_PROGRAM_ID",
    "TOKEN_PROGRAMS",
    "TOKEN_PROGRAM_ID",
    "WSOL_MINT",
]

SYSTEM_PROGRAM_ID: Final = "11111111111111111111111111111111"
COMPUTE_BUDGET_PROGRAM_ID: Final = "ComputeBudget111111111111111111111111111111"
TOKEN_PROGRAM_ID: Final = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM_ID: Final = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
ASSOCIATED_TOKEN_PROGRAM_ID: Final = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
WSOL_MINT: Final = "So11111111111111111111111111111111111111112"

TOKEN_PROGRAMS: Final = frozenset({TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID})
