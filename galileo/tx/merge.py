"""Merging swap legs into one instruction list by what each instruction does, not by its bytes.

Legs come from different aggregators, each assembled to run alone: each wraps SOL, creates
its token accounts and closes wrapped SOL when its swap is done. Run one after the other in
one transaction, those pieces collide (a buy route that closes the wrapped-SOL account
before the sell swap pays into it fails on chain). So every instruction of every leg, in
whichever group the upstream put it, is classified by its effect:

* **compute budget**: dropped; the merged transaction sets its own (limit, price, heap);
* **ATA create** (Create or CreateIdempotent): one CreateIdempotent per associated account;
* **wrap**: a System transfer into a wrapped-SOL account and its SyncNative: one transfer of
  the sum per account and one SyncNative, before every swap. A leg that sells wrapped SOL an
  earlier leg bought (``input_mint`` = an earlier leg's ``output_mint`` = WSOL) wraps
  nothing: the SOL it spends is already in the account;
* **CloseAccount of a wrapped-SOL account**: once per account, at the very end (it unwraps
  what the last leg bought and returns the rent);
* **CloseAccount of another account another leg uses**: removed (closing a token account
  with a balance fails, and the other leg may still need it);
* **anything else** (the swaps, a leg's other instructions): kept, in leg order.

The order is: SetComputeUnitLimit, SetComputeUnitPrice (when priced), RequestHeapFrame (when a
leg asked for one), ATA creates, wraps, every leg's remaining instructions, WSOL closes, then
the caller's tail (the tip). Pure and deterministic: same legs in, same instructions out.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterable, Sequence
from fractions import Fraction

import msgspec
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address

from broker.solana import AccountMeta, Instruction
from galileo.tx import budget
from galileo.tx.errors import NeedsOtherSigner
from galileo.tx.programs import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    COMPUTE_BUDGET_PROGRAM_ID,
    SYSTEM_PROGRAM_ID,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    TOKEN_PROGRAMS,
    WSOL_MINT,
)
from galileo.tx.tip import SYSTEM_TRANSFER, system_transfer

__all__ = ["MergedInstructions", "SwapLeg", "leg_accounts", "merge_legs"]

# SPL Token instruction tags (one byte, no arguments).
_CLOSE_ACCOUNT = b"\x09"
_SYNC_NATIVE = b"\x11"
# Associated Token Account program: Create is empty data or 0, CreateIdempotent is 1.
_ATA_CREATES = frozenset({b"", b"\x00", b"\x01"})
_ATA_CREATE_IDEMPOTENT = b"\x01"
_TRANSFER = struct.Struct("<IQ")


class SwapLeg(msgspec.Struct, frozen=True, kw_only=True):
    """One swap as an upstream returned it (Jupiter/DFlow ``/swap-instructions``, an Ultra order, a Titan route).

    ``compute_unit_limit`` is the upstream's own figure (``computeUnitLimit``, Titan's
    ``computeUnitsSafe``); when absent, the leg's SetComputeUnitLimit instruction is used, and
    failing that 200 000. ``alts`` are address lookup table addresses (base58). ``input_mint``
    and ``output_mint`` say what the leg sells and buys (a leg that sells the wrapped SOL an
    earlier leg bought needs no wrap); ``label`` names the leg in errors (``buy:titan``);
    ``min_out`` is what the route's program will pay at least, or fail.
    """

    compute_budget: tuple[Instruction, ...] = ()
    setup: tuple[Instruction, ...] = ()
    swap: tuple[Instruction, ...] = ()
    other: tuple[Instruction, ...] = ()
    cleanup: tuple[Instruction, ...] = ()
    compute_unit_limit: int | None = None
    alts: tuple[str, ...] = ()
    input_mint: str = ""
    output_mint: str = ""
    label: str = ""
    min_out: int = 0  # the route's on-chain minimum out (0: not known)

    def instructions(self) -> tuple[Instruction, ...]:
        """Every instruction of the leg, in the order the upstream meant them to run."""
        return (*self.compute_budget, *self.setup, *self.swap, *self.other, *self.cleanup)


class MergedInstructions(msgspec.Struct, frozen=True, kw_only=True):
    """The merged, ordered instruction list and what went into its compute budget."""

    instructions: tuple[Instruction, ...]
    alts: tuple[str, ...]
    compute_unit_limit: int
    compute_unit_price: int  # micro-lamports per CU; 0 means no price instruction

    @property
    def priority_fee_lamports(self) -> int:
        """The prioritization fee this budget costs (0 when unpriced)."""
        return budget.priority_fee_lamports(self.compute_unit_limit, self.compute_unit_price)


def merge_legs(
    legs: Sequence[SwapLeg],
    *,
    payer: str | None = None,
    cu_price_micro_lamports: int = 0,
    cu_limit: int | None = None,
    cu_limit_multiplier: float = 1.0,
    tail: Sequence[Instruction] = (),
) -> MergedInstructions:
    """Merge ``legs`` into one instruction list (see the module docstring for what and in which order).

    The compute unit limit is ``cu_limit`` when given (units measured on the merged
    transaction, margin included), else the sum of the legs' limits times
    ``cu_limit_multiplier`` (rounded up), capped at 1 400 000 either way.
    ``cu_price_micro_lamports`` of 0 emits no price instruction (Jito bundles pay by tip, not by
    priority fee). ``payer``, when given, is the only signer the legs may ask for: a leg that
    needs another (an RFQ maker, a gas sponsor) raises :class:`NeedsOtherSigner`. ``tail`` is
    appended last. Raises ``ValueError`` for no legs, a non-positive multiplier, a negative
    limit or price, malformed compute budget data in a leg, or a compute budget instruction
    in ``tail``.
    """
    if not legs:
        raise ValueError("merge_legs needs at least one leg")
    if not (math.isfinite(cu_limit_multiplier) and cu_limit_multiplier > 0):
        raise ValueError(f"cu_limit_multiplier must be a positive number, got {cu_limit_multiplier}")
    if any(budget.is_compute_budget(ix) for ix in tail):
        raise ValueError("tail instructions must not include compute budget instructions")
    if payer is not None:
        for index, leg in enumerate(legs):
            _check_signers(index, leg, payer)

    if cu_limit is None:
        total = sum(_leg_compute_limit(i, leg) for i, leg in enumerate(legs))
        # Fraction(str(x)) takes the multiplier as written (1.1 is 11/10), so no float fuzz.
        cu_limit = math.ceil(total * Fraction(str(cu_limit_multiplier)))
    elif cu_limit < 0:
        raise ValueError(f"cu_limit must be >= 0, got {cu_limit}")
    limit = min(budget.MAX_COMPUTE_UNIT_LIMIT, cu_limit)
    head = [budget.compute_unit_limit_instruction(limit)]
    if cu_price_micro_lamports:
        head.append(budget.compute_unit_price_instruction(cu_price_micro_lamports))
    heap = max((_heap_frame(ix) for leg in legs for ix in leg.instructions()), default=0)
    if heap:
        head.append(Instruction(COMPUTE_BUDGET_PROGRAM_ID, (), budget.encode_request_heap_frame(heap)))

    plan = _Plan(legs)
    alts = tuple(dict.fromkeys(a for leg in legs for a in leg.alts))
    return MergedInstructions(
        instructions=(*head, *plan.creates.values(), *plan.wraps_out(), *plan.body, *plan.closes.values(), *tail),
        alts=alts,
        compute_unit_limit=limit,
        compute_unit_price=cu_price_micro_lamports,
    )


def leg_accounts(leg: SwapLeg) -> int:
    """How many distinct accounts (programs included) the leg's instructions name, its compute budget aside."""
    ixs = [ix for ix in leg.instructions() if not budget.is_compute_budget(ix)]
    return len({ix.program_id for ix in ixs} | {a.pubkey for ix in ixs for a in ix.accounts})


