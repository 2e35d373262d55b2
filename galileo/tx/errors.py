"""The one exception hierarchy of transaction assembly: wallets, merging, compiling, sizing.

Every message says what is wrong and what to do next; none ever contains key material.
"""

from __future__ import annotations

__all__ = [
    "AltDecodeError",
    "NeedsOtherSigner",
    "RouteTooLarge",
    "SignerMismatch",
    "TooManyAccountLocks",
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


class TooManyAccountLocks(TxBuildError):
    """The message names more accounts than the runtime locks for one transaction (64)."""

    def __init__(self, count: int, limit: int = 64) -> None:
        super().__init__(
            f"transaction locks {count} accounts, over the runtime's limit of {limit} by {count - limit}; "
            "ask the legs for fewer accounts (blind_strategy.max_accounts) or use fewer legs"
        )
        self.count = count
        self.limit = limit


class RouteTooLarge(TxBuildError):
    """The legs' routes do not fit in one transaction; the message names the legs and what to change."""


class NeedsOtherSigner(TxBuildError):
    """A leg needs a signature besides ours (an RFQ maker, a gas sponsor): it cannot be merged."""

    def __init__(self, leg: str, signer: str) -> None:
        super().__init__(
            f"{leg} needs {signer} to sign too (an RFQ maker or a gas sponsor): such a route cannot be "
            "merged into a transaction we sign alone, so it is skipped"
        )
        self.leg = leg
        self.signer = signer


class AltDecodeError(TxError):
    """Account data is not a valid on-chain address lookup table."""

    def __init__(self, address: str, problem: str) -> None:
        super().__init__(f"address lookup table {address}: {problem}")
        self.address = address
        self.problem = problem
