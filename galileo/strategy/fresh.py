"""Freshness: a round trip whose quotes are older than a few slots is not landed.

One rule for every leg, whatever its provider; the engine applies it to both legs before it
asks for their instructions, and again right before sending. A quote is stale when:

* **stale_quote**: its ``contextSlot`` is more than ``lander.max_quote_age_slots`` behind the
  chain's current slot (:meth:`galileo.chain.ChainState.slot`, from answers the farm already
  gets), or more than that many 400 ms slots have passed since it arrived (Ultra orders carry
  no ``contextSlot``; and a Titan quote waits in its stream until a batch takes it);
* **quote_expired**: the chain is past its ``expiresAfterSlot`` (Titan's own expiry).

A quote's slot also teaches the chain: an aggregator may see a newer slot than the RPC node.
"""

from __future__ import annotations

from typing import Literal

from broker.results import Quote, TitanQuote
from galileo.chain import SLOT_SECONDS
from galileo.strategy.legs import LegQuote

__all__ = ["Staleness", "context_slot", "staleness"]

Staleness = Literal["stale_quote", "quote_expired"]


def context_slot(q: LegQuote) -> int:
    """The slot the quote was priced at (0: the provider does not say)."""
    value = q.value
    return value.context_slot if isinstance(value, Quote | TitanQuote) else 0


def staleness(q: LegQuote, chain_slot: int | None, now: float, max_slots: int) -> Staleness | None:
    """Why ``q`` must not be landed now (None: it is fresh). ``now`` on the clock ``q.received`` was stamped with."""
    value = q.value
    expires = value.expires_after_slot if isinstance(value, TitanQuote) else 0
    if expires and chain_slot is not None and chain_slot > expires:
        return "quote_expired"
    slot = context_slot(q)
    if slot and chain_slot is not None and chain_slot - slot > max_slots:
        return "stale_quote"
    if q.received and now - q.received > max_slots * SLOT_SECONDS:
        return "stale_quote"
    return None