class _Plan:
    """The legs' instructions sorted by effect (one pass per leg, in leg order)."""

    def __init__(self, legs: Sequence[SwapLeg]) -> None:
        self.creates: dict[str, Instruction] = {}  # associated account -> its CreateIdempotent
        self.wraps: dict[tuple[str, str], int] = {}  # (funder, wrapped-SOL account) -> lamports
        self.body: list[Instruction] = []
        self.closes: dict[str, Instruction] = {}  # wrapped-SOL account -> its one CloseAccount
        self.syncs: dict[str, str] = {}  # wrapped-SOL account -> the token program that syncs it
        self.wsol = _wsol_accounts(ix for leg in legs for ix in leg.instructions())
        uses = [_accounts_of(leg) for leg in legs]
        bought_wsol = False
        for index, leg in enumerate(legs):
            others = set().union(*(u for i, u in enumerate(uses) if i != index))
            wraps = not (bought_wsol and leg.input_mint == WSOL_MINT)
            for ix in leg.instructions():
                self._take(ix, others, wraps)
            bought_wsol = bought_wsol or leg.output_mint == WSOL_MINT

    def _take(self, ix: Instruction, others: set[str], wraps: bool) -> None:
        if budget.is_compute_budget(ix):
            return
        if _is_ata_create(ix):
            account = ix.accounts[1].pubkey
            if account not in self.creates:
                self.creates[account] = Instruction(ix.program_id, ix.accounts, _ATA_CREATE_IDEMPOTENT)
        elif (target := _wrap_target(ix, self.wsol)) is not None:
            if wraps:
                funder, lamports = target
                key = (funder, ix.accounts[1].pubkey)
                self.wraps[key] = self.wraps.get(key, 0) + lamports
        elif _is_sync_native(ix) and ix.accounts[0].pubkey in self.wsol:
            self.syncs.setdefault(ix.accounts[0].pubkey, ix.program_id)  # one, after the wraps (wraps_out)
        elif _is_close_account(ix):
            account = ix.accounts[0].pubkey
            if account in self.wsol:
                self.closes.setdefault(account, ix)
            elif account not in others:
                self.body.append(ix)  # the leg's own account: its business
        else:
            self.body.append(ix)

    def wraps_out(self) -> list[Instruction]:
        """One transfer per (funder, wrapped account) with the sum, then one SyncNative per account."""
        out: list[Instruction] = []
        synced: set[str] = set()
        for (funder, account), lamports in self.wraps.items():
            out.append(system_transfer(funder, account, lamports))
        for _, account in self.wraps:
            if account not in synced:
                synced.add(account)
                program = self.syncs.get(account, TOKEN_PROGRAM_ID)
                out.append(Instruction(program, (AccountMeta(account, False, True),), _SYNC_NATIVE))
        return out


