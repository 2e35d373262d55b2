"""Solana values that cross the wire: instructions as upstreams return them, decoded once.

Jupiter and DFlow send instructions as JSON (``programId``, ``accounts``, base64 ``data``);
Titan as MessagePack with 32-byte keys. Workers turn both into these Structs so the
coordinator assembles transactions from one shape. Keys stay base58 strings (what every
upstream and solders' ``Pubkey.from_string`` speak); data is raw bytes.
"""

from __future__ import annotations

import msgspec

__all__ = ["AccountMeta", "Instruction"]


class AccountMeta(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One account of an instruction."""

    pubkey: str
    is_signer: bool
    is_writable: bool


class Instruction(msgspec.Struct, frozen=True, array_like=True):
    """A program call: program id, ordered accounts, raw data bytes."""

    program_id: str
    accounts: tuple[AccountMeta, ...]
    data: bytes
