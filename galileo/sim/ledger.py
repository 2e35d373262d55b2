"""The simulated chain: slots from a clock, issued blockhashes, transaction checks, landing.

The slot is a pure function of elapsed time (``slot_ms`` per slot) plus any slots skipped ahead by
/sim/control, so nothing runs in the background: a send accepted at slot S is due at slot
S + land_delay_slots, and the first request the simulator serves at or after that slot runs it
in the VM (:meth:`Ledger.settle`), at that slot's prices, in the order sends were accepted.

A bundle runs all or nothing and costs nothing when it fails; a plain transaction that fails is
still processed and pays its fee. Records older than ``KEEP_SLOTS`` are forgotten (Jito's own
status look-back is five minutes), so memory stays bounded on long runs.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from solders.hash import Hash
from solders.transaction import VersionedTransaction

from galileo.sim.txerrors import error_label

if TYPE_CHECKING:
    from galileo.sim.vm import ChainVM

__all__ = [
    "BASE_HEIGHT",
    "BASE_SLOT",
    "FINALITY_SLOTS",
    "KEEP_SLOTS",
    "MAX_TX_BYTES",
    "RECENT_FAILURES",
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
KEEP_SLOTS = 750  # five minutes of 400 ms slots
RECENT_FAILURES = 20  # failed executions listed with their logs in /sim/stats
FAILURE_LOG_LINES = 40  # the last lines of each: where it failed


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


@dataclass(slots=True)
class Landing:
    """One accepted send: where and when it lands, through which door, and what running it did.

    ``status``: ``pending`` until its slot is settled; then ``landed`` (it ran; for a plain
    transaction that includes running and failing: see ``errors``) or ``failed`` (a bundle
    that lost the auction or whose transactions failed: nothing of it is on chain).
    ``ran``: it went through the VM. ``errors``: signature -> the RPC's JSON error, for the
    transactions that ran and failed only (a record is kept five minutes: hundreds of thousands
    of them on a busy run, so a success costs nothing here).
    """

    signatures: tuple[str, ...]
    accepted_slot: int
    land_slot: int
    source: str
    bundle_id: str | None = None
    txs: tuple[VersionedTransaction, ...] = ()
    atomic: bool = False
    wins_auction: bool = True
    status: Literal["pending", "landed", "failed"] = "pending"
    ran: bool = False
    errors: dict[str, object] | None = None
    error: str | None = None

    def err_of(self, signature: str) -> object:
        """The RPC's error of the transaction ``signature`` (None: it succeeded or never ran)."""
        return self.errors.get(signature) if self.errors else None


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
    landed: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    executed: int = 0
    recent_failures: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_FAILURES))
    _pending: list[tuple[int, int, Landing]] = field(default_factory=list)  # heap: (land slot, order, landing)
    _accepted: int = 0
    _settled: deque[Landing] = field(default_factory=deque)
    _pruned_at: int = 0

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
        """Whether ``signature`` was processed on chain by ``now`` (a failed bundle's never was)."""
        landing = self.landings.get(signature)
        return (
            landing is not None
            and landing.land_slot <= self.slot(now)
            and landing.status != "failed"
            and (landing.status == "landed" or not landing.atomic)
        )

    def pending_landing(self, signature: str) -> Landing | None:
        """The live record of ``signature`` (pending or processed); a failed bundle's is not live."""
        landing = self.landings.get(signature)
        return None if landing is None or landing.status == "failed" else landing

    def check_tx(self, decoded: DecodedTx, now: float) -> None:
        """Ledger checks: blockhash issued and unexpired, not already processed."""
        self.check_blockhash(decoded.blockhash, now)
        if self.is_landed(decoded.signature, now):
            raise TxRejected("already_processed", "this transaction has already been processed")

    def accept(
        self,
        signatures: tuple[str, ...],
        source: str,
        now: float,
        bundle_id: str | None = None,
        *,
        txs: tuple[VersionedTransaction, ...] = (),
        atomic: bool = False,
        wins_auction: bool = True,
    ) -> Landing:
        """Schedule ``txs`` (``signatures``) to run together ``land_delay_slots`` from now.

        A re-send of something live returns the existing record (idempotent); a bundle that
        failed may be sent again and gets a new record.
        """
        existing = self.bundles.get(bundle_id) if bundle_id is not None else self.landings.get(signatures[0])
        if existing is not None and existing.status != "failed":
            return existing
        slot = self.slot(now)
        landing = Landing(signatures, slot, slot + self.land_delay_slots, source, bundle_id, txs, atomic, wins_auction)
        self._accepted += 1
        heapq.heappush(self._pending, (landing.land_slot, self._accepted, landing))
        for sig in signatures:
            self.landings[sig] = landing
        if bundle_id is not None:
            self.bundles[bundle_id] = landing
        return landing

    def record_landed(self, signature: str, source: str, now: float) -> None:
        """A transaction the simulator itself landed at once (an airdrop), for status queries."""
        slot = self.slot(now)
        landing = Landing((signature,), slot, slot, source, status="landed")
        self.landings[signature] = landing
        self._settled.append(landing)

    def settle(self, now: float, vm: ChainVM | None) -> None:
        """Run every send due by ``now``, in order, at its own slot (``vm`` None: no execution,
        every accepted send lands as it is)."""
        slot = self.slot(now)
        while self._pending and self._pending[0][0] <= slot:
            landing = heapq.heappop(self._pending)[2]
            self._run(landing, vm)
            self._settled.append(landing)
        while self._settled and self._settled[0].land_slot < slot - KEEP_SLOTS:
            self._forget(self._settled.popleft())
        if slot - self._pruned_at >= KEEP_SLOTS // 10:
            self._pruned_at = slot
            gone = self.block_height(slot) - KEEP_SLOTS  # older than this, "not found" as on mainnet
            self.issued = {bh: last for bh, last in self.issued.items() if last >= gone}

    def _run(self, landing: Landing, vm: ChainVM | None) -> None:
        if not landing.wins_auction:
            landing.status, landing.error = "failed", "auction: outbid"
        elif vm is not None:
            vm.at(landing.land_slot)
            runs = vm.execute_bundle(list(landing.txs)) if landing.atomic else [vm.execute(t) for t in landing.txs]
            landing.ran = True
            landing.errors = {run.signature: run.err for run in runs if not run.ok} or None
            self.executed += len(runs)
            bad = next((i for i, run in enumerate(runs) if not run.ok), None)
            if bad is not None:
                run = runs[bad]
                landing.error = error_label(run.err, landing.txs[bad], run.logs)
                self.errors[landing.error] += 1
                self.recent_failures.append(
                    {
                        "bundle_id": landing.bundle_id if landing.atomic else None,
                        "signature": run.signature,
                        "source": landing.source,
                        "slot": landing.land_slot,
                        "error": landing.error,
                        "err": run.err,
                        "logs": list(run.logs[-FAILURE_LOG_LINES:]),
                    }
                )
            landing.status = "failed" if bad is not None and landing.atomic else "landed"
        else:
            landing.status = "landed"
        landing.txs = ()  # the bytes are not needed any more: keep the record small
        if landing.status == "landed" and landing.error is None:
            self.landed[landing.source] += 1
        else:
            self.failed[landing.source] += 1
            if landing.error == "auction: outbid":
                self.errors[landing.error] += 1

    def _forget(self, landing: Landing) -> None:
        for sig in landing.signatures:
            if self.landings.get(sig) is landing:
                del self.landings[sig]
        if landing.bundle_id is not None and self.bundles.get(landing.bundle_id) is landing:
            del self.bundles[landing.bundle_id]

    def confirmation(self, landing: Landing, slot: int) -> tuple[str, int | None] | None:
        """(confirmationStatus, confirmations) at ``slot``; None before it lands."""
        age = slot - landing.land_slot
        if age < 0 or landing.status == "pending":
            return None
        if age >= FINALITY_SLOTS:
            return "finalized", None
        return ("confirmed" if age >= 1 else "processed"), age

    def landed_counts(self) -> dict[str, int]:
        """Sends that ran and succeeded, per source door."""
        return dict(self.landed)
