"""Decompiling a v0 transaction back into instructions (Jupiter Ultra's ``/order`` returns one).

Account indices in a v0 message point into: the static keys, then every lookup table's
writable entries (in table order), then every table's read-only entries. Signer and writable
flags follow the header: the first ``num_required_signatures`` static keys sign, the last
``num_readonly_signed`` of those are read-only, the last ``num_readonly_unsigned`` static keys
are read-only, loaded writable entries are writable and loaded read-only ones are not.
"""

from __future__ import annotations

from collections.abc import Sequence

from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from broker.solana import AccountMeta, Instruction
from galileo.tx.errors import TxBuildError

__all__ = ["decompile", "lookup_addresses", "message_of"]


def message_of(wire: bytes) -> MessageV0:
    """The v0 message of a serialized transaction. Raises TxBuildError for anything else."""
    try:
        message = VersionedTransaction.from_bytes(wire).message
    except ValueError as exc:
        raise TxBuildError(f"not a transaction: {exc}") from None
    if not isinstance(message, MessageV0):
        raise TxBuildError("a legacy transaction, not v0")
    return message


def lookup_addresses(message: MessageV0) -> list[str]:
    """The lookup tables a v0 message loads accounts from."""
    return [str(lookup.account_key) for lookup in message.address_table_lookups]


def decompile(message: MessageV0, tables: Sequence[AddressLookupTableAccount]) -> list[Instruction]:
    """Every instruction of ``message``, with full account metas, using the resolved ``tables``."""
    by_key = {t.key: t for t in tables}
    static = list(message.account_keys)
    header = message.header
    signers = header.num_required_signatures
    writable_static = [
        i < signers - header.num_readonly_signed_accounts
        if i < signers
        else i < len(static) - header.num_readonly_unsigned_accounts
        for i in range(len(static))
    ]
    writable_loaded: list[Pubkey] = []
    readonly_loaded: list[Pubkey] = []
    for lookup in message.address_table_lookups:
        table = by_key.get(lookup.account_key)
        if table is None:
            raise TxBuildError(f"lookup table {lookup.account_key} was not resolved")
        addresses = table.addresses
        try:
            writable_loaded += [addresses[i] for i in bytes(lookup.writable_indexes)]
            readonly_loaded += [addresses[i] for i in bytes(lookup.readonly_indexes)]
        except IndexError:
            raise TxBuildError(f"lookup table {lookup.account_key} is shorter than the message expects") from None
    keys = static + writable_loaded + readonly_loaded
    writable = writable_static + [True] * len(writable_loaded) + [False] * len(readonly_loaded)
    out: list[Instruction] = []
    for ix in message.instructions:
        try:
            metas = tuple(AccountMeta(str(keys[i]), i < signers, writable[i]) for i in bytes(ix.accounts))
            program = str(keys[ix.program_id_index])
        except IndexError:
            raise TxBuildError("an instruction points past the message's accounts") from None
        out.append(Instruction(program_id=program, accounts=metas, data=bytes(ix.data)))
    return out
