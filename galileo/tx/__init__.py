"""Transaction assembly: wallets, compute budget, Jito tips, leg merging, v0 compile and sign.

Flow: workers decode upstream swap instructions into :class:`broker.solana.Instruction`;
the coordinator wraps each upstream answer in a :class:`SwapLeg`, merges the legs by what
their instructions do (:func:`merge_legs`), appends the tip (:func:`tip_instruction`),
resolves the lookup tables (:class:`AltCache`, :func:`alt_from_account_data`), sizes the
compute budget from measured units (:func:`limit_for_units`) and, once the account locks and
the size are known to fit, signs (:func:`build_transaction`).
"""

from __future__ import annotations

from galileo.tx.alt import AltCache, alt_from_account_data
from galileo.tx.budget import (
    DEFAULT_COMPUTE_UNIT_LIMIT,
    MAX_COMPUTE_UNIT_LIMIT,
    compute_unit_limit_instruction,
    compute_unit_price_instruction,
    is_compute_budget,
    limit_for_units,
    priority_fee_lamports,
)
from galileo.tx.build import MAX_TX_ACCOUNT_LOCKS, PACKET_DATA_SIZE, BuiltTransaction, build_transaction
from galileo.tx.errors import (
    AltDecodeError,
    NeedsOtherSigner,
    RouteTooLarge,
    SignerMismatch,
    TooManyAccountLocks,
    TransactionTooLarge,
    TxBuildError,
    TxError,
    WalletError,
)
from galileo.tx.keys import ephemeral_keypair, load_keypair, write_keypair
from galileo.tx.merge import MergedInstructions, SwapLeg, leg_accounts, merge_legs
from galileo.tx.tip import JITO_TIP_ACCOUNTS, MIN_JITO_TIP_LAMPORTS, random_tip_account, tip_instruction

__all__ = [
    "DEFAULT_COMPUTE_UNIT_LIMIT",
    "JITO_TIP_ACCOUNTS",
    "MAX_COMPUTE_UNIT_LIMIT",
    "MAX_TX_ACCOUNT_LOCKS",
    "MIN_JITO_TIP_LAMPORTS",
    "PACKET_DATA_SIZE",
    "AltCache",
    "AltDecodeError",
    "BuiltTransaction",
    "MergedInstructions",
    "NeedsOtherSigner",
    "RouteTooLarge",
    "SignerMismatch",
    "SwapLeg",
    "TooManyAccountLocks",
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
    "leg_accounts",
    "limit_for_units",
    "load_keypair",
    "merge_legs",
    "priority_fee_lamports",
    "random_tip_account",
    "tip_instruction",
    "write_keypair",
]
