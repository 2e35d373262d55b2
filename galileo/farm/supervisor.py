"""Supervision of local workers, gunicorn-style: spawn, watch, restart with backoff, retire.

* A worker that exits or is declared dead by the hub (silent for 3 heartbeats: a SIGSTOPped
  or stuck loop) is killed if still there and restarted, after 0.1 s doubling to 10 s when it
  keeps dying; 60 s of good health resets the backoff.
* A worker that dies before it ever registered is a boot failure; after 5 in a row its slot
  is marked ``failed`` and left alone: no restart loop.
* Retiring a slot drains its worker (finish in-flight, Bye, exit 0), SIGKILL after a grace.
* The fork server is itself kept running (:class:`ForkServer` restarts it), and a worker's exit
  is seen through a pidfd even when the fork server is not there to report it: a slot never
  says ``ready`` for a process that is gone, and a spawn that finds no fork server is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from broker.hub import Hub
from broker.types import WorkerInfo
from galileo.farm.forkserver import ForkServer, ForkServerError
from workers.main import WorkerArgs
from workers.secrets import SecretPolicy

__all__ = ["Slot", "Supervisor"]

log = logging.getLogger("galileo.supervisor")

BACKOFF_START = 0.1
BACKOFF_MAX = 10.0
HEALTHY_RESET = 60.0
MAX_BOOT_FAILURES = 5
RETIRE_GRACE = 10.0


@dataclass
class Slot:
    """One local worker's place in the farm, across its restarts."""

    worker_id: str
    ip: str
    bind: bool
    state: str = "starting"  # starting | ready | retiring | failed | stopped
    pid: int | None = None
    restarts: int = 0
    boot_failures: int = 0
    started: float = 0.0
    ready_at: float | None = None
    backoff: float = BACKOFF_START
    last_exit: int | None = None  # None also when it is unknown (its exit was seen without the fork server)
    restart_handle: asyncio.TimerHandle | None = field(default=None, repr=False)
    readd: bool | None = None  # retiring, and wanted again: start anew (with this bind) once it has exited


