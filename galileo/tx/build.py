"""Compiling, signing and size-checking a v0 transaction from merged instructions.

:func:`build_transaction` compiles with solders' ``MessageV0.try_compile`` (the Solana SDK's
own compiler), checks what the runtime would refuse before signing (more than 64 accounts
locked, more than one packet of bytes), then signs. So a transaction that cannot land is
never signed, let alone sent.

Jito rule: a tip account must be a static key of the message, never loaded through a lookup
table. The compiler moves any non-signer, non-program account found in a table into a lookup,
so every account in ``static_accounts`` (all Jito tip accounts by default) is masked out of
the tables before compiling, and the result is checked after.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Collection, Sequence
from typing import Final

import msgspec
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.errors import SignerError
from solders.hash import Hash, ParseHashError
from solders.instruction import AccountMeta as SoldersAccountMeta
from solders.instruction import Instruction as SoldersInstruction
from solders.keypair import Keypair
from solders.message import CompileError, MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from broker.solana import Instruction
from galileo.tx.alt import AltCache, alt_from_account_data
from galileo.tx.errors import SignerMismatch, TooManyAccountLocks, TransactionTooLarge, TxBuildError
from galileo.tx.tip import JITO_TIP_ACCOUNTS

__all__ = [
    "MAX_TX_ACCOUNT_LOCKS",
    "PACKET_DATA_SIZE",
    "AltCache",
    "BuiltTransaction",
    "alt_from_account_data",
    "build_transaction",
    "to_solders_instruction",
]

PACKET_DATA_SIZE: Final = 1232
MAX_TX_ACCOUNT_LOCKS: Final = 64  # the runtime's limit of accounts one transaction may lock (TooManyAccountLocks)
_SIGNATURE_BYTES: Final = 64

# Stands in for a static-only account inside a table copy, keeping every other index in place.
_PLACEHOLDER: Final = Pubkey(hashlib.sha256(b"galileo.tx: static-only account placeholder").digest())


class BuiltTransaction(msgspec.Struct, frozen=True, kw_only=True):
    """A signed transaction ready to send: the object, its wire bytes and their base64 text."""

    transaction: VersionedTransaction
    message: MessageV0  # the compiled message, typed (``transaction.message`` is a union)
    wire: bytes
    base64: str
    signature: str  # the fee payer's signature, base58: the transaction id
    blockhash: str
    size: int


def build_transaction(
    payer: Keypair,
    instructions: Sequence[Instruction],
    alts: Sequence[AddressLookupTableAccount],
    blockhash: str,
    *,
    signers: Sequence[Keypair] = (),
    static_accounts: Collection[str] = JITO_TIP_ACCOUNTS,
    max_size: int = PACKET_DATA_SIZE,
    max_accounts: int = MAX_TX_ACCOUNT_LOCKS,
) -> BuiltTransaction:
    """Compile ``instructions`` into a v0 message paid by ``payer``, check it, sign it.

    ``signers`` are the other keypairs the instructions require (the payer may be repeated).
    Accounts in ``static_accounts`` are never loaded through ``alts``. Before signing, raises
    :class:`TooManyAccountLocks` when the message names more than ``max_accounts`` accounts
    (static and loaded) and :class:`TransactionTooLarge` when the signed transaction would
    exceed ``max_size`` bytes; also :class:`TxBuildError` for a bad key, blockhash or account
    count and :class:`SignerMismatch` when the keypairs do not match the message's signers.
    """
    try:
        recent = Hash.from_string(blockhash)
    except (ParseHashError, ValueError):
        raise TxBuildError(f"blockhash {blockhash!r} is not a base58 32-byte hash") from None
    compiled = [to_solders_instruction(ix, index) for index, ix in enumerate(instructions)]
    static = frozenset(_keys(static_accounts))
    tables = _unique_tables(alts)
    try:
        message = MessageV0.try_compile(payer.pubkey(), compiled, _masked(tables, static, compiled), recent)
    except CompileError as exc:
        raise TxBuildError(f"cannot compile the message: {exc}") from None
    _check_static(message, tables, static)
    locked = len(message.account_keys) + sum(
        len(lookup.writable_indexes) + len(lookup.readonly_indexes) for lookup in message.address_table_lookups
    )
    if locked > max_accounts:
        raise TooManyAccountLocks(locked, max_accounts)
    signatures = message.header.num_required_signatures
    size = _shortvec_len(signatures) + _SIGNATURE_BYTES * signatures + len(to_bytes_versioned(message))
    if size > max_size:
        raise TransactionTooLarge(size, max_size)
    keypairs = _ordered_signers(message, payer, signers)
    try:
        transaction = VersionedTransaction(message, keypairs)
    except SignerError as exc:  # pragma: no cover - solders re-checks what _ordered_signers did
        raise SignerMismatch(str(exc)) from None
    wire = bytes(transaction)
    assert len(wire) == size, (len(wire), size)  # the size checked is the size signed
    return BuiltTransaction(
        transaction=transaction,
        message=message,
        wire=wire,
        base64=base64.b64encode(wire).decode("ascii"),
        signature=str(transaction.signatures[0]),
        blockhash=str(recent),
        size=len(wire),
    )


def to_solders_instruction(ix: Instruction, index: int = 0) -> SoldersInstruction:
    """The solders form of a wire instruction; ``TxBuildError`` names a key that is not base58."""
    try:
        program = Pubkey.from_string(ix.program_id)
        metas = [SoldersAccountMeta(Pubkey.from_string(a.pubkey), a.is_signer, a.is_writable) for a in ix.accounts]
    except ValueError:
        bad = next(k for k in (ix.program_id, *(a.pubkey for a in ix.accounts)) if not _is_key(k))
        raise TxBuildError(f"instruction {index}: {bad!r} is not a base58 public key") from None
    return SoldersInstruction(program, ix.data, metas)


def _shortvec_len(n: int) -> int:
    """Bytes of Solana's compact-u16 length prefix for ``n``."""
    return 1 if n < 0x80 else 2 if n < 0x4000 else 3


