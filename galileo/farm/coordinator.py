"""The coordinator: the IP inventory, the hub, the supervisor, the control socket, in one process.

It owns everything stateful about the farm: which IPs exist, which worker serves each, the
policy's cooldowns and pacing, and the ledger of outcomes. Strategies and landing use it
as a :class:`galileo.client.FarmClient` (submit, run, eligible, watch_events); operators
talk to it through the control socket (``galileo farm stats``, ``galileo farm scale``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from broker.hub import Hub
from broker.types import JobOutcome, JobSpec
from galileo.client import EventHook
from galileo.config import GalileoConfig
from galileo.farm.counters import IpCounters
from galileo.farm.lock import FarmLock
from galileo.farm.rundir import RuntimeDir, check_socket, prepare, private_umask
from galileo.farm.secrets import worker_secrets
from galileo.farm.supervisor import Supervisor
from galileo.inventory import Inventory, probe_bind, scan
from galileo.policy.allocator import FarmPolicy, Lane

__all__ = ["Farm", "FarmError", "HeldOut", "ScaleResult"]

log = logging.getLogger("galileo.farm")


class FarmError(RuntimeError):
    """The farm cannot start (lock held, sockets, CURVE keys)."""


@dataclass(frozen=True, slots=True)
class HeldOut:
    """An address ``galileo farm scale --remove`` took out: no rescan brings it back, only ``--add``."""

    reason: str
    since: float  # wall clock, for people


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """What one ``farm scale`` change did; ``ok`` False means nothing changed, and ``message`` says why."""

    ip: str
    ok: bool
    message: str


class Farm:
    """A running coordinator. ``async with Farm(cfg, runtime_dir=...) as farm: await farm.submit(...)``."""

    def __init__(
        self,
        cfg: GalileoConfig,
        *,
        runtime_dir: Path,
        inventory: Inventory | None = None,
        policy: FarmPolicy | None = None,
        capacity: int = 256,
        log_level: str = "info",
        log_format: str = "kv",
        rescan_every: float = 30.0,
        config_loader: Callable[[], Awaitable[GalileoConfig]] | None = None,
        runtime_source: str = "runtime_dir",
    ) -> None:
        self.cfg = cfg
        self.runtime_dir = runtime_dir
        self.runtime_source = runtime_source
        self.inventory = inventory
        self.policy = policy or FarmPolicy(
            known_rates=known_rates(cfg),
            keyed=keyed_upstreams(cfg),
            known_shared=known_key_rates(cfg),
            rng=random.Random(),
        )
        self.capacity = capacity
        self.log_level = log_level
        self.log_format = log_format
        self.rescan_every = rescan_every
        self.config_loader = config_loader
        self.lock = FarmLock(runtime_dir)
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.hub = Hub(self.policy, ctx=self.ctx)
        self.counters = IpCounters()
        self.hub.attempt_hooks.append(self.counters.on_attempt)
        self.worker_endpoint = f"ipc://{runtime_dir / 'workers.sock'}"
        self.supervisor = Supervisor(
            self.hub,
            self.worker_endpoint,
            capacity=capacity,
            log_level=log_level,
            log_format=log_format,
            secrets=worker_secrets(cfg),
            ips_per_process=cfg.farm.ips_per_process,
        )
        self.policy.suspend_hooks.append(self._on_suspend)
        # Cheap to attach (no port opens): the runner serves /metrics when bot.prometheus says so.
        from galileo.farm.events import NetworkEventLog
        from galileo.metrics import FarmMetrics

        self.metrics = FarmMetrics()
        self.metrics.attach(self)
        self.events = NetworkEventLog()
        self.events.attach(self.hub)
        self.started_at = time.monotonic()
        self._auth: Any = None
        self._control: Any = None
        self._rescan_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._manual_manage = inventory is not None
        self.held_out: dict[str, HeldOut] = {}  # scale --remove: out until scale --add, whatever a rescan finds
        self.added: set[str] = set()  # scale --add: kept whether or not the inventory lists them
        self._rescanning = asyncio.Lock()
        self._reloading = asyncio.Lock()

    # --- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Farm:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            prepare(RuntimeDir(self.runtime_dir, self.runtime_source))  # ours, 0700, no symlink: or refused
            self.lock.acquire()
            if self.inventory is None:
                self.inventory = scan(self.cfg.bot.network)
            with private_umask():
                self.hub.bind(self.worker_endpoint)
            check_socket(self.runtime_dir / "workers.sock")
            if self.cfg.farm.listen:
                self._listen_remote()
            await self.hub.start()
            from galileo.farm.control import ControlServer

            self._control = ControlServer(self, self.ctx, self.runtime_dir / "control.sock")
            self._control.start()
            await self.supervisor.start([(r.ip, r.bind) for r in self.inventory.usable])
            self._rescan_task = asyncio.create_task(self._rescan_forever(), name="farm-rescan")
        except BaseException:
            await self.stop()
            raise
        log.info(
            "farm started",
            extra={"workers": len(self.inventory.usable), "endpoint": self.worker_endpoint},
        )

    def _listen_remote(self) -> None:
        farm = self.cfg.farm
        assert farm.listen is not None
        if not farm.server_secret_key_path or not farm.authorized_keys_dir:
            raise FarmError(
                f"farm.listen is {farm.listen}: remote workers need CURVE; set farm.server_secret_key_path "
                "and farm.authorized_keys_dir (create keys with `galileo keys gen`)"
            )
        from broker.auth import KeyRing

        self._auth = KeyRing(self.ctx)
        try:
            self._auth.load(farm.authorized_keys_dir)
        except OSError as exc:
            raise FarmError(f"farm.authorized_keys_dir: cannot read {farm.authorized_keys_dir}: {exc}") from None
        self._auth.start()  # before the socket binds: without a ZAP handler libzmq would let any key in
        try:
            self.hub.bind(farm.listen, curve_secret_key_path=farm.server_secret_key_path)
        except (OSError, ValueError) as exc:
            raise FarmError(f"farm.server_secret_key_path: {exc}") from None
        except zmq.ZMQError as exc:
            raise FarmError(f"farm.listen: cannot listen on {farm.listen}: {exc.strerror}") from None

    async def reload_keys(self) -> None:
        """Read ``farm.authorized_keys_dir`` again (off the loop): new keys may connect from now on,
        and the workers of a removed key are dropped at once (their next connection is refused)."""
        directory = self.cfg.farm.authorized_keys_dir
        if self._auth is None or directory is None:
            return
        try:
            added, removed = await asyncio.to_thread(self._auth.load, directory)
        except OSError as exc:
            log.error("farm.authorized_keys_dir: cannot read %s, keeping the keys loaded before: %s", directory, exc)
            return
        for key in added:
            self.hub.restore(key)
        for key in removed:
            self.hub.revoke(key, "this host's key was removed from the coordinator's farm.authorized_keys_dir")

    async def wait_ready(self, timeout: float = 10.0, count: int | None = None) -> bool:
        """True once ``count`` workers (default: every slot) are registered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            want = count if count is not None else self.hub.expected_workers
            if want and len(self.hub.workers) >= want:
                return True
            await asyncio.sleep(0.01)
        return False

    async def stop(self, grace: float = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self.metrics.close()
        if self._rescan_task:
            self._rescan_task.cancel()
            await asyncio.gather(self._rescan_task, return_exceptions=True)
        self.supervisor.stopping()
        await self.hub.close(grace)
        await self.supervisor.stop()
        if self._control is not None:
            self._control.close()
        if self._auth is not None:
            self._auth.stop()
        self.ctx.destroy(linger=0)
        if self.lock.held:  # ours to remove: `farm stats` then says "not running" at once
            for name in ("control.sock", "workers.sock"):
                with contextlib.suppress(FileNotFoundError):
                    (self.runtime_dir / name).unlink()
        self.lock.release()
        log.info("farm stopped", extra={"results": dict(self.hub.counts)})

    # --- jobs ------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> asyncio.Future[JobOutcome]:
        return self.hub.submit(spec)

    def eligible(self, upstream: str) -> list[Lane]:
        """IPs eligible for ``upstream`` (ready, not cooling, not suspended), each with what it can carry."""
        return self.policy.lanes(self.hub.workers, upstream, time.monotonic())

    def watch_events(self, hook: EventHook) -> None:
        """Call ``hook(spec, ip, event)`` for every event a running job reports (Titan stream updates)."""
        self.hub.event_hooks.append(lambda job, worker, event: hook(job.spec, worker.ip, event))

    async def run(self, spec: JobSpec) -> JobOutcome:
        return await self.hub.submit(spec)

    # --- the IP pool -----------------------------------------------------------------

    def _remote_host(self, ip: str) -> str | None:
        """The host of a worker from another host serving ``ip``, if one does."""
        local = self.supervisor.worker_id_for(ip)
        for w in self.hub.workers.values():
            if w.ip == ip and w.worker_id != local:
                return w.host
        return None

    async def scale_add(self, ip: str) -> ScaleResult:
        """Start a worker on ``ip`` and keep it (a rescan will not retire it), or say why not."""
        slot = self.supervisor.slots.get(self.supervisor.worker_id_for(ip))
        if slot is not None and slot.state in ("starting", "ready"):
            pid = f", pid {slot.pid}" if slot.pid else ""
            return ScaleResult(ip, False, f"{ip}: already has a worker ({slot.state}{pid})")
        remote = self._remote_host(ip)
        if remote is not None:
            return ScaleResult(ip, False, f"{ip}: already served by a worker joined from {remote}")
        failure = probe_bind(ip)
        if failure:
            return ScaleResult(ip, False, f"{ip}: {failure}")
        was = self.held_out.pop(ip, None)
        self.added.add(ip)
        self.policy.cooldowns.unsuspend(ip)
        slot = await self.supervisor.add(ip, True)
        note = " (no longer held out)" if was else ""
        if slot.state == "retiring":
            return ScaleResult(ip, True, f"{ip}: a new worker starts once the draining one has stopped{note}")
        return ScaleResult(ip, True, f"{ip}: worker starting{note}")

    async def scale_remove(self, ip: str) -> ScaleResult:
        """Drain ``ip``'s worker and hold the address out until ``scale_add``, or say why not."""
        held = self.held_out.get(ip)
        if held is not None:
            return ScaleResult(ip, False, f"{ip}: already held out ({held.reason})")
        remote = self._remote_host(ip)
        slot = self.supervisor.slots.get(self.supervisor.worker_id_for(ip))
        known = ip in self.added or ip in self.policy.cooldowns.suspended
        known = known or any(r.ip == ip for r in (self.inventory.usable if self.inventory else ()))
        if slot is None and not known:
            if remote is not None:
                return ScaleResult(ip, False, f"{ip}: served by a worker joined from {remote}; stop it on that host")
            return ScaleResult(ip, False, f"{ip}: not an address of this farm")
        self.held_out[ip] = HeldOut("removed with `galileo farm scale --remove`", time.time())
        self.added.discard(ip)
        if slot is not None and await self.supervisor.retire(ip, "removed by operator"):
            return ScaleResult(ip, True, f"{ip}: worker draining; held out until `galileo farm scale --add {ip}`")
        return ScaleResult(ip, True, f"{ip}: held out until `galileo farm scale --add {ip}` (it had no worker)")

    def _on_suspend(self, ip: str, why: str) -> None:
        log.warning(
            "address %s cannot be bound (%s): retiring its worker until a rescan finds it",
            ip,
            why,
            extra={"local_ip": ip},
        )
        asyncio.get_running_loop().create_task(self.supervisor.retire(ip, f"suspended: {why}"))

    async def reload(self) -> list[str]:
        """Re-read the config (off the event loop, bounded in time) and rescan. A bad config is logged
        and the one in use stays."""
        if self.config_loader is not None:
            from galileo.config import ConfigError
            from galileo.farm.reload import ReloadError

            try:
                async with self._reloading:
                    cfg = await self.config_loader()
            except (ConfigError, ReloadError) as exc:
                log.error("config reload failed, keeping the old one: %s", exc)
            else:
                self.cfg = cfg
                secrets = worker_secrets(cfg)
                if secrets != self.supervisor.secrets:
                    log.warning("the upstreams' secrets or hosts changed: workers started from now on use them")
                self.supervisor.secrets = secrets
        await self.reload_keys()
        return await self.rescan()

    async def rescan(self) -> list[str]:
        """Re-read the interfaces; add and retire workers. Addresses held out by ``farm scale --remove``
        stay out, and those added by ``--add`` stay in."""
        async with self._rescanning:
            if self._manual_manage:
                wanted = {r.ip: r.bind for r in (self.inventory.usable if self.inventory else [])}
            else:
                self.inventory = await asyncio.to_thread(scan, self.cfg.bot.network)
                wanted = {r.ip: r.bind for r in self.inventory.usable}
            for ip in self.added:
                wanted.setdefault(ip, True)
            for ip in self.held_out:
                wanted.pop(ip, None)
            changes: list[str] = []
            running = {s.ip for s in self.supervisor.slots.values() if s.state in ("starting", "ready")}
            for ip, bind in wanted.items():
                if ip in self.policy.cooldowns.suspended and probe_bind(ip) is None:
                    self.policy.cooldowns.unsuspend(ip)
                if ip not in running and ip not in self.policy.cooldowns.suspended:
                    await self.supervisor.add(ip, bind)
                    changes.append(f"+{ip}")
            for ip in running - set(wanted):
                await self.supervisor.retire(ip, "held out" if ip in self.held_out else "address gone")
                self.policy.forget_ip(ip)
                changes.append(f"-{ip}")
            if changes:
                log.info("rescan: %s", " ".join(changes))
            return changes

    async def _rescan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.rescan_every)
            try:
                await self.rescan()
            except Exception:
                log.exception("rescan failed")

    # --- stats -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything ``galileo farm stats`` shows, as plain data."""
        from galileo.farm.stats import farm_snapshot

        return farm_snapshot(self)


def known_rates(cfg: GalileoConfig) -> dict[str, float]:
    """Per-IP rate limits the operator told us, keyed like the jobs' upstreams."""
    from galileo.upstreams import Upstreams

    return Upstreams(cfg).known_rates()


def keyed_upstreams(cfg: GalileoConfig) -> set[str]:
    """Upstreams that send an API key: pacing takes their budget as one, shared by every IP."""
    from galileo.upstreams import Upstreams

    return Upstreams(cfg).keyed()


def known_key_rates(cfg: GalileoConfig) -> dict[str, float]:
    """Per-key rate limits the operator told us: each paces its upstream's one budget for every IP."""
    from galileo.upstreams import Upstreams

    return Upstreams(cfg).known_key_rates()