class Supervisor:
    """Runs one local worker per slot and keeps it running."""

    def __init__(
        self,
        hub: Hub,
        endpoint: str,
        *,
        capacity: int = 256,
        log_level: str = "info",
        log_format: str = "kv",
        clock: Callable[[], float] = time.monotonic,
        secrets: SecretPolicy | None = None,
    ) -> None:
        self.hub = hub
        self.secrets = secrets or SecretPolicy()  # what workers forked from now on may release
        self.endpoint = endpoint
        self.capacity = capacity
        self.log_level = log_level
        self.log_format = log_format
        self.clock = clock
        self.slots: dict[str, Slot] = {}
        self._by_pid: dict[int, Slot] = {}
        self.forkserver = ForkServer(self._on_exit)
        self._stopping = False
        hub.worker_up_hooks.append(self._on_up)
        hub.worker_down_hooks.append(self._on_down)

    @staticmethod
    def worker_id_for(ip: str) -> str:
        return f"local/{ip}"

    async def start(self, slots: list[tuple[str, bool]]) -> None:
        """Start the fork server, then a worker for each (ip, bind)."""
        await self.forkserver.start()
        for ip, bind in slots:
            await self.add(ip, bind)

    def _sync_expected(self) -> None:
        self.hub.expected_workers = sum(1 for s in self.slots.values() if s.state in ("starting", "ready"))

    async def add(self, ip: str, bind: bool = True) -> Slot:
        wid = self.worker_id_for(ip)
        slot = self.slots.get(wid)
        if slot is not None and slot.state in ("starting", "ready"):
            return slot
        if slot is not None and slot.state == "retiring" and slot.pid is not None:
            slot.readd = bind  # one process per worker id: the new one starts when this one has gone
            return slot
        slot = Slot(worker_id=wid, ip=ip, bind=bind)
        self.slots[wid] = slot
        self.hub.reserve(wid)  # no remote peer may register under a local worker's id
        await self._spawn(slot)
        return slot

    async def _spawn(self, slot: Slot) -> None:
        if self._stopping:
            return
        args = WorkerArgs(
            worker_id=slot.worker_id,
            ip=slot.ip,
            bind=slot.bind,
            endpoint=self.endpoint,
            capacity=self.capacity,
            coordinator_pid=os.getpid(),
            log_level=self.log_level,
            log_format=self.log_format,
            secrets=self.secrets,
        )
        slot.state = "starting"
        slot.started = self.clock()
        slot.ready_at = None
        try:
            pid = await self.forkserver.spawn(args)
        except ForkServerError as exc:
            if self._stopping or self.slots.get(slot.worker_id) is not slot or slot.state != "starting":
                return
            # Not the worker's fault: try again once the fork server is back, and keep the slot.
            delay = slot.backoff
            slot.backoff = min(BACKOFF_MAX, slot.backoff * 2)
            log.warning(
                "cannot start worker for %s yet (%s); retrying in %.1fs",
                slot.ip,
                exc,
                delay,
                extra={"local_ip": slot.ip},
            )
            loop = asyncio.get_running_loop()
            slot.restart_handle = loop.call_later(delay, lambda: loop.create_task(self._spawn(slot)))
            return
        slot.pid = pid
        self._by_pid[pid] = slot
        self._sync_expected()
        w = self.hub.workers.get(slot.worker_id)
        if w is not None and w.pid == pid:  # its Ready arrived before the fork server's answer
            self._on_up(w, "ready")

    async def retire(self, ip: str, reason: str = "retired") -> bool:
        """Drain and stop the worker of ``ip``; its slot is removed when it exits."""
        slot = self.slots.get(self.worker_id_for(ip))
        if slot is None:
            return False
        if slot.restart_handle:
            slot.restart_handle.cancel()
        slot.readd = None
        if slot.pid is None or slot.state in ("failed", "stopped"):
            del self.slots[slot.worker_id]
            self._sync_expected()
            return True
        slot.state = "retiring"
        self._sync_expected()
        self.hub.retire(slot.worker_id, reason)
        if slot.worker_id not in self.hub.workers:
            self._signal(slot, signal.SIGTERM)
        pid = slot.pid
        asyncio.get_running_loop().call_later(RETIRE_GRACE, self._kill_if, pid, slot)
        return True

    def _kill_if(self, pid: int, slot: Slot) -> None:
        if slot.pid == pid:
            self._signal(slot, signal.SIGKILL)

    def _signal(self, slot: Slot, sig: int) -> None:
        if slot.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, sig)

    # --- events -----------------------------------------------------------------------

    def _on_up(self, w: WorkerInfo, _: str) -> None:
        slot = self.slots.get(w.worker_id)
        if slot is None or slot.pid != w.pid:
            return
        slot.ready_at = self.clock()
        slot.boot_failures = 0
        if slot.state == "starting":
            slot.state = "ready"

    def _on_down(self, w: WorkerInfo, reason: str) -> None:
        slot = self.slots.get(w.worker_id)
        if slot is None or slot.pid != w.pid or self._stopping:
            return
        if w.state == "draining":
            return  # it is leaving by itself (Drain or SIGTERM); its exit is handled when it comes
        if slot.state == "ready":
            # Silent or unreachable but maybe alive (a stopped or stuck loop): make sure it is gone.
            log.warning("killing unresponsive worker %s: %s", w.worker_id, reason, extra={"local_ip": w.ip})
            self._signal(slot, signal.SIGKILL)

    def _on_exit(self, pid: int, code: int | None) -> None:
        slot = self._by_pid.pop(pid, None)
        if slot is None:
            return
        slot.pid = None
        slot.last_exit = code
        # Its jobs go to other IPs now, before a replacement registers; the pid says which process
        # of the slot it was (the hub may still hold an older or newer one under the same id).
        self.hub.lost(slot.worker_id, f"process exited with {'?' if code is None else code}", pid=pid)
        if self._stopping:
            slot.state = "stopped"
            return
        if slot.state == "retiring":
            if self.slots.get(slot.worker_id) is slot:
                del self.slots[slot.worker_id]
            self._sync_expected()
            log.info("worker retired", extra={"local_ip": slot.ip, "exit_code": code})
            if slot.readd is not None:
                asyncio.get_running_loop().create_task(self.add(slot.ip, slot.readd))
            return
        now = self.clock()
        if slot.ready_at is None:
            slot.boot_failures += 1
            if slot.boot_failures >= MAX_BOOT_FAILURES:
                slot.state = "failed"
                self._sync_expected()
                log.error(
                    "worker for %s failed to boot %d times in a row (last exit %s); not restarting it",
                    slot.ip,
                    slot.boot_failures,
                    code,
                    extra={"local_ip": slot.ip},
                )
                return
        elif now - slot.ready_at > HEALTHY_RESET:
            slot.backoff = BACKOFF_START
        delay = slot.backoff
        slot.backoff = min(BACKOFF_MAX, slot.backoff * 2)
        slot.restarts += 1
        slot.state = "starting"
        log.warning(
            "worker exited with %s; restarting in %.1fs",
            "?" if code is None else code,
            delay,
            extra={"local_ip": slot.ip, "restarts": slot.restarts},
        )
        loop = asyncio.get_running_loop()
        slot.restart_handle = loop.call_later(delay, lambda: loop.create_task(self._spawn(slot)))

    # --- shutdown ---------------------------------------------------------------------

    def stopping(self) -> None:
        """The farm is shutting down: workers leaving now are not failures to act on."""
        self._stopping = True

    async def stop(self, grace: float = 10.0) -> None:
        """Stop every worker: they were drained by the hub; TERM, then KILL the stragglers."""
        self._stopping = True
        for slot in self.slots.values():
            if slot.restart_handle:
                slot.restart_handle.cancel()
            self._signal(slot, signal.SIGTERM)
        deadline = self.clock() + grace
        while self._by_pid and self.clock() < deadline:
            await asyncio.sleep(0.02)
        for slot in list(self._by_pid.values()):
            log.warning("worker did not stop in %.0fs; killing it", grace, extra={"local_ip": slot.ip})
            self._signal(slot, signal.SIGKILL)
        kill_deadline = self.clock() + 2.0
        while self._by_pid and self.clock() < kill_deadline:
            await asyncio.sleep(0.02)
        await self.forkserver.close()
