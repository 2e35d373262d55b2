"""Upstream instruction shapes, decoded into :class:`broker.solana.Instruction`.

Jupiter and DFlow send JSON objects (``programId``, ``accounts`` of ``{pubkey, isSigner,
isWritable}``, base64 ``data``); Titan sends MessagePack maps (``{p: bin32, a: [{p, s, w}],
d: bin}``). Both become the one shape the coordinator assembles transactions from.
"""

from __future__ import annotations

import struct
from functools import lru_cache

import msgspec
from solders.hash import Hash
from solders.pubkey import Pubkey

from broker.solana import AccountMeta, Instruction

__all__ = [
    "COMPUTE_BUDGET_PROGRAM",
    "BlockhashMeta",
    "JsonInstruction",
    "TitanInstruction",
    "b58_key",
    "blockhash_b58",
    "compute_unit_limit_of",
    "from_json",
    "from_titan",
]

COMPUTE_BUDGET_PROGRAM = "ComputeBudget111111111111111111111111111111"
_SET_COMPUTE_UNIT_LIMIT = 2


class JsonAccountMeta(msgspec.Struct, rename="camel", gc=False):
    """``{"pubkey", "isSigner", "isWritable"}``."""

    pubkey: str
    is_signer: bool
    is_writable: bool


class JsonInstruction(msgspec.Struct, rename="camel"):
    """Jupiter's and DFlow's instruction object; ``data`` is base64 (msgspec decodes it to bytes)."""

    program_id: str
    accounts: list[JsonAccountMeta]
    data: bytes


class BlockhashMeta(msgspec.Struct, rename="camel"):
    """``blockhashWithMetadata``: Jupiter sends the hash as 32 ints, DFlow as base58."""

    blockhash: str | list[int]
    last_valid_block_height: int


class TitanAccountMeta(msgspec.Struct, gc=False):
    """Titan's ``{p: bin32, s: signer, w: writable}``."""

    p: bytes
    s: bool
    w: bool


class TitanInstruction(msgspec.Struct):
    """Titan's ``{p: program bin32, a: [account], d: data bin}``."""

    p: bytes
    a: list[TitanAccountMeta]
    d: bytes


def from_json(ixs: list[JsonInstruction]) -> list[Instruction]:
    """Convert JSON instructions, keeping their order."""
    return [
        Instruction(
            program_id=ix.program_id,
            accounts=tuple(AccountMeta(m.pubkey, m.is_signer, m.is_writable) for m in ix.accounts),
            data=ix.data,
        )
        for ix in ixs
    ]


@lru_cache(maxsize=8192)
def b58_key(raw: bytes) -> str:
    """A 32-byte public key as base58; ValueError for any other length (keys repeat: cached)."""
    if len(raw) != 32:
        raise ValueError(f"a public key is 32 bytes, got {len(raw)}")
    return str(Pubkey(raw))


def from_titan(ixs: list[TitanInstruction]) -> list[Instruction]:
    """Convert Titan instructions; ValueError when a key is not 32 bytes."""
    return [
        Instruction(
            program_id=b58_key(ix.p),
            accounts=tuple(AccountMeta(b58_key(m.p), m.s, m.w) for m in ix.a),
            data=ix.d,
        )
        for ix in ixs
    ]


def blockhash_b58(value: str | list[int]) -> str:
    """A blockhash as base58, from base58 or Jupiter's array of 32 byte values; ValueError if invalid."""
    if isinstance(value, str):
        return str(Hash.from_string(value))
    if len(value) != 32 or not all(0 <= b <= 255 for b in value):
        raise ValueError("blockhash must be 32 byte values")
    return str(Hash(bytes(value)))


def compute_unit_limit_of(ixs: list[Instruction]) -> int:
    """The limit a SetComputeUnitLimit instruction (``0x02 + u32 LE``) sets, 0 if there is none."""
    for ix in ixs:
        if ix.program_id == COMPUTE_BUDGET_PROGRAM and len(ix.data) >= 5 and ix.data[0] == _SET_COMPUTE_UNIT_LIMIT:
            return int(struct.unpack_from("<I", ix.data, 1)[0])
    return 0
