"""From two swap legs to signed v0 transactions, one per kind of lander.

Both legs' answers are merged by what their instructions do (one wrap, ATA creates once, the
wrapped-SOL account closed once at the end, our own compute budget; see
:func:`galileo.tx.merge_legs`) rather than asking an aggregator for one circular route: every
aggregator supports two plain legs, and each leg's route stays exactly the one that was quoted.

Compute: the merged transaction (everything either variant carries, at the most compute a
transaction may ask for) is simulated once, and the limit is the units it consumed times
``lander.cu_limit_multiplier`` (1.1). A simulation that fails means the transaction would fail
now: nothing is signed for landing. Without an answer (the RPC is busy) the limit is the sum of
the legs' own figures (``computeUnitLimit``, ``computeUnitsSafe``), which carry their
upstreams' headroom. Account locks (64) and size (1232 bytes) are checked before signing.

* The Jito variant carries the tip (a transfer to a random tip account, a static key) and
  no compute-unit price: bundles pay through the tip.
* The RPC / staked variant carries the compute-unit price and no tip.

Both come from ``fees`` (the fee market's, :mod:`galileo.landing.fees`), else from the config.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.keypair import Keypair

from broker.results import SwapInstructions
from galileo.chain import ChainError, ChainState
from galileo.config.sections import LanderConfig
from galileo.landing.fees import Fees
from galileo.tx import (
    MAX_COMPUTE_UNIT_LIMIT,
    BuiltTransaction,
    MergedInstructions,
    RouteTooLarge,
    SwapLeg,
    TooManyAccountLocks,
    TransactionTooLarge,
    TxError,
    build_transaction,
    leg_accounts,
    limit_for_units,
    merge_legs,
    priority_fee_lamports,
    random_tip_account,
    tip_instruction,
)

__all__ = ["Assembled", "SimulationFailed", "assemble", "leg_of"]

log = logging.getLogger("galileo.landing")

_SIDES = ("buy", "sell")
SLIPPAGE_EXCEEDED = 6001  # the aggregators' SlippageToleranceExceeded


class SimulationFailed(TxError):
    """The merged transaction fails when simulated now: landing it would fail too (or pay for nothing)."""

    def __init__(self, err: str, logs: Sequence[str]) -> None:
        last = next((line for line in reversed(logs) if "failed" in line or "Error" in line), logs[-1] if logs else "")
        super().__init__(f"the merged transaction fails in simulation: {err}" + (f" ({last})" if last else ""))
        self.err = err
        self.result = f"simulation: {_short_error(err)}"
        self.market = self.result.endswith(f"Custom {SLIPPAGE_EXCEEDED}")  # a price moved, not a build bug


@dataclass(frozen=True, slots=True)
class Assembled:
    jito: BuiltTransaction | None
    rpc: BuiltTransaction | None
    last_valid_block_height: int
    tip: int
    priority_fee: int  # lamports paid by the rpc variant
    compute_unit_limit: int = 0
    units_consumed: int | None = None  # what the simulation measured (None: not simulated)


def leg_of(
    si: SwapInstructions, input_mint: str = "", output_mint: str = "", *, label: str = "", min_out: int = 0
) -> SwapLeg:
    """An aggregator's ``/swap-instructions`` answer as one leg to merge."""
    return SwapLeg(
        compute_budget=tuple(si.compute_budget),
        setup=tuple(si.setup),
        swap=(si.swap,),
        other=tuple(si.other),
        cleanup=tuple(si.cleanup),
        compute_unit_limit=si.compute_unit_limit or None,
        alts=tuple(si.alts),
        input_mint=input_mint,
        output_mint=output_mint,
        label=label,
        min_out=min_out,
    )


