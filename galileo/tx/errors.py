"""The one exception hierarchy of transaction assembly: wallets, merging, compiling, sizing.

Every message says what is wrong and what to do next; none ever contains key material.
"""

from __future__ import annotations

__all__ = [
    "AltDecodeError",
    "SignerMismatch",
    "TransactionTooLarge",
    "TxBuildError",
    "TxError",
    "WalletError",
]


class TxError(Exception):
    """Base class of every error raised by :mod:`galileo.tx`."""


class WalletError(TxError):
    """A keypair file cannot be used: missing, unreadable, malformed or inconsistent."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"wallet keypair {path}: {problem}")
        self.path = path
        self.problem = problem


class TxBuildError(TxError):
    """The instructions cannot be compiled into a v0 message (bad key, bad blockhash, too many accounts)."""


class SignerMismatch(TxBuildError):
    """The keypairs given do not match the signers the message requires."""


class TransactionTooLarge(TxBuildError):
    """The signed transaction does not fit in one packet (``PACKET_DATA_SIZE`` bytes)."""

    def __init__(self, size: int, limit: int = 1232) -> None:
        super().__init__(
            f"transaction is {size} bytes, over the {limit}-byte packet limit by {size - limit}; "
            "use more address lookup tables, fewer legs, or fewer accounts"
        )
        self.size = size
        self.limit = limit


class AltDecodeError(TxError):
    """Account data is not a valid on-chain address lookup table."""

    def __init__(self, address: str, problem: str) -> None:
        super().__init__(f"address lookup table {address}: {problem}")
        self.address = address
        self.problem = problem
