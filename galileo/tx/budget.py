"""Compute budget program instructions and priority-fee arithmetic.

Wire encoding (instruction data, no accounts): ``0x02 + u32 LE`` = SetComputeUnitLimit,
``0x03 + u64 LE`` = SetComputeUnitPrice in micro-lamports per compute unit,
``0x01 + u32 LE`` = RequestHeapFrame in bytes, ``0x04 + u32 LE`` =
SetLoadedAccountsDataSizeLimit. The runtime rejects a transaction carrying two compute
budget instructions of the same kind.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from typing import Final

from broker.solana import Instruction
from galileo.tx.programs import COMPUTE_BUDGET_PROGRAM_ID

__all__ = [
    "DEFAULT_COMPUTE_UNIT_LIMIT",
    "MAX_COMPUTE_UNIT_LIMIT",
    "REQUEST_HEAP_FRAME",
    "SET_COMPUTE_UNIT_LIMIT",
    "SET_COMPUTE_UNIT_PRICE",
    "SET_LOADED_ACCOUNTS_DATA_SIZE_LIMIT",
    "compute_unit_limit_instruction",
    "compute_unit_price_instruction",
    "decode_compute_unit_limit",
    "decode_compute_unit_price",
    "decode_request_heap_frame",
    "encode_compute_unit_limit",
    "encode_compute_unit_price",
    "encode_request_heap_frame",
    "is_compute_budget",
    "is_compute_unit_limit",
    "is_compute_unit_price",
    "limit_for_units",
    "priority_fee_lamports",
]

REQUEST_HEAP_FRAME: Final = 0x01
SET_COMPUTE_UNIT_LIMIT: Final = 0x02
SET_COMPUTE_UNIT_PRICE: Final = 0x03
SET_LOADED_ACCOUNTS_DATA_SIZE_LIMIT: Final = 0x04

DEFAULT_COMPUTE_UNIT_LIMIT: Final = 200_000
MAX_COMPUTE_UNIT_LIMIT: Final = 1_400_000

_U32: Final = struct.Struct("<BI")
_U64: Final = struct.Struct("<BQ")
_MICRO_LAMPORTS_PER_LAMPORT: Final = 1_000_000


def encode_compute_unit_limit(units: int) -> bytes:
    """SetComputeUnitLimit data: ``0x02`` then ``units`` as u32 little-endian."""
    return _pack(_U32, SET_COMPUTE_UNIT_LIMIT, units, "compute unit limit", 0xFFFF_FFFF)


def decode_compute_unit_limit(data: bytes) -> int:
    """The unit count of SetComputeUnitLimit data; ``ValueError`` if ``data`` is not one."""
    return _unpack(_U32, SET_COMPUTE_UNIT_LIMIT, data, "SetComputeUnitLimit")


def encode_compute_unit_price(micro_lamports: int) -> bytes:
    """SetComputeUnitPrice data: ``0x03`` then micro-lamports per CU as u64 little-endian."""
    return _pack(_U64, SET_COMPUTE_UNIT_PRICE, micro_lamports, "compute unit price", 0xFFFF_FFFF_FFFF_FFFF)


def decode_compute_unit_price(data: bytes) -> int:
    """The micro-lamport price of SetComputeUnitPrice data; ``ValueError`` if it is not one."""
    return _unpack(_U64, SET_COMPUTE_UNIT_PRICE, data, "SetComputeUnitPrice")


def encode_request_heap_frame(size: int) -> bytes:
    """RequestHeapFrame data: ``0x01`` then the heap size in bytes as u32 little-endian."""
    return _pack(_U32, REQUEST_HEAP_FRAME, size, "heap frame size", 0xFFFF_FFFF)


def decode_request_heap_frame(data: bytes) -> int:
    """The byte count of RequestHeapFrame data; ``ValueError`` if it is not one."""
    return _unpack(_U32, REQUEST_HEAP_FRAME, data, "RequestHeapFrame")


def compute_unit_limit_instruction(units: int) -> Instruction:
    """A SetComputeUnitLimit instruction."""
    return Instruction(COMPUTE_BUDGET_PROGRAM_ID, (), encode_compute_unit_limit(units))


def compute_unit_price_instruction(micro_lamports: int) -> Instruction:
    """A SetComputeUnitPrice instruction (micro-lamports per compute unit)."""
    return Instruction(COMPUTE_BUDGET_PROGRAM_ID, (), encode_compute_unit_price(micro_lamports))


def is_compute_budget(ix: Instruction) -> bool:
    """True for any instruction addressed to the compute budget program."""
    return ix.program_id == COMPUTE_BUDGET_PROGRAM_ID


def is_compute_unit_limit(ix: Instruction) -> bool:
    """True for a compute budget instruction whose discriminator is SetComputeUnitLimit."""
    return is_compute_budget(ix) and ix.data[:1] == bytes((SET_COMPUTE_UNIT_LIMIT,))


def is_compute_unit_price(ix: Instruction) -> bool:
    """True for a compute budget instruction whose discriminator is SetComputeUnitPrice."""
    return is_compute_budget(ix) and ix.data[:1] == bytes((SET_COMPUTE_UNIT_PRICE,))


def priority_fee_lamports(cu_limit: int, cu_price_micro_lamports: int) -> int:
    """The prioritization fee the runtime charges: ``ceil(limit × price / 1_000_000)`` lamports.

    Exact integer arithmetic (no float rounding). The fee is charged on the requested limit,
    not on the units actually consumed.
    """
    if cu_limit < 0 or cu_price_micro_lamports < 0:
        raise ValueError("compute unit limit and price must be non-negative")
    return -(-cu_limit * cu_price_micro_lamports // _MICRO_LAMPORTS_PER_LAMPORT)


def limit_for_units(units: int, margin: float) -> int:
    """The compute unit limit for a transaction measured to consume ``units``: ``ceil(units × margin)``.

    Exact (``margin`` taken as written: 1.1 is 11/10), capped at 1 400 000. A margin below 1
    would run the transaction out of compute, so it is refused with ``ValueError``.
    """
    if units < 0:
        raise ValueError(f"units must be non-negative, got {units}")
    if not (math.isfinite(margin) and margin >= 1):
        raise ValueError(f"the compute unit margin must be at least 1, got {margin}")
    return min(MAX_COMPUTE_UNIT_LIMIT, math.ceil(units * Fraction(str(margin))))


def _pack(layout: struct.Struct, tag: int, value: int, what: str, maximum: int) -> bytes:
    if not 0 <= value <= maximum:
        raise ValueError(f"{what} must be in 0..{maximum}, got {value}")
    return layout.pack(tag, value)


def _unpack(layout: struct.Struct, tag: int, data: bytes, name: str) -> int:
    if len(data) != layout.size or data[0] != tag:
        raise ValueError(f"not {name} data: expected {layout.size} bytes starting with {tag:#04x}")
    value: int = layout.unpack(data)[1]
    return value
