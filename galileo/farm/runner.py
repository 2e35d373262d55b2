"""Running a farm as an operator does: ``galileo farm start`` (and the demo) call :func:`run_farm`.

It starts the coordinator and its workers, serves ``/metrics``, tells systemd when every
worker is ready and feeds its watchdog, runs the blind strategy when it is enabled, logs one
summary line per interval, and stops cleanly on SIGTERM / Ctrl-C (SIGHUP re-reads the
config and rescans the interfaces).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from solders.keypair import Keypair

from galileo.config import GalileoConfig
from galileo.farm import systemd
from galileo.farm.coordinator import Farm
from galileo.farm.heap import frozen_heap
from galileo.farm.reload import load_config_isolated

if TYPE_CHECKING:
    from galileo.strategy.engine import RoundTripEngine

__all__ = ["FarmRun", "load_wallet", "run_farm"]

T = TypeVar("T")
log = logging.getLogger("galileo.farm")
SUMMARY_EVERY = 60.0  # one summary line a minute: the steady-state journal stays a few lines a minute


def load_wallet(cfg: GalileoConfig) -> Keypair:
    """The configured keypair; without one, an ephemeral key (dry run only: config checks enforce it)."""
    from galileo.tx import ephemeral_keypair, load_keypair

    if cfg.wallet.keypair_path:
        return load_keypair(Path(cfg.wallet.keypair_path).expanduser())
    kp = ephemeral_keypair()
    log.warning("wallet.keypair_path is not set: signing with an ephemeral key %s (dry run only)", kp.pubkey())
    return kp


class FarmRun:
    """A started farm plus what runs on it; what the demo's live table reads."""

    def __init__(self, farm: Farm, strategy: RoundTripEngine | None) -> None:
        self.farm = farm
        self.strategy = strategy


async def run_farm(
    cfg: GalileoConfig,
    *,
    runtime_dir: Path,
    runtime_source: str = "runtime_dir",
    config_path: Path | None = None,
    duration: float | None = None,
    log_level: str = "info",
    log_format: str = "kv",
    summary_every: float = SUMMARY_EVERY,
    wallet: Keypair | None = None,
    on_started: Callable[[FarmRun], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """Run until SIGTERM / SIGINT or ``duration``. Raises LockHeld, FarmError, MetricsError, WalletError."""
    from galileo.strategy.engine import enabled_engines

    farm = Farm(
        cfg,
        runtime_dir=runtime_dir,
        runtime_source=runtime_source,
        log_level=log_level,
        log_format=log_format,
        config_loader=(lambda: load_config_isolated(config_path)) if config_path else None,
    )
    wallet = wallet or (load_wallet(cfg) if cfg.blind_strategy.enable or cfg.multi_leg.enable else None)
    await farm.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # from now on: Ctrl-C while workers boot is a clean stop too
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()
    booted = asyncio.Event()

    async def reload() -> None:  # SIGHUP, from the start: its default action would end the process
        systemd.reloading()
        try:
            await farm.reload()
        except Exception:  # a reload never takes the farm down
            log.exception("reload failed")
        if booted.is_set():
            systemd.ready(f"{len(farm.hub.workers)} workers")

    def on_sighup() -> None:
        task = loop.create_task(reload(), name="reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    tasks: list[asyncio.Task[Any]] = []
    strategies: list[RoundTripEngine] = []
    heap = contextlib.ExitStack()
    try:
        if cfg.bot.prometheus.enable:
            host, port = await farm.metrics.serve(cfg.bot.prometheus.listen)
            log.info("metrics on http://%s:%d/metrics", host, port)
        ready = await _unless_stopped(farm.wait_ready(timeout=45), stop)
        if stop.is_set():
            return
        workers = f"{len(farm.hub.workers)}/{farm.hub.expected_workers} workers ready"
        if not ready:
            log.warning("not every worker registered within 45 s: %s", workers)
        systemd.ready(workers)
        booted.set()
        tasks.append(asyncio.create_task(systemd.watchdog_loop(), name="watchdog"))

        strategies = enabled_engines(farm, cfg, wallet, metrics=farm.metrics) if wallet is not None else []
        heap.enter_context(frozen_heap())  # start-up is built: out of the collector's full passes
        for strat in strategies:
            tasks.append(asyncio.create_task(strat.run(stop), name=f"strategy-{strat.name}"))
            if summary_every > 0:
                tasks.append(
                    asyncio.create_task(_summaries(strat.name, strat, summary_every), name=f"summary-{strat.name}")
                )
        if on_started is not None:
            first = strategies[0] if strategies else None
            tasks.append(asyncio.create_task(on_started(FarmRun(farm, first)), name="on-started"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
    finally:
        heap.close()  # the collector's passes cover everything again: what the farm leaves is freed
        stop.set()
        systemd.stopping("draining")
        for r in list(reloads):
            r.cancel()
        await asyncio.gather(*reloads, return_exceptions=True)
        for t in tasks:
            if t.get_name().startswith("strategy-"):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(t, 20)
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for strat in strategies:
            log.info("%s totals: %s", strat.name, strat.stats.totals(), extra={"strategy": strat.name})
        await farm.stop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)


async def _unless_stopped(aw: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """``aw``'s result, or None as soon as ``stop`` is set (``aw`` is then cancelled)."""
    task = asyncio.ensure_future(aw)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


async def _summaries(name: str, strategy: RoundTripEngine, every: float) -> None:
    previous: dict[str, Any] | None = None
    while True:
        await asyncio.sleep(every)
        log.info(strategy.stats.summary_line(previous), extra={"event": "summary", "strategy": name})
        previous = strategy.stats.totals()
