"""``galileo farm join``: this host's workers, serving a coordinator on another host.

One worker per usable local address, forked from a local fork server, connected over tcp
with CURVE. They reconnect with backoff when the coordinator goes away and comes back; a
worker that exits is restarted after 1 s doubling to 30 s. Nothing secret crosses the wire:
upstream API keys are read from this host's environment by each worker, and only those this
host's config names (``secrets``), sent only to the upstreams it configures.

Before forking anything it tries one handshake: a coordinator that refuses this host's key
ends the command at once (exit 1, saying so); one that does not answer yet is waited for. A
worker that is refused later (its key was removed and the coordinator reloaded) exits with
:data:`~workers.main.EXIT_KEY_REFUSED`, and so does the whole command, with exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket

import zmq.auth

from broker.auth import fingerprint
from broker.link import CurveSettings, try_handshake
from galileo.farm.forkserver import ForkServer
from galileo.inventory import Inventory
from workers.main import EXIT_KEY_REFUSED, WorkerArgs
from workers.secrets import SecretPolicy

__all__ = ["run_join"]

log = logging.getLogger("galileo.join")

HANDSHAKE_WAIT = 5.0  # seconds for the first handshake before going on without an answer


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
    """Serve ``endpoint`` until SIGINT/SIGTERM or ``duration``: 0, or 1 when this host's key is refused."""
    host = socket.gethostname()
    if curve is not None:
        ours = fingerprint(zmq.auth.load_certificate(curve.secret_key_path)[0])
        answer = await try_handshake(endpoint, curve, HANDSHAKE_WAIT)
        if answer == "refused":
            log.error(
                "the coordinator at %s refused this host's key %s: copy this host's public .key file into "
                "its farm.authorized_keys_dir and send it SIGHUP",
                endpoint,
                ours,
            )
            return 1
        if answer == "failed":
            log.warning("the handshake with %s failed: is --server-key the coordinator's public key?", endpoint)
        elif answer == "no_answer":
            log.warning("no answer from %s within %.0fs; the workers will keep trying", endpoint, HANDSHAKE_WAIT)
    stop = asyncio.Event()
    refused = False
    pids: dict[int, WorkerArgs] = {}
    backoff: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    def on_exit(pid: int, code: int | None) -> None:
        nonlocal refused
        args = pids.pop(pid, None)
        if args is None or stop.is_set():
            return
        if code == EXIT_KEY_REFUSED:
            log.error("the coordinator at %s refused this host's key; stopping", endpoint, extra={"local_ip": args.ip})
            refused = True
            stop.set()
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
    return 1 if refused else 0
