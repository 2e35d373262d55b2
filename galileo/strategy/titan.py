"""Titan streams: planned per IP, long-lived, shared, and always coming back.

* **Plan**: the buy legs Titan should quote (base -> intermediate at each size) are spread
  over the IPs round robin, at most ``titan_stream_limit`` (2) per IP; sizes beyond
  ``limit x IPs`` get no stream (their batches simply have no Titan leg).
* **Shared lease**: each stream is one long-lived job on its worker, holding one of that
  worker's credits; the IP keeps serving every other job. The WebSocket is opened through
  the worker's bound session, so it leaves from the worker's address.
* **Renewal**: a stream job runs ``stream_seconds`` and is then resubmitted; one that saw no
  update for ``idle_resubscribe_ms`` ends and is resubscribed at once; one lost with its worker
  (SIGKILL) is resubmitted at once, on its planned IP if that worker is back, else on another;
  a failed one is retried after 1 s doubling to 30 s, reset by the next update.
* **Quotes**: every update is kept as the latest quote of its stream; a batch asks for the
  latest one (waiting a little for the first). ``titan_debounce_ms`` keeps a stream from
  feeding more than one batch per interval with the same quote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from broker.protocol import Event
from broker.results import TitanQuote
from broker.types import JobSpec
from galileo.client import FarmClient
from galileo.upstreams import QuoteRequest, Upstreams

__all__ = ["StreamSlot", "TitanStreams", "plan_streams"]

log = logging.getLogger("galileo.titan")

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
STALE_AFTER = 10.0  # seconds without an update before a stream's last quote is not used

Key = tuple[str, str, int]


def plan_streams(wants: Sequence[QuoteRequest], ips: Sequence[str], per_ip: int) -> dict[Key, str]:
    """Assign each wanted stream an IP, round robin, at most ``per_ip`` each. Pure and deterministic."""
    plan: dict[Key, str] = {}
    load = dict.fromkeys(ips, 0)
    order = list(ips)
    i = 0
    for req in sorted(set(wants), key=lambda r: (r.input_mint, r.output_mint, r.amount)):
        placed = False
        for _ in range(len(order)):
            ip = order[i % len(order)]
            i += 1
            if load[ip] < per_ip:
                plan[(req.input_mint, req.output_mint, req.amount)] = ip
                load[ip] += 1
                placed = True
                break
        if not placed:
            break  # every IP is full
    return plan


@dataclass
class StreamSlot:
    request: QuoteRequest
    ip: str  # planned
    serving_ip: str | None = None  # where its job runs now
    latest: TitanQuote | None = None
    updated: float = float("-inf")
    consumed: float = float("-inf")
    backoff: float = BACKOFF_START
    restarts: int = 0
    updates: int = 0
    fresh: asyncio.Event = field(default_factory=asyncio.Event)


class TitanStreams:
    def __init__(self, farm: FarmClient, upstreams: Upstreams, user: str, *, per_ip: int, debounce_ms: int) -> None:
        self.farm = farm
        self.upstreams = upstreams
        self.user = user
        self.per_ip = per_ip
        self.debounce = debounce_ms / 1000
        self.slots: dict[Key, StreamSlot] = {}
        self._by_spec: dict[int, StreamSlot] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self, wants: Sequence[QuoteRequest]) -> None:
        """Plan the streams over the IPs eligible for Titan now, and keep each one open."""
        self.farm.watch_events(self.on_event)
        plan = plan_streams(wants, [lane.ip for lane in self.farm.eligible("titan")], self.per_ip)
        by_key = {(r.input_mint, r.output_mint, r.amount): r for r in wants}
        for key, ip in plan.items():
            slot = StreamSlot(by_key[key], ip)
            self.slots[key] = slot
            self._tasks.append(asyncio.create_task(self._keep(slot), name=f"titan-{key[2]}@{ip}"))
        log.info("titan: %d stream(s) over %d IP(s)", len(plan), len(set(plan.values())))

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def on_event(self, spec: JobSpec, ip: str, event: Event) -> None:
        """A stream update (the farm calls this for every job event)."""
        slot = self._by_spec.get(id(spec))
        if slot is None or event.name != "quote" or not isinstance(event.value, TitanQuote):
            return
        slot.latest = event.value
        slot.updated = time.monotonic()
        slot.serving_ip = ip
        slot.updates += 1
        slot.backoff = BACKOFF_START
        slot.fresh.set()

    def stopping(self) -> bool:
        return self._stopping

    async def _keep(self, slot: StreamSlot) -> None:
        while not self.stopping():
            spec = self.upstreams.titan_stream(slot.request, self.user, prefer_ip=slot.ip)
            self._by_spec[id(spec)] = slot
            try:
                out = await self.farm.submit(spec)
            finally:
                self._by_spec.pop(id(spec), None)
            slot.serving_ip = None
            if self.stopping():  # stop() may have run while the job was out
                return
            slot.restarts += 1
            if out.ok or out.result in ("worker_lost", "cancelled"):
                continue  # renewed, resubscribed after idling, or its worker died: again, now
            log.warning(
                "titan stream %d@%s ended: %s %s; retrying in %.0fs",
                slot.request.amount,
                slot.ip,
                out.result,
                out.error,
                slot.backoff,
                extra={"local_ip": out.ip, "upstream": "titan"},
            )
            await asyncio.sleep(slot.backoff)
            slot.backoff = min(BACKOFF_MAX, slot.backoff * 2)

    async def quote_for(self, req: QuoteRequest, wait: float) -> tuple[TitanQuote, str] | None:
        """The latest quote of the stream for ``req`` and the IP serving it (None: no stream / no quote)."""
        slot = self.slots.get((req.input_mint, req.output_mint, req.amount))
        if slot is None:
            return None
        now = time.monotonic()
        if slot.latest is not None and now - slot.updated > STALE_AFTER:
            slot.latest = None  # its stream went quiet: an old price is worse than none
        if slot.latest is None or now - slot.consumed < self.debounce:
            slot.fresh.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slot.fresh.wait(), wait)
        if slot.latest is None:
            return None
        slot.consumed = time.monotonic()
        return slot.latest, slot.serving_ip or slot.ip

    def streams_by_ip(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.slots.values():
            if s.serving_ip:
                out[s.serving_ip] = out.get(s.serving_ip, 0) + 1
        return out
