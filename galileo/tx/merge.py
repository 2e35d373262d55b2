"""Merging swap legs into one instruction list, in the order the original bot assembled it.

The order is: SetComputeUnitLimit, SetComputeUnitPrice (when priced), RequestHeapFrame (when
a leg asked for one), setup (deduplicated), every leg's swap in leg order, every leg's other
instructions, cleanup (deduplicated, WSOL CloseAccount last), then caller tail instructions
(the tip transfer). Compute budget instructions are taken out of every list of every leg and
replaced by the merged ones, so the result carries each compute budget kind at most once, as
the runtime requires.

Everything here is pure and deterministic: same legs in, same instructions out.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from fractions import Fraction

import msgspec
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address

from broker.solana import Instruction
from galileo.tx import budget
from galileo.tx.programs import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    COMPUTE_BUDGET_PROGRAM_ID,
    TOKEN_PROGRAMS,
    WSOL_MINT,
)

__all__ = ["MergedInstructions", "SwapLeg", "merge_legs"]

# SPL Token instruction tags (one byte, no arguments).
_CLOSE_ACCOUNT = b"\x09"
_SYNC_NATIVE = b"\x11"
# Associated Token Account program: Create is empty data or 0, CreateIdempotent is 1.
_ATA_CREATES = frozenset({b"", b"\x00", b"\x01"})


class SwapLeg(msgspec.Struct, frozen=True, kw_only=True):
    """One swap as an upstream returned it (Jupiter/DFlow ``/swap-instructions``, a Titan route).

    ``compute_unit_limit`` is the upstream's own figure (``computeUnitLimit``, Titan's
    ``computeUnitsSafe``); when absent, the leg's SetComputeUnitLimit instruction is used, and
    failing that 200 000. ``alts`` are address lookup table addresses (base58).
    """

    compute_budget: tuple[Instruction, ...] = ()
    setup: tuple[Instruction, ...] = ()
    swap: tuple[Instruction, ...] = ()
    other: tuple[Instruction, ...] = ()
    cleanup: tuple[Instruction, ...] = ()
    compute_unit_limit: int | None = None
    alts: tuple[str, ...] = ()


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
    cu_price_micro_lamports: int = 0,
    cu_limit_multiplier: float = 1.0,
    tail: Sequence[Instruction] = (),
) -> MergedInstructions:
    """Merge ``legs`` into one instruction list (see the module docstring for the order).

    The compute unit limit is the sum of the legs' limits times ``cu_limit_multiplier``
    (rounded up), capped at 1 400 000. ``cu_price_micro_lamports`` of 0 emits no price
    instruction (Jito bundles pay by tip, not by priority fee). ``tail`` is appended last.
    Raises ``ValueError`` for no legs, a non-positive multiplier, a negative limit or price,
    malformed compute budget data in a leg, or a compute budget instruction in ``tail``.
    """
    if not legs:
        raise ValueError("merge_legs needs at least one leg")
    if not (math.isfinite(cu_limit_multiplier) and cu_limit_multiplier > 0):
        raise ValueError(f"cu_limit_multiplier must be a positive number, got {cu_limit_multiplier}")
    if any(budget.is_compute_budget(ix) for ix in tail):
        raise ValueError("tail instructions must not include compute budget instructions")

    total = sum(_leg_compute_limit(i, leg) for i, leg in enumerate(legs))
    # Fraction(str(x)) takes the multiplier as written (1.1 is 11/10), so no float fuzz.
    limit = min(budget.MAX_COMPUTE_UNIT_LIMIT, math.ceil(total * Fraction(str(cu_limit_multiplier))))
    head = [budget.compute_unit_limit_instruction(limit)]
    if cu_price_micro_lamports:
        head.append(budget.compute_unit_price_instruction(cu_price_micro_lamports))
    heap = max((_heap_frame(ix) for leg in legs for ix in _all(leg)), default=0)
    if heap:
        head.append(Instruction(COMPUTE_BUDGET_PROGRAM_ID, (), budget.encode_request_heap_frame(heap)))

    setup = _dedupe_setup(_strip(ix for leg in legs for ix in leg.setup))
    swaps = _strip(ix for leg in legs for ix in leg.swap)
    others = _strip(ix for leg in legs for ix in leg.other)
    cleanup = _dedupe_cleanup(_strip(ix for leg in legs for ix in leg.cleanup), setup)
    alts = tuple(dict.fromkeys(a for leg in legs for a in leg.alts))
    return MergedInstructions(
        instructions=(*head, *setup, *swaps, *others, *cleanup, *tail),
        alts=alts,
        compute_unit_limit=limit,
        compute_unit_price=cu_price_micro_lamports,
    )


def _all(leg: SwapLeg) -> Iterable[Instruction]:
    return (*leg.compute_budget, *leg.setup, *leg.swap, *leg.other, *leg.cleanup)


def _strip(ixs: Iterable[Instruction]) -> list[Instruction]:
    return [ix for ix in ixs if not budget.is_compute_budget(ix)]


def _leg_compute_limit(index: int, leg: SwapLeg) -> int:
    if leg.compute_unit_limit is not None:
        if leg.compute_unit_limit < 0:
            raise ValueError(f"leg {index}: compute_unit_limit must be >= 0, got {leg.compute_unit_limit}")
        return leg.compute_unit_limit
    for ix in _all(leg):
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


def _dedupe_setup(ixs: Iterable[Instruction]) -> list[Instruction]:
    """Identical instructions once; one ATA create per (owner, mint); SyncNative last.

    A repeated SyncNative moves to its last position so it runs after every leg's transfer
    into the wrapped-SOL account, not between them.
    """
    out: list[Instruction] = []
    seen: set[Instruction] = set()
    created: set[tuple[str, str]] = set()
    for ix in ixs:
        if _is_ata_create(ix):
            owner_mint = (ix.accounts[2].pubkey, ix.accounts[3].pubkey)
            if owner_mint in created:
                continue
            created.add(owner_mint)
        elif ix in seen:
            if _is_sync_native(ix):
                out.remove(ix)
                out.append(ix)
            continue
        seen.add(ix)
        out.append(ix)
    return out


def _dedupe_cleanup(ixs: Iterable[Instruction], setup: Sequence[Instruction]) -> list[Instruction]:
    """Identical instructions once; one CloseAccount per token account; WSOL closes at the end."""
    wsol = _wsol_accounts(setup)
    out: list[Instruction] = []
    last: list[Instruction] = []
    seen: set[Instruction] = set()
    closed: set[tuple[str, str]] = set()
    for ix in ixs:
        if _is_close_account(ix):
            target = (ix.program_id, ix.accounts[0].pubkey)
            if target in closed:
                continue
            closed.add(target)
            account, owner = ix.accounts[0].pubkey, ix.accounts[2].pubkey
            if account in wsol or account == _wsol_ata(owner, ix.program_id):
                last.append(ix)
                continue
        elif ix in seen:
            continue
        seen.add(ix)
        out.append(ix)
    return out + last


def _wsol_accounts(setup: Iterable[Instruction]) -> set[str]:
    """Accounts the setup wraps SOL into (SyncNative targets, WSOL ATAs it creates)."""
    found: set[str] = set()
    for ix in setup:
        if _is_sync_native(ix):
            found.add(ix.accounts[0].pubkey)
        elif _is_ata_create(ix) and ix.accounts[3].pubkey == WSOL_MINT:
            found.add(ix.accounts[1].pubkey)
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