def _is_key(text: str) -> bool:
    try:
        Pubkey.from_string(text)
    except ValueError:
        return False
    return True


def _keys(addresses: Collection[str]) -> list[Pubkey]:
    try:
        return [Pubkey.from_string(a) for a in addresses]
    except ValueError:
        bad = next(a for a in addresses if not _is_key(a))
        raise TxBuildError(f"static account {bad!r} is not a base58 public key") from None


def _unique_tables(alts: Sequence[AddressLookupTableAccount]) -> list[AddressLookupTableAccount]:
    by_key: dict[Pubkey, AddressLookupTableAccount] = {}
    for table in alts:
        by_key.setdefault(table.key, table)
    return list(by_key.values())


def _masked(
    tables: list[AddressLookupTableAccount], static: frozenset[Pubkey], compiled: list[SoldersInstruction]
) -> list[AddressLookupTableAccount]:
    """Copies of ``tables`` with static-only accounts replaced by a never-referenced placeholder."""
    if not any(a in static for t in tables for a in t.addresses):
        return tables
    referenced = {ix.program_id for ix in compiled} | {m.pubkey for ix in compiled for m in ix.accounts}
    if _PLACEHOLDER in referenced:  # a 2^-256 event, but never load the wrong account
        raise TxBuildError("an instruction references the internal placeholder key")
    return [AddressLookupTableAccount(t.key, [_PLACEHOLDER if a in static else a for a in t.addresses]) for t in tables]


def _check_static(message: MessageV0, tables: list[AddressLookupTableAccount], static: frozenset[Pubkey]) -> None:
    by_key = {t.key: t.addresses for t in tables}
    for lookup in message.address_table_lookups:
        addresses = by_key[lookup.account_key]
        for i in (*lookup.writable_indexes, *lookup.readonly_indexes):
            if addresses[i] in static:
                raise TxBuildError(f"{addresses[i]} must be a static account but was put in a lookup")


def _ordered_signers(message: MessageV0, payer: Keypair, extra: Sequence[Keypair]) -> list[Keypair]:
    have: dict[Pubkey, Keypair] = {}
    for keypair in (payer, *extra):
        have.setdefault(keypair.pubkey(), keypair)
    required = message.account_keys[: message.header.num_required_signatures]
    missing = [str(k) for k in required if k not in have]
    if missing:
        raise SignerMismatch(f"no keypair for required signer(s) {', '.join(missing)}; pass them in signers=")
    unused = [str(k) for k in have if k not in set(required)]
    if unused:
        raise SignerMismatch(f"keypair(s) {', '.join(unused)} sign nothing in this message; drop them")
    return [have[k] for k in required]