async def assemble(
    legs: list[SwapLeg],
    chain: ChainState,
    wallet: Keypair,
    lander: LanderConfig,
    *,
    jito: bool,
    rpc: bool,
    rng: random.Random,
    fees: Fees | None = None,
) -> Assembled:
    """Build (and sign) the variants the enabled landers need.

    ``fees``: the tip and compute-unit price to sign with (None: ``lander.tip_lamports`` and
    ``lander.compute_unit_price_micro_lamports``). Raises :class:`SimulationFailed` when the
    merged transaction fails now, :class:`~galileo.tx.RouteTooLarge` when the legs do not fit
    in one transaction (the message names each leg's accounts and what to change), another
    TxError (a leg needing a second signer: :class:`~galileo.tx.NeedsOtherSigner`), or ChainError.
    """
    fees = fees or Fees(lander.tip_lamports, lander.compute_unit_price_micro_lamports)
    swap_legs = list(legs)
    alt_addresses = [a for leg in swap_legs for a in leg.alts]
    tables = await chain.lookup_tables(alt_addresses) if alt_addresses else []
    bh = await chain.blockhash()
    payer = str(wallet.pubkey())
    tip = tip_instruction(payer, random_tip_account(rng), fees.tip) if jito else None
    price = fees.cu_price if rpc else 0

    def merged(limit: int | None, *, priced: bool, tipped: bool) -> MergedInstructions:
        return merge_legs(
            swap_legs,
            payer=payer,
            cu_price_micro_lamports=price if priced else 0,
            cu_limit=limit,
            tail=(tip,) if tipped and tip is not None else (),
        )

    probe = merged(MAX_COMPUTE_UNIT_LIMIT, priced=rpc, tipped=jito)  # a superset of both variants
    probed = _build(wallet, probe, tables, bh.blockhash, swap_legs)
    limit: int | None = None
    units: int | None = None
    try:
        sim = await chain.simulate(probed.wire)
    except ChainError as exc:  # no measurement: the legs' own figures, which carry their headroom
        log.debug("no simulation (%s): the compute limit is the legs' own", exc)
    else:
        if sim.err:
            raise SimulationFailed(sim.err, sim.logs)
        units = sim.units_consumed
        limit = limit_for_units(units, lander.cu_limit_multiplier)
    jito_tx = rpc_tx = None
    fee = 0
    final = limit
    if jito:
        variant = merged(limit, priced=False, tipped=True)
        final = variant.compute_unit_limit
        jito_tx = _build(wallet, variant, tables, bh.blockhash, swap_legs)
    if rpc:
        variant = merged(limit, priced=True, tipped=False)
        final = variant.compute_unit_limit
        fee = priority_fee_lamports(variant.compute_unit_limit, price)
        rpc_tx = _build(wallet, variant, tables, bh.blockhash, swap_legs)
    return Assembled(
        jito=jito_tx,
        rpc=rpc_tx,
        last_valid_block_height=bh.last_valid_block_height,
        tip=fees.tip if jito else 0,
        priority_fee=fee,
        compute_unit_limit=final or 0,
        units_consumed=units,
    )


def _build(
    wallet: Keypair,
    merged: MergedInstructions,
    tables: list[AddressLookupTableAccount],
    blockhash: str,
    legs: Sequence[SwapLeg],
) -> BuiltTransaction:
    """Compile, check and sign; a transaction the runtime would refuse raises a reason a person can act on."""
    try:
        return build_transaction(wallet, merged.instructions, tables, blockhash)
    except (TooManyAccountLocks, TransactionTooLarge) as exc:
        if isinstance(exc, TooManyAccountLocks):
            what = f"the round trip would lock {exc.count} accounts, over the runtime's limit of {exc.limit}"
        else:
            what = f"the round trip would be {exc.size} bytes, over the {exc.limit}-byte packet limit"
        named = ", ".join(f"{_side(i)} {leg.label or '?'} names {leg_accounts(leg)}" for i, leg in enumerate(legs))
        raise RouteTooLarge(
            f"{what} ({named}; accounts both use counted in each). Lower blind_strategy.max_accounts (each "
            "leg asks Jupiter's maxAccounts and Titan's accountsLimitTotal for half of it), or drop the leg "
            "provider that routes wide: DFlow and Ultra take no account limit"
        ) from None


def _side(index: int) -> str:
    return _SIDES[index] if index < len(_SIDES) else f"leg {index}"


def _short_error(err: str) -> str:
    """``{"InstructionError":[4,{"Custom":6001}]}`` -> ``Custom 6001``; ``"AccountNotFound"`` as it is."""
    try:
        value = orjson.loads(err)
    except orjson.JSONDecodeError:
        return err[:60]
    if isinstance(value, dict) and "InstructionError" in value:
        inner = value["InstructionError"][1]
        if isinstance(inner, dict):
            ((name, detail),) = inner.items()
            return f"{name} {detail}"
        return str(inner)
    return str(value)[:60]
