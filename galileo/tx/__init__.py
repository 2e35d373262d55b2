"""Transaction assembly: wallets, compute budget, Jito tips, leg merging, v0 compile and sign.

Flow: workers decode upstream swap instructions into :class:`broker.solana.Instruction`;
the coordinator wraps each upstream answer in a :class:`SwapLeg`, merges the legs
(:func:`merge_legs`), appends the tip (:func:`tip_instruction`), resolves the lookup tables
(:class:`AltCache`, :func:`alt_from_account_data`) and signs (:func:`build_transaction`).
"""

from __future__ import annotations

from galileo.tx.alt import AltCache, alt_from_account_data
from galileo.tx.budget import (
    DEFAULT_COMPUTE_UNIT_LIMIT,
    MAX_COMPUTE_UNIT_LIMIT,
    compute_unit_limit_instruction,
    compute_unit_price_instruction,
    is_compute_budget,
    priority_fee_lamports,
)
from galileo.tx.build import PACKET_DATA_SIZE, BuiltTransaction, build_transaction
from galileo.tx.errors import (
    AltDecodeError,
    SignerMismatch,
    TransactionTooLarge,
    TxBuildError,
    TxError,
    WalletError,
)
from galileo.tx.keys import ephemeral_keypair, load_keypair, write_keypair
from galileo.tx.merge import MergedInstructions, SwapLeg, merge_legs
from galileo.tx.tip import JITO_TIP_ACCOUNTS, MIN_JITO_TIP_LAMPORTS, random_tip_account, tip_instruction

__all__ = [
    "DEFAULT_COMPUTE_UNIT_LIMIT",
    "JITO_TIP_ACCOUNTS",
    "MAX_COMPUTE_UNIT_LIMIT",
    "MIN_JITO_TIP_LAMPORTS",
    "PACKET_DATA_SIZE",
    "AltCache",
    "AltDecodeError",
    "BuiltTransaction",
    "MergedInstructions",
    "SignerMismatch",
    "SwapLeg",
    "TransactionTooLarge",
    "TxBuildError",
    "TxError",
    "WalletError",
    "alt_from_account_data",
    "build_transaction",
    "compute_unit_limit_instruction",
    "compute_unit_price_instruction",
    "ephemeral_keypair",
    "is_compute_budget",
    "load_keypair",
    "merge_legs",
    "priority_fee_lamports",
    "random_tip_account",
    "tip_instruction",
    "write_keypair",
]
