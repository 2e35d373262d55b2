"""The lander stack: send a round trip's transactions, then follow them until they land or expire.

* ``jito``: the bundle (one transaction) to every configured block engine, each endpoint tied
  to an IP by rendezvous hashing over the pool (``hash_key`` = the endpoint), moving to the
  next-ranked IP only while its own cools down.
* ``staked`` / ``rpc``: ``sendTransaction`` (skipPreflight, maxRetries 0) to each endpoint.

``lander.mode: dry_run`` (the default) builds and signs but sends nothing: it logs what would
be sent, with the bundle id Jito would give it. Sends re-broadcast the *same signed bytes*,
which is idempotent (a signature lands at most once), so a send lost with a dead worker is
retried on another IP; nothing is ever re-signed before its blockhash expires.

After sending, bundles are followed with ``getBundleStatuses`` and transactions with
``getSignatureStatuses`` every second until they land, fail, or their blockhash expires.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from broker.results import BundleAccepted, BundleStatuses, SignatureStatuses, TxSent
from broker.types import JobOutcome, JobSpec
from galileo.chain import ChainState
from galileo.config.sections import LanderConfig
from galileo.landing.assemble import Assembled
from galileo.strategy.stats import StrategyStats
from galileo.strategy.upstreams import Endpoint, Upstreams
from galileo.tx import BuiltTransaction

__all__ = ["LanderStack", "Receipt", "bundle_id_of"]

log = logging.getLogger("galileo.lander")

FOLLOW_EVERY = 1.0
# Jito "bundle contains an already processed transaction", RPC "This transaction has already
# been processed", Ultra "Failed to land: transaction already processed".
_ALREADY_PROCESSED = re.compile(r"already (been )?processed", re.IGNORECASE)
DUPLICATE_WINDOW = 120.0  # seconds a sent signature is remembered (a blockhash lives ~60-90 s)
Submit = Callable[[JobSpec], Awaitable[JobOutcome]]


def bundle_id_of(signatures: list[str]) -> str:
    """Jito's bundle id: lowercase hex SHA-256 of the transactions' first signatures joined by ','."""
    return hashlib.sha256(",".join(signatures).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Receipt:
    lander: str  # jito | staked | rpc
    endpoint: str  # a label, never a URL with a key in it
    ip: str | None
    ident: str  # bundle id or signature
    accepted: bool
    error: str = ""


class LanderStack:
    def __init__(
        self,
        submit: Submit,
        upstreams: Upstreams,
        chain: ChainState,
        cfg: LanderConfig,
        landers: Sequence[str],
        stats: StrategyStats,
        metrics: Any = None,
    ) -> None:
        self.submit = submit
        self.upstreams = upstreams
        self.chain = chain
        self.cfg = cfg
        self.landers = landers
        self.stats = stats
        self.metrics = metrics
        self._follows: set[asyncio.Task[None]] = set()
        self._sent: dict[str, float] = {}  # signature -> when; identical transactions go out once
        if metrics is not None:  # every endpoint's landing series, at 0 until something happens
            for lander in landers:
                for ep in self._endpoints(lander):
                    metrics.lander_endpoint(lander, ep.label)

    @property
    def dry_run(self) -> bool:
        return self.cfg.mode != "live"

    def _endpoints(self, lander: str) -> list[Endpoint]:
        if lander == "jito":
            return self.upstreams.jito
        return self.upstreams.staked if lander == "staked" else self.upstreams.rpc

    def _first_time(self, signature: str) -> bool:
        """Two batches can build byte-identical transactions (same route, blockhash and tip account)."""
        now = asyncio.get_running_loop().time()
        if signature in self._sent:
            return False
        if len(self._sent) > 10_000:
            self._sent = {s: t for s, t in self._sent.items() if now - t < DUPLICATE_WINDOW}
        self._sent[signature] = now
        return True

    async def land(self, tx: Assembled, mint: str) -> list[Receipt]:
        """Send (or, in dry run, describe) every enabled lander's variant; start following."""
        jobs: list[tuple[str, Endpoint, BuiltTransaction, Awaitable[JobOutcome]]] = []
        for lander in self.landers:
            built = tx.jito if lander == "jito" else tx.rpc
            if built is None:
                continue
            if not self._first_time(f"{lander}:{built.signature}"):
                self.stats.duplicates += 1
                continue
            for ep in self._endpoints(lander):
                if self.dry_run:
                    ident = bundle_id_of([built.signature]) if lander == "jito" else built.signature
                    self.stats.dry_run_sends += 1
                    if self.metrics is not None:
                        self.metrics.lander_would_send(lander, ep.label)
                    log.info(
                        "dry run: would send %s to %s",
                        "bundle" if lander == "jito" else "transaction",
                        ep.label,
                        extra={
                            "lander": lander,
                            "endpoint": ep.label,
                            "ident": ident,
                            "size": built.size,
                            "signature": built.signature,
                            "mint": mint,
                        },
                    )
                    continue
                spec = (
                    self.upstreams.send_bundle(ep, [built.wire])
                    if lander == "jito"
                    else self.upstreams.send_transaction(ep, built.wire)
                )
                self.stats.lander_attempt(lander, ep.label)
                if self.metrics is not None:
                    self.metrics.lander_attempt(lander, ep.label)
                jobs.append((lander, ep, built, self.submit(spec)))
        receipts: list[Receipt] = []
        outcomes = await asyncio.gather(*(job for *_, job in jobs))
        for (lander, ep, built, _), out in zip(jobs, outcomes, strict=True):
            receipts.append(self._receipt(lander, ep, built, out))
        accepted = [r for r in receipts if r.accepted]
        if accepted:
            task = asyncio.create_task(self._follow(accepted, tx.last_valid_block_height))
            self._follows.add(task)
            task.add_done_callback(self._follows.discard)
        return receipts

    def _receipt(self, lander: str, ep: Endpoint, built: BuiltTransaction, out: JobOutcome) -> Receipt:
        if out.ok and isinstance(out.value, BundleAccepted | TxSent):
            ident = out.value.bundle_id if isinstance(out.value, BundleAccepted) else out.value.signature
            said = "sent to %s"
        elif not out.ok and _ALREADY_PROCESSED.search(out.error):
            # On chain already: an earlier send of these same bytes got there first (a job re-sent
            # after its worker died, another region, a previous run). Not a failure; follow it.
            ident = bundle_id_of([built.signature]) if lander == "jito" else built.signature
            said = "%s says already processed"
        else:
            self.stats.lander_failure(lander, ep.label)
            log.warning(
                "send to %s failed: %s %s",
                ep.label,
                out.result,
                out.error,
                extra={"lander": lander, "endpoint": ep.label, "local_ip": out.ip},
            )
            return Receipt(lander, ep.label, out.ip, built.signature, False, f"{out.result}: {out.error}")
        self.stats.lander_success(lander, ep.label)
        if self.metrics is not None:
            self.metrics.lander_success(lander, ep.label)
        log.info(
            said,
            ep.label,
            extra={
                "lander": lander,
                "endpoint": ep.label,
                "ident": ident,
                "local_ip": out.ip,
                "latency_ms": round(out.latency * 1000, 3),
            },
        )
        return Receipt(lander, ep.label, out.ip, ident, True)

    async def _follow(self, receipts: list[Receipt], last_valid: int) -> None:
        """Poll until every distinct bundle / signature has landed, failed or expired."""
        pending = {(r.lander, r.ident): r for r in receipts}
        deadline = asyncio.get_running_loop().time() + self.cfg.follow_timeout_s
        while pending:
            await asyncio.sleep(FOLLOW_EVERY)
            for key, r in list(pending.items()):
                state = await self._status(r)
                if state in ("landed", "failed"):
                    self._settle(r, state)
                    del pending[key]
            height = self.chain.block_height()
            expired = height is not None and height > last_valid
            if pending and (expired or asyncio.get_running_loop().time() > deadline):
                for r in pending.values():
                    self._settle(r, "expired")
                return

    async def _status(self, r: Receipt) -> str:
        if r.lander == "jito":
            ep = next(e for e in self.upstreams.jito if e.label == r.endpoint)
            out = await self.submit(self.upstreams.bundle_statuses(ep, [r.ident]))
            if out.ok and isinstance(out.value, BundleStatuses) and out.value.statuses:
                st = out.value.statuses[0]
                if st is not None:
                    return "failed" if st.err else "landed"
            return "pending"
        out = await self.submit(self.upstreams.signature_statuses([r.ident]))
        if out.ok and isinstance(out.value, SignatureStatuses) and out.value.statuses:
            sig = out.value.statuses[0]
            if sig is not None:
                return "failed" if sig.err else "landed"
        return "pending"

    def _settle(self, r: Receipt, state: str) -> None:
        self.stats.settled(r.lander, r.endpoint, state)
        if state == "landed" and self.metrics is not None:
            self.metrics.lander_landed(r.lander, r.endpoint)
        level = logging.INFO if state == "landed" else logging.WARNING
        log.log(level, "%s %s", r.ident[:16], state, extra={"lander": r.lander, "endpoint": r.endpoint})

    async def close(self, timeout: float = 5.0) -> None:
        if self._follows:
            _, pending = await asyncio.wait(set(self._follows), timeout=timeout)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
