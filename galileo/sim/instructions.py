"""Instructions the aggregators return: compute budget, ATA/WSOL setup, the swap, cleanup.

One ``SwapPlan`` builder serves Jupiter, DFlow, Ultra and Titan; each service only renders it
(JSON objects with base64 data, compact MessagePack maps, or a solders transaction). The swap
instruction calls the router program (:mod:`galileo.sim.router`) deployed at the aggregator's
program id; its accounts and data are the router's layout, so it executes for real.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address

from galileo.sim.accounts import (
    ATA_PROGRAM,
    COMPUTE_BUDGET_PROGRAM,
    DFLOW_PROGRAM,
    JUPITER_EVENT_AUTHORITY,
    JUPITER_PROGRAM,
    SYSTEM_PROGRAM,
    TITAN_PROGRAM,
    TOKEN_PROGRAM,
    Pool,
    sim_accounts,
)
from galileo.sim.prices import SOL
from galileo.sim.vm import pool_burn_units

__all__ = [
    "JUPITER_ROUTE_DISCRIMINATOR",
    "Aggregator",
    "Ix",
    "Meta",
    "SwapPlan",
    "SwapRequest",
    "build_swap",
    "compute_unit_limit",
    "compute_unit_price",
    "ix_json",
    "ix_solders",
    "ix_titan",
    "system_transfer",
]

Aggregator = Literal["jupiter", "dflow", "titan"]
JUPITER_ROUTE_DISCRIMINATOR = bytes.fromhex("e517cb977ae3ad2a")
_DFLOW_SWAP_DISCRIMINATOR = hashlib.sha256(b"global:swap").digest()[:8]
_TITAN_SWAP_DISCRIMINATOR = hashlib.sha256(b"global:swap_route").digest()[:8]
_WSOL = Pubkey.from_string(SOL)
_PROGRAMS: dict[Aggregator, Pubkey] = {"jupiter": JUPITER_PROGRAM, "dflow": DFLOW_PROGRAM, "titan": TITAN_PROGRAM}
# Units each instruction consumes in the VM (measured; see tests/sim/test_sim_vm.py): the router's
# own work besides the pool's burn (account checks, the PDA search, two token CPIs), an
# idempotent ATA create that creates the account, SyncNative, CloseAccount, a System transfer
# and a compute budget instruction.
_ROUTER_CU, _ATA_NEW_CU, _SYNC_CU, _CLOSE_CU, _TRANSFER_CU, _BUDGET_CU = (6_500, 12_000, 3_000, 3_000, 150, 150)


class Meta(NamedTuple):
    """An account of an instruction."""

    pubkey: Pubkey
    signer: bool
    writable: bool


class Ix(NamedTuple):
    """A program call with raw data bytes."""

    program: Pubkey
    accounts: tuple[Meta, ...]
    data: bytes


def ix_json(ix: Ix) -> dict[str, Any]:
    """The JSON instruction object of Jupiter and DFlow (base64 data)."""
    return {
        "programId": str(ix.program),
        "accounts": [{"pubkey": str(m.pubkey), "isSigner": m.signer, "isWritable": m.writable} for m in ix.accounts],
        "data": base64.b64encode(ix.data).decode(),
    }


def ix_titan(ix: Ix) -> dict[str, Any]:
    """Titan's compact instruction map: ``{p: bin32, a: [{p, s, w}], d: bin}``."""
    return {
        "p": bytes(ix.program),
        "a": [{"p": bytes(m.pubkey), "s": m.signer, "w": m.writable} for m in ix.accounts],
        "d": ix.data,
    }


def ix_solders(ix: Ix) -> Instruction:
    """The solders Instruction, for compiling a message."""
    metas = [AccountMeta(m.pubkey, m.signer, m.writable) for m in ix.accounts]
    return Instruction(ix.program, ix.data, metas)


def compute_unit_limit(units: int) -> Ix:
    """ComputeBudget SetComputeUnitLimit: ``0x02 + u32 LE``."""
    return Ix(COMPUTE_BUDGET_PROGRAM, (), b"\x02" + struct.pack("<I", units))


def compute_unit_price(micro_lamports: int) -> Ix:
    """ComputeBudget SetComputeUnitPrice: ``0x03 + u64 LE`` micro-lamports."""
    return Ix(COMPUTE_BUDGET_PROGRAM, (), b"\x03" + struct.pack("<Q", micro_lamports))


def system_transfer(source: Pubkey, dest: Pubkey, lamports: int) -> Ix:
    """System program Transfer: ``u32 2 + u64 lamports``."""
    return Ix(SYSTEM_PROGRAM, (Meta(source, True, True), Meta(dest, False, True)), struct.pack("<IQ", 2, lamports))


def _ata_create_idempotent(payer: Pubkey, owner: Pubkey, mint: Pubkey) -> Ix:
    ata = get_associated_token_address(owner, mint)
    metas = (
        Meta(payer, True, True),
        Meta(ata, False, True),
        Meta(owner, False, False),
        Meta(mint, False, False),
        Meta(SYSTEM_PROGRAM, False, False),
        Meta(TOKEN_PROGRAM, False, False),
    )
    return Ix(ATA_PROGRAM, metas, b"\x01")