def _check_signers(index: int, leg: SwapLeg, payer: str) -> None:
    for ix in leg.instructions():
        for meta in ix.accounts:
            if meta.is_signer and meta.pubkey != payer:
                raise NeedsOtherSigner(leg.label or f"leg {index}", meta.pubkey)


def _accounts_of(leg: SwapLeg) -> set[str]:
    return {a.pubkey for ix in leg.instructions() if not budget.is_compute_budget(ix) for a in ix.accounts}


def _leg_compute_limit(index: int, leg: SwapLeg) -> int:
    if leg.compute_unit_limit is not None:
        if leg.compute_unit_limit < 0:
            raise ValueError(f"leg {index}: compute_unit_limit must be >= 0, got {leg.compute_unit_limit}")
        return leg.compute_unit_limit
    for ix in leg.instructions():
        if budget.is_compute_unit_limit(ix):
            try:
                return budget.decode_compute_unit_limit(ix.data)
            except ValueError as exc:
                raise ValueError(f"leg {index}: {exc}") from None
    return budget.DEFAULT_COMPUTE_UNIT_LIMIT


def _heap_frame(ix: Instruction) -> int:
    if budget.is_compute_budget(ix) and ix.data[:1] == bytes((budget.REQUEST_HEAP_FRAME,)):
        return budget.decode_request_heap_frame(ix.data)
    return 0


def _is_ata_create(ix: Instruction) -> bool:
    return ix.program_id == ASSOCIATED_TOKEN_PROGRAM_ID and ix.data in _ATA_CREATES and len(ix.accounts) >= 4


def _is_sync_native(ix: Instruction) -> bool:
    return ix.program_id in TOKEN_PROGRAMS and ix.data == _SYNC_NATIVE and len(ix.accounts) >= 1


def _is_close_account(ix: Instruction) -> bool:
    return ix.program_id in TOKEN_PROGRAMS and ix.data == _CLOSE_ACCOUNT and len(ix.accounts) >= 3


def _wrap_target(ix: Instruction, wsol: set[str]) -> tuple[str, int] | None:
    """(funder, lamports) of a System transfer into a wrapped-SOL account; None for anything else."""
    if ix.program_id != SYSTEM_PROGRAM_ID or len(ix.data) != _TRANSFER.size or len(ix.accounts) < 2:
        return None
    tag, lamports = _TRANSFER.unpack(ix.data)
    if tag != SYSTEM_TRANSFER or ix.accounts[1].pubkey not in wsol:
        return None
    return ix.accounts[0].pubkey, lamports


def _wsol_accounts(ixs: Iterable[Instruction]) -> set[str]:
    """Wrapped-SOL accounts: SyncNative targets, WSOL ATAs created, funded or closed."""
    found: set[str] = set()
    for ix in ixs:
        if ix.program_id == SYSTEM_PROGRAM_ID and len(ix.accounts) >= 2:
            source, dest = ix.accounts[0].pubkey, ix.accounts[1].pubkey
            if dest in (_wsol_ata(source, TOKEN_PROGRAM_ID), _wsol_ata(source, TOKEN_2022_PROGRAM_ID)):
                found.add(dest)
        elif _is_sync_native(ix):
            found.add(ix.accounts[0].pubkey)
        elif _is_ata_create(ix) and ix.accounts[3].pubkey == WSOL_MINT:
            found.add(ix.accounts[1].pubkey)
        elif _is_close_account(ix):
            account, owner = ix.accounts[0].pubkey, ix.accounts[2].pubkey
            if account == _wsol_ata(owner, ix.program_id):
                found.add(account)
    return found


@functools.lru_cache(maxsize=1024)
def _wsol_ata(owner: str, token_program: str) -> str | None:
    try:
        return str(
            get_associated_token_address(
                Pubkey.from_string(owner), Pubkey.from_string(WSOL_MINT), Pubkey.from_string(token_program)
            )
        )
    except ValueError:
        return None
