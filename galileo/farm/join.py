"""``galileo farm join``: this host's workers, serving a coordinator on another host.

One worker per usable local address, forked from a local fork server, connected over tcp
with CURVE. They reconnect with backoff when the coordinator goes away and comes back; a
worker that exits is restarted after 1 s doubling to 30 s. Nothing secret crosses the wire:
upstream API keys are read from this host's environment by each worker, and only those this
host's config names (``secrets``), sent only to the upstreams it configures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket

from broker.link import CurveSettings
from galileo.farm.forkserver import ForkServer
from galileo.inventory import Inventory
from workers.main import WorkerArgs
from workers.secrets import SecretPolicy

__all__ = ["run_join"]

log = logging.getLogger("galileo.join")


async def run_join(
    inventory: Inventory,
    endpoint: str,
    curve: CurveSettings | None,
    *,
    log_level: str = "info",
    log_format: str = "kv",
    duration: float | None = None,
    secrets: SecretPolicy | None = None,
) -> int:
    host = socket.gethostname()
    stop = asyncio.Event()
    pids: dict[int, WorkerArgs] = {}
    backoff: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    def on_exit(pid: int, code: int | None) -> None:
        args = pids.pop(pid, None)
        if args is None or stop.is_set():
            return
        delay = backoff.get(args.ip, 1.0)
        backoff[args.ip] = min(30.0, delay * 2)
        log.warning("worker exited with %s; restarting in %.0fs", code, delay, extra={"local_ip": args.ip})
        loop.call_later(delay, lambda: loop.create_task(spawn(args)))

    fs = ForkServer(on_exit)

    async def spawn(args: WorkerArgs) -> None:
        if not stop.is_set():
            pids[await fs.spawn(args)] = args

    await fs.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for r in inventory.usable:
        await spawn(
            WorkerArgs(
                worker_id=f"{host}/{r.ip}",
                ip=r.ip,
                bind=r.bind,
                endpoint=endpoint,
                reconnect=True,
                curve=curve,
                log_level=log_level,
                log_format=log_format,
                host=host,
                secrets=secrets or SecretPolicy(),
            )
        )
    log.info("joined %s with %d worker(s)", endpoint, len(pids))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)
    stop.set()
    for pid in list(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for _ in range(500):
        if not pids:
            break
        await asyncio.sleep(0.02)
    for pid in list(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    await fs.close()
    return 0