def _sync_native(account: Pubkey) -> Ix:
    return Ix(TOKEN_PROGRAM, (Meta(account, False, True),), b"\x11")


def _close_account(account: Pubkey, owner: Pubkey) -> Ix:
    metas = (Meta(account, False, True), Meta(owner, False, True), Meta(owner, True, False))
    return Ix(TOKEN_PROGRAM, metas, b"\x09")


@dataclass(frozen=True)
class SwapRequest:
    """What every aggregator needs to build a swap's instructions."""

    aggregator: Aggregator
    user: Pubkey
    in_mint: str
    out_mint: str
    in_amount: int
    out_amount: int
    min_out: int
    slippage_bps: int
    pool: Pool
    wrap_unwrap: bool = True
    platform_fee_bps: int = 0


@dataclass
class SwapPlan:
    """Instructions grouped the way Jupiter and DFlow return them."""

    setup: list[Ix]
    swap: Ix
    cleanup: list[Ix]
    alts: list[Pubkey]
    compute_units: int
    other: list[Ix] = field(default_factory=list)

    @property
    def compute_units_safe(self) -> int:
        """The estimate with 20 % headroom, as Titan's ``computeUnitsSafe``."""
        return self.compute_units * 6 // 5

    def all_instructions(self, cu_limit: int, cu_price: int = 0) -> list[Ix]:
        """compute budget → setup → swap → other → cleanup, the assembly order clients use."""
        budget = [compute_unit_limit(cu_limit)] + ([compute_unit_price(cu_price)] if cu_price else [])
        return [*budget, *self.setup, self.swap, *self.other, *self.cleanup]


def _swap_ix(req: SwapRequest, src: Pubkey, dst: Pubkey) -> Ix:
    user, pool, accounts = req.user, req.pool, sim_accounts()
    program = _PROGRAMS[req.aggregator]
    in_mint, out_mint = Pubkey.from_string(req.in_mint), Pubkey.from_string(req.out_mint)
    metas: tuple[Meta, ...] = (
        Meta(user, True, False),
        Meta(src, False, True),
        Meta(dst, False, True),
        Meta(accounts.vault(program, req.in_mint), False, True),
        Meta(accounts.vault(program, req.out_mint), False, True),
        Meta(pool.amm, False, False),
        Meta(accounts.authorities[program], False, False),
        Meta(TOKEN_PROGRAM, False, False),
        Meta(pool.program, False, False),
        Meta(in_mint, False, False),
        Meta(out_mint, False, False),
    )
    if req.aggregator == "jupiter":
        metas += (Meta(JUPITER_EVENT_AUTHORITY, False, False), Meta(JUPITER_PROGRAM, False, False))
        step = struct.pack("<IBBBBB", 1, 0x11 + pool.index, 1, 100, 0, 1)
        tail = struct.pack("<QQHB", req.in_amount, req.out_amount, req.slippage_bps, req.platform_fee_bps)
        return Ix(program, metas, JUPITER_ROUTE_DISCRIMINATOR + step + tail)
    # DFlow clients patch the tail: [len-4:len-2] slippage_bps u16, [len-2:] platform_fee_bps u16
    tail = struct.pack("<QQHH", req.in_amount, req.min_out, req.slippage_bps, req.platform_fee_bps)
    discriminator = _DFLOW_SWAP_DISCRIMINATOR if req.aggregator == "dflow" else _TITAN_SWAP_DISCRIMINATOR
    return Ix(program, metas, discriminator + tail)


def build_swap(req: SwapRequest) -> SwapPlan:
    """The setup, swap and cleanup instructions for ``req`` (no compute budget yet)."""
    user = req.user
    in_mint, out_mint = Pubkey.from_string(req.in_mint), Pubkey.from_string(req.out_mint)
    src = get_associated_token_address(user, in_mint)
    dst = get_associated_token_address(user, out_mint)
    setup: list[Ix] = []
    cleanup: list[Ix] = []
    wraps = req.wrap_unwrap and req.in_mint == SOL
    if wraps:
        setup += [
            _ata_create_idempotent(user, user, _WSOL),
            system_transfer(user, src, req.in_amount),
            _sync_native(src),
        ]
    setup.append(_ata_create_idempotent(user, user, out_mint))
    if req.wrap_unwrap and SOL in (req.in_mint, req.out_mint):
        cleanup.append(_close_account(get_associated_token_address(user, _WSOL), user))
    # A first swap creates its accounts: count every ATA create as a creating one.
    cu = _ROUTER_CU + pool_burn_units(req.pool.index) + _ATA_NEW_CU + 2 * _BUDGET_CU
    cu += (_ATA_NEW_CU + _TRANSFER_CU + _SYNC_CU) if wraps else 0
    cu += _CLOSE_CU * len(cleanup)
    return SwapPlan(setup, _swap_ix(req, src, dst), cleanup, [req.pool.alt], cu)
