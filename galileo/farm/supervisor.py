"""Supervision of local workers, gunicorn-style: spawn, watch, restart with backoff, retire.

* A worker that exits or is declared dead by the hub (silent for 3 heartbeats: a SIGSTOPped
  or stuck loop) is killed if still there and restarted, after 0.1 s doubling to 10 s when it
  keeps dying; 60 s of good health resets the backoff.
* A worker that dies before it ever registered is a boot failure; after 5 in a row its slot
  is marked ``failed`` and left alone: no restart loop.
* Retiring a slot drains its worker (finish in-flight, Bye, exit 0), SIGKILL after a grace.
* With ``ips_per_process`` above 1, the slots started together share processes, that many per
  process (each still its own worker to the hub). A process's death is each of its slots'
  death: they restart together, in one new process. Retiring one slot of a shared process
  drains just that worker; the process keeps serving the others. Slots added later
  (``farm scale --add``, a rescan) get a process each.
* The fork server is itself kept running (:class:`ForkServer` restarts it), and a worker's exit
  is seen through a pidfd even when the fork server is not there to report it: a slot never
  says ``ready`` for a process that is gone, and a spawn that finds no fork server is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

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
    retire_reason: str = ""


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, as ``taskset`` or a container's cpuset
    leaves it), not every CPU the host has."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def per_process(setting: int | str, ips: int, cpus: int | None = None) -> int:
    """How many IPs each worker process serves: ``setting`` itself, or for ``"auto"`` enough that
    there are about 4 processes per CPU (one process per IP up to that)."""
    if isinstance(setting, int):
        return max(1, setting)
    return max(1, math.ceil(ips / (4 * (cpus or usable_cpus()))))


class Supervisor:
    """Runs each slot's local worker, in a process of its own or sharing one, and keeps it running."""

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
        ips_per_process: int | str = "auto",
    ) -> None:
        self.hub = hub
        self.ips_per_process = ips_per_process
        self.secrets = secrets or SecretPolicy()  # what workers forked from now on may release
        self.endpoint = endpoint
        self.capacity = capacity
        self.log_level = log_level
        self.log_format = log_format
        self.clock = clock
        self.slots: dict[str, Slot] = {}
        self._by_pid: dict[int, list[Slot]] = {}  # a process's slots, while it runs
        self.forkserver = ForkServer(self._on_exit)
        self._stopping = False
        self._tasks: set[asyncio.Task[object]] = set()
        hub.worker_up_hooks.append(self._on_up)
        hub.worker_down_hooks.append(self._on_down)

    @staticmethod
    def worker_id_for(ip: str) -> str:
        return f"local/{ip}"

    async def start(self, slots: list[tuple[str, bool]]) -> None:
        """Start the fork server, then a worker for each (ip, bind), ``ips_per_process`` to a process."""
        await self.forkserver.start()
        k = per_process(self.ips_per_process, len(slots))
        group: list[Slot] = []
        for ip, bind in slots:
            slot = self._new_slot(ip, bind)
            if slot is not None:
                group.append(slot)
            if len(group) >= k:
                await self._spawn(group)
                group = []
        if group:
            await self._spawn(group)

    def _sync_expected(self) -> None:
        self.hub.expected_workers = sum(1 for s in self.slots.values() if s.state in ("starting", "ready"))

    def _new_slot(self, ip: str, bind: bool) -> Slot | None:
        """A slot for ``ip`` to start, or None when it has one already (or will have once its
        draining worker has gone)."""
        wid = self.worker_id_for(ip)
        slot = self.slots.get(wid)
        if slot is not None and slot.state in ("starting", "ready"):
            return None
        if slot is not None and slot.state == "retiring" and slot.pid is not None:
            slot.readd = bind  # one process per worker id: the new one starts when this one has gone
            return None
        slot = Slot(worker_id=wid, ip=ip, bind=bind)
        self.slots[wid] = slot
        self.hub.reserve(wid)  # no remote peer may register under a local worker's id
        return slot

    async def add(self, ip: str, bind: bool = True) -> Slot:
        slot = self._new_slot(ip, bind)
        if slot is None:
            return self.slots[self.worker_id_for(ip)]
        await self._spawn([slot])
        return slot

    def _args(self, slot: Slot) -> WorkerArgs:
        return WorkerArgs(
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

    def _wanted(self, slot: Slot) -> bool:
        return self.slots.get(slot.worker_id) is slot and slot.state == "starting" and slot.pid is None

    async def _spawn(self, slots: list[Slot]) -> None:
        """Start one process serving ``slots`` (those still waiting for one)."""
        if self._stopping:
            return
        for slot in slots:
            slot.state = "starting"
            slot.started = self.clock()
            slot.ready_at = None
        try:
            pid = await self.forkserver.spawn([self._args(s) for s in slots])
        except ForkServerError as exc:
            slots = [s for s in slots if self._wanted(s)]
            if self._stopping or not slots:
                return
            # Not the workers' fault: try again once the fork server is back, and keep the slots.
            delay = self._respawn_later(slots)
            log.warning(
                "cannot start worker for %s yet (%s); retrying in %.1fs",
                ", ".join(s.ip for s in slots),
                exc,
                delay,
                extra={"local_ip": slots[0].ip},
            )
            return
        self._by_pid[pid] = slots
        for slot in slots:
            slot.pid = pid
            if self.slots.get(slot.worker_id) is not slot:
                slot.state = "retiring"  # retired while its process was starting: it leaves once registered
        if all(s.state == "retiring" for s in slots):
            self._signal(slots[0], signal.SIGTERM)
        self._sync_expected()
        for slot in slots:
            w = self.hub.workers.get(slot.worker_id)
            if w is not None and w.pid == pid:  # its Ready arrived before the fork server's answer
                self._on_up(w, "ready")

    def _respawn_later(self, slots: list[Slot]) -> float:
        """Start ``slots`` again in one process after the longest of their backoffs (each doubles);
        returns that delay. A slot retired meanwhile is left out then."""
        delay = max(s.backoff for s in slots)
        for slot in slots:
            slot.backoff = min(BACKOFF_MAX, slot.backoff * 2)

        def again() -> None:
            wanted = [s for s in slots if self._wanted(s)]
            if wanted:
                self._background(self._spawn(wanted))

        handle = asyncio.get_running_loop().call_later(delay, again)
        for slot in slots:
            slot.restart_handle = handle
        return delay

    def _background(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _shares_process(self, slot: Slot) -> bool:
        """Whether ``slot``'s process serves other slots that are not leaving."""
        return slot.pid is not None and any(
            s is not slot and s.state != "retiring" for s in self._by_pid.get(slot.pid, ())
        )

    async def retire(self, ip: str, reason: str = "retired") -> bool:
        """Drain and stop the worker of ``ip``; its slot is removed when it exits."""
        slot = self.slots.get(self.worker_id_for(ip))
        if slot is None:
            return False
        slot.readd = None  # (a restart it was waiting for leaves it out: see _respawn_later)
        slot.retire_reason = reason
        if slot.pid is None or slot.state in ("failed", "stopped"):
            del self.slots[slot.worker_id]
            self._sync_expected()
            return True
        shared = self._shares_process(slot)
        slot.state = "retiring"
        self._sync_expected()
        self.hub.retire(slot.worker_id, reason)
        if slot.worker_id not in self.hub.workers and not shared:
            self._signal(slot, signal.SIGTERM)  # (a shared process's worker is told when it registers)
        pid = slot.pid
        asyncio.get_running_loop().call_later(RETIRE_GRACE, self._kill_if, pid, slot)
        return True

    def _kill_if(self, pid: int, slot: Slot) -> None:
        if slot.pid == pid and slot.state == "retiring":
            # Still not gone after the grace (its own drain grace is as long): end its process,
            # others in it included; they restart as after any death.
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
        elif slot.state == "retiring" and w.state != "draining":
            self.hub.retire(slot.worker_id, slot.retire_reason)  # retired before it had registered

    def _on_down(self, w: WorkerInfo, reason: str) -> None:
        slot = self.slots.get(w.worker_id)
        if slot is None or slot.pid != w.pid or self._stopping:
            return
        if w.state == "draining":
            if slot.state == "retiring" and self._shares_process(slot):
                self._retired(slot)  # its process serves on without it
            return  # it is leaving by itself (Drain or SIGTERM); its exit is handled when it comes
        if slot.state == "ready":
            # Silent or unreachable but maybe alive (a stopped or stuck loop): make sure it is gone.
            log.warning("killing unresponsive worker %s: %s", w.worker_id, reason, extra={"local_ip": w.ip})
            self._signal(slot, signal.SIGKILL)

    def _retired(self, slot: Slot, code: int | None = None) -> None:
        """``slot``'s worker has left for good: forget the slot, and start anew if wanted again."""
        if slot.pid is not None:
            rest = [s for s in self._by_pid.get(slot.pid, ()) if s is not slot]
            if rest:
                self._by_pid[slot.pid] = rest
            slot.pid = None
        if self.slots.get(slot.worker_id) is slot:
            del self.slots[slot.worker_id]
        self._sync_expected()
        log.info("worker retired", extra={"local_ip": slot.ip, "exit_code": code})
        if slot.readd is not None:
            self._background(self.add(slot.ip, slot.readd))

    def _on_exit(self, pid: int, code: int | None) -> None:
        slots = self._by_pid.pop(pid, None)
        if slots is None:
            return
        restart: list[Slot] = []
        for slot in slots:
            slot.pid = None
            slot.last_exit = code
            # Its jobs go to other IPs now, before a replacement registers; the pid says which process
            # of the slot it was (the hub may still hold an older or newer one under the same id).
            self.hub.lost(slot.worker_id, f"process exited with {'?' if code is None else code}", pid=pid)
            if self._stopping:
                slot.state = "stopped"
            elif slot.state == "retiring":
                self._retired(slot, code)
            elif self._restartable(slot, code):
                restart.append(slot)
        if not restart:
            return
        for slot in restart:
            slot.restarts += 1
            slot.state = "starting"
        delay = self._respawn_later(restart)
        log.warning(
            "worker exited with %s; restarting in %.1fs",
            "?" if code is None else code,
            delay,
            extra={"local_ip": ",".join(s.ip for s in restart), "restarts": max(s.restarts for s in restart)},
        )

    def _restartable(self, slot: Slot, code: int | None) -> bool:
        """Count a boot failure (or reset the backoff after long health); False once it keeps failing."""
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
                return False
        elif self.clock() - slot.ready_at > HEALTHY_RESET:
            slot.backoff = BACKOFF_START
        return True

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
        for slots in self._by_pid.values():
            self._signal(slots[0], signal.SIGTERM)
        deadline = self.clock() + grace
        while self._by_pid and self.clock() < deadline:
            await asyncio.sleep(0.02)
        for slots in list(self._by_pid.values()):
            ips = ",".join(s.ip for s in slots)
            log.warning("worker did not stop in %.0fs; killing it", grace, extra={"local_ip": ips})
            self._signal(slots[0], signal.SIGKILL)
        kill_deadline = self.clock() + 2.0
        while self._by_pid and self.clock() < kill_deadline:
            await asyncio.sleep(0.02)
        await self.forkserver.close()
