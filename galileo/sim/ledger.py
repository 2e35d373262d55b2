"""The simulated chain: slots from a clock, issued blockhashes, transaction checks, landing.

The slot is a pure function of elapsed time (``slot_ms`` per slot) plus any slots skipped ahead by
/sim/control, so nothing runs in the background: a transaction accepted at slot S is landed for
every query made at slot >= S + land_delay_slots.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from solders.hash import Hash
from solders.transaction import VersionedTransaction

__all__ = [
    "BASE_HEIGHT",
    "BASE_SLOT",
    "FINALITY_SLOTS",
    "MAX_TX_BYTES",
    "DecodedTx",
    "Landing",
    "Ledger",
    "TxRejected",
    "decode_tx",
]

BASE_SLOT = 376_435_000
BASE_HEIGHT = 354_590_000
FINALITY_SLOTS = 32
MAX_TX_BYTES = 1232


class TxRejected(Exception):
    """A transaction failed a check. ``reason`` is a stable token (``signature``, ``expired`` ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodedTx:
    """A well-formed, fully signed transaction and the facts the checks need."""

    tx: VersionedTransaction
    raw: bytes
    signatures: tuple[str, ...]
    blockhash: str

    @property
    def signature(self) -> str:
        """The first signature (base58): the transaction id."""
        return self.signatures[0]


def decode_tx(raw: bytes, verify: bool = True) -> DecodedTx:
    """Parse and sanitize ``raw``; with ``verify``, every required signature must be valid.

    Raises TxRejected with reason ``too_large``, ``malformed`` or ``signature``.
    """
    if len(raw) > MAX_TX_BYTES:
        raise TxRejected("too_large", f"transaction is {len(raw)} bytes (max {MAX_TX_BYTES})")
    try:
        tx = VersionedTransaction.from_bytes(raw)
        tx.sanitize()
    except Exception as exc:  # solders raises ValueError or its own SanitizeError
        raise TxRejected("malformed", str(exc) or type(exc).__name__) from None
    if verify and not all(tx.verify_with_results()):
        raise TxRejected("signature", "signature verification failure")
    msg = tx.message
    return DecodedTx(tx, raw, tuple(str(s) for s in tx.signatures), str(msg.recent_blockhash))


@dataclass
class Landing:
    """Where a set of accepted signatures lands, and through which door they came."""

    signatures: tuple[str, ...]
    accepted_slot: int
    land_slot: int
    source: str
    bundle_id: str | None = None


@dataclass
class Ledger:
    """Slot clock, blockhash registry and landing book of the simulated chain."""

    seed: int
    slot_ms: int
    ttl_blocks: int
    land_delay_slots: int
    started: float
    offset_slots: int = 0
    issued: dict[str, int] = field(default_factory=dict)
    landings: dict[str, Landing] = field(default_factory=dict)
    bundles: dict[str, Landing] = field(default_factory=dict)
    _landing_list: list[Landing] = field(default_factory=list)

    def slot(self, now: float) -> int:
        """The current slot at monotonic time ``now``."""
        return BASE_SLOT + self.offset_slots + int((now - self.started) * 1000.0 // self.slot_ms)

    @staticmethod
    def block_height(slot: int) -> int:
        """Block height at ``slot`` (no skipped slots in the simulation)."""
        return BASE_HEIGHT + (slot - BASE_SLOT)

    def seconds_until(self, slot: int, now: float) -> float:
        """Seconds from ``now`` until ``slot`` begins (0 if it already has)."""
        start = self.started + (slot - BASE_SLOT - self.offset_slots) * self.slot_ms / 1000.0
        return max(0.0, start - now)

    def advance(self, slots: int) -> None:
        """Jump the chain ``slots`` slots ahead (tests use it instead of sleeping)."""
        self.offset_slots += max(0, slots)

    def blockhash_at(self, slot: int) -> Hash:
        """The blockhash of ``slot``: a function of the seed and the slot only."""
        return Hash(hashlib.sha256(f"galileo-sim/{self.seed}/blockhash/{slot}".encode()).digest())

    def issue_blockhash(self, now: float) -> tuple[Hash, int, int]:
        """Issue the current slot's blockhash: (blockhash, lastValidBlockHeight, slot)."""
        slot = self.slot(now)
        bh = self.blockhash_at(slot)
        last_valid = self.block_height(slot) + self.ttl_blocks
        self.issued[str(bh)] = last_valid
        return bh, last_valid, slot

    def check_blockhash(self, blockhash: str, now: float) -> None:
        """Raise TxRejected ``blockhash_not_found`` or ``expired`` unless the blockhash is usable."""
        last_valid = self.issued.get(blockhash)
        if last_valid is None:
            raise TxRejected("blockhash_not_found", f"blockhash {blockhash} was not issued by this chain")
        if self.block_height(self.slot(now)) > last_valid:
            raise TxRejected("expired", f"blockhash {blockhash} expired at block height {last_valid}")

    def is_landed(self, signature: str, now: float) -> bool:
        """Whether ``signature`` has landed by ``now``."""
        landing = self.landings.get(signature)
        return landing is not None and landing.land_slot <= self.slot(now)

    def pending_landing(self, signature: str) -> Landing | None:
        """The landing record of ``signature`` (landed or not), if it was accepted."""
        return self.landings.get(signature)

    def check_tx(self, decoded: DecodedTx, now: float) -> None:
        """Ledger checks: blockhash issued and unexpired, not already processed."""
        self.check_blockhash(decoded.blockhash, now)
        if self.is_landed(decoded.signature, now):
            raise TxRejected("already_processed", "this transaction has already been processed")

    def accept(self, signatures: tuple[str, ...], source: str, now: float, bundle_id: str | None = None) -> Landing:
        """Schedule ``signatures`` to land together ``land_delay_slots`` from now.

        A re-send of something already accepted returns the existing record (idempotent).
        """
        existing = self.bundles.get(bundle_id) if bundle_id is not None else self.landings.get(signatures[0])
        if existing is not None:
            return existing
        slot = self.slot(now)
        landing = Landing(signatures, slot, slot + self.land_delay_slots, source, bundle_id)
        self._landing_list.append(landing)
        for sig in signatures:
            self.landings.setdefault(sig, landing)
        if bundle_id is not None:
            self.bundles[bundle_id] = landing
        return landing

    def confirmation(self, landing: Landing, slot: int) -> tuple[str, int | None] | None:
        """(confirmationStatus, confirmations) at ``slot``; None before it lands."""
        age = slot - landing.land_slot
        if age < 0:
            return None
        if age >= FINALITY_SLOTS:
            return "finalized", None
        return ("confirmed" if age >= 1 else "processed"), age

    def landed_counts(self, now: float) -> dict[str, int]:
        """Landed sends (a bundle or a transaction counts once) per source door."""
        slot = self.slot(now)
        counts: dict[str, int] = {}
        for landing in self._landing_list:
            if landing.land_slot <= slot:
                counts[landing.source] = counts.get(landing.source, 0) + 1
        return counts
