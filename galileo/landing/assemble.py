"""From two swap legs to signed v0 transactions, one per kind of lander.

Both legs' ``/swap-instructions`` answers are merged (one compute-budget pair, setup
deduplicated, buy swap, sell swap, cleanup last; see :func:`galileo.tx.merge_legs`) rather
than asking an aggregator for one circular route: every aggregator supports two plain legs,
and each leg's route stays exactly the one that was quoted.

* The Jito variant carries the tip (a transfer to a random tip account, a static key) and
  no compute-unit price: bundles pay through the tip.
* The RPC / staked variant carries the compute-unit price and no tip.

Both come from ``fees`` (the fee market's, :mod:`galileo.landing.fees`), else from the config.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from solders.keypair import Keypair

from broker.results import SwapInstructions
from galileo.chain import ChainState
from galileo.config.sections import LanderConfig
from galileo.landing.fees import Fees
from galileo.tx import (
    BuiltTransaction,
    SwapLeg,
    build_transaction,
    merge_legs,
    priority_fee_lamports,
    random_tip_account,
    tip_instruction,
)

__all__ = ["Assembled", "assemble", "leg_of"]


@dataclass(frozen=True, slots=True)
class Assembled:
    jito: BuiltTransaction | None
    rpc: BuiltTransaction | None
    last_valid_block_height: int
    tip: int
    priority_fee: int  # lamports paid by the rpc variant


def leg_of(si: SwapInstructions) -> SwapLeg:
    """An aggregator's ``/swap-instructions`` answer as one leg to merge."""
    return SwapLeg(
        compute_budget=tuple(si.compute_budget),
        setup=tuple(si.setup),
        swap=(si.swap,),
        other=tuple(si.other),
        cleanup=tuple(si.cleanup),
        compute_unit_limit=si.compute_unit_limit or None,
        alts=tuple(si.alts),
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
    """Build (and sign) the variants the enabled landers need. Raises TxError or ChainError.

    ``fees``: the tip and compute-unit price to sign with (None: ``lander.tip_lamports`` and
    ``lander.compute_unit_price_micro_lamports``).
    """
    fees = fees or Fees(lander.tip_lamports, lander.compute_unit_price_micro_lamports)
    swap_legs = list(legs)
    alt_addresses = [a for leg in swap_legs for a in leg.alts]
    tables = await chain.lookup_tables(alt_addresses) if alt_addresses else []
    bh = await chain.blockhash()
    payer = str(wallet.pubkey())
    jito_tx = rpc_tx = None
    fee = 0
    if jito:
        tip = tip_instruction(payer, random_tip_account(rng), fees.tip)
        merged = merge_legs(
            swap_legs, cu_price_micro_lamports=0, cu_limit_multiplier=lander.cu_limit_multiplier, tail=(tip,)
        )
        jito_tx = build_transaction(wallet, merged.instructions, tables, bh.blockhash)
    if rpc:
        price = fees.cu_price
        merged = merge_legs(swap_legs, cu_price_micro_lamports=price, cu_limit_multiplier=lander.cu_limit_multiplier)
        fee = priority_fee_lamports(merged.compute_unit_limit, price)
        rpc_tx = build_transaction(wallet, merged.instructions, tables, bh.blockhash)
    return Assembled(
        jito=jito_tx,
        rpc=rpc_tx,
        last_valid_block_height=bh.last_valid_block_height,
        tip=fees.tip if jito else 0,
        priority_fee=fee,
    )
