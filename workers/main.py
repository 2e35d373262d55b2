"""A worker process: one uvloop; per IP, one bound session and one link to the coordinator.

``worker_entry`` is the process target the coordinator's fork server starts (and
``galileo farm join`` runs for workers on other hosts). A process usually serves one IP; with
``farm.ips_per_process`` above 1 it serves several, each as its own worker to the coordinator
(own id, own socket, own session, own heartbeats) on one shared loop, which saves some of the
process wake-ups a lightly loaded worker pays per job. Each worker runs every job it is sent,
reports each outcome, heartbeats from its loop, and leaves cleanly:

* on ``Drain`` from the coordinator or ``SIGTERM``: take no new jobs (told to the coordinator
  at once), finish what is in flight (up to ``drain_grace``), say Bye, exit 0;
* when its coordinator dies (a local worker watches the coordinator's pid through a pidfd,
  and any worker notices 3 missed heartbeats): exit, so no worker outlives its farm. Silence
  alone is not death while the coordinator's process still runs (its loop may be stalled);
* when the coordinator refuses this host's CURVE key: exit with :data:`EXIT_KEY_REFUSED`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

from broker.link import CurveSettings, LinkEnd, WorkerLink
from broker.logs import setup_logging
from broker.protocol import Dispatch, Heartbeat, Outcome, Ready
from workers.executor import Executor
from workers.secrets import SecretPolicy
from workers.session import BoundSession
from workers.stats import RollingStats

__all__ = ["EXIT_BOOT_ERROR", "EXIT_KEY_REFUSED", "WorkerArgs", "serve", "serve_group", "worker_entry"]

log = logging.getLogger("workers.main")

EXIT_BOOT_ERROR = 3  # gunicorn's WORKER_BOOT_ERROR: the supervisor must not restart in a tight loop
EXIT_KEY_REFUSED = 4  # the coordinator refused this host's CURVE key: `farm join` stops, restarting cannot help
_PAGE = os.sysconf("SC_PAGE_SIZE")


class WorkerArgs(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a worker needs; small and secret-free, since it crosses process boundaries.

    ``secrets`` names the env vars the worker may read and where each may go (names and
    origins, never values); it comes from the config of whoever starts the worker, never from
    the coordinator's jobs.
    """

    worker_id: str
    ip: str
    bind: bool
    endpoint: str
    capacity: int = 256
    coordinator_pid: int | None = None
    reconnect: bool = False
    curve: CurveSettings | None = None
    log_level: str = "info"
    log_format: str = "kv"
    drain_grace: float = 10.0
    host: str = ""
    secrets: SecretPolicy = msgspec.field(default_factory=SecretPolicy)


# Which of the process's workers the running code serves: set in each worker's own task, and
# inherited by every task it starts (its jobs), so a record names the right address.
_serving: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("galileo_worker")


class _LocalIpFilter(logging.Filter):
    """Stamp every record with the address and id of the worker it comes from.

    Records from outside any worker's task (process start and exit) get the process's: its
    one worker's, or every address it serves, comma-separated."""

    def __init__(self, ip: str, worker_id: str) -> None:
        super().__init__()
        self.ip = ip
        self.worker_id = worker_id

    def filter(self, record: logging.LogRecord) -> bool:
        ip, worker_id = _serving.get((self.ip, self.worker_id))
        if not hasattr(record, "local_ip"):
            record.local_ip = ip
        record.worker_id = worker_id
        return True


def _rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class Worker:
    """The job loop of one worker process."""

    def __init__(self, args: WorkerArgs) -> None:
        self.args = args
        self.session = BoundSession(args.ip if args.bind else None, limit=args.capacity)
        self.stats = RollingStats()
        self.tasks: set[asyncio.Task[None]] = set()
        self.draining = False
        self.lag_ms = 0.0
        fam: Literal["ipv4", "ipv6"] = "ipv6" if ":" in args.ip else "ipv4"
        ready = Ready(
            worker_id=args.worker_id,
            ip=args.ip,
            family=fam,
            bind=args.bind,
            host=args.host or socket.gethostname(),
            pid=os.getpid(),
            capacity=args.capacity,
            version="1",
        )
        self.link = WorkerLink(
            args.endpoint,
            ready,
            on_job=self.start_job,
            on_drain=self.drain,
            heartbeat=self.heartbeat,
            on_reconnect=self.abandon_jobs,
            reconnect=args.reconnect,
            curve=args.curve,
        )
        self.executor = Executor(self.session, self.link.send_event, args.secrets)

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(
            inflight=len(self.tasks),
            draining=self.draining,
            loop_lag_ms=round(self.lag_ms, 3),
            rss=_rss(),
            stats=self.stats.snapshot(),
            bad_frames=self.link.bad_frames,
        )

    def start_job(self, dispatch: Dispatch) -> None:
        task = asyncio.get_running_loop().create_task(self._run(dispatch))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if self.draining and not self.tasks:
            self.link.drained()

    async def _run(self, dispatch: Dispatch) -> None:
        try:
            outcome = await self.executor.execute(dispatch)
        except asyncio.CancelledError:
            outcome = Outcome(result="cancelled", error="worker stopped before the job finished")
        self.stats.record(dispatch.upstream, outcome.result, outcome.latency)
        try:
            self.link.send_result(dispatch.job_id, dispatch.attempt, outcome)
        except (TypeError, ValueError, OverflowError) as exc:  # a value the wire cannot carry
            log.error("cannot encode the result of job %d: %s", dispatch.job_id, exc)
            self.link.send_result(
                dispatch.job_id,
                dispatch.attempt,
                Outcome(
                    result="decode_error",
                    status=outcome.status,
                    latency=outcome.latency,
                    error=f"result not encodable: {exc}",
                ),
            )

    def drain(self, reason: str = "") -> None:
        if self.draining:
            return
        self.draining = True
        log.info("draining: %s (%d job(s) in flight)", reason or "asked to", len(self.tasks))
        self.link.send(self.heartbeat())  # the coordinator stops sending jobs now
        if not self.tasks:
            self.link.drained()
        else:
            asyncio.get_running_loop().call_later(self.args.drain_grace, self.abandon_jobs)

    def abandon_jobs(self) -> None:
        for task in list(self.tasks):
            task.cancel()


def _pidfd_running(fd: int) -> bool:
    """A pidfd turns readable when its process exits (zombies included): no pid-reuse race."""
    return not select.select([fd], [], [], 0)[0]


def _watch_pid(pid: int, on_exit: Callable[[], None]) -> int | None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        on_exit()
        return None
    except (OSError, AttributeError):
        return None  # no pidfd: heartbeats still catch a dead coordinator within 3 s
    asyncio.get_running_loop().add_reader(fd, on_exit)
    return fd


async def serve(args: WorkerArgs) -> int:
    """Run one worker until it is drained or its coordinator is gone. Returns the exit code."""
    return await serve_group([args])


def check_group(group: Sequence[WorkerArgs]) -> None:
    """Workers sharing a process must share what the process has once: its coordinator, its
    signals and its log settings; and each needs an id and an address of its own."""
    if not group:
        raise ValueError("a worker process needs at least one worker")
    first = group[0]
    for a in group[1:]:
        for name in ("endpoint", "coordinator_pid", "reconnect", "curve", "log_level", "log_format", "host"):
            if getattr(a, name) != getattr(first, name):
                raise ValueError(f"workers in one process differ in {name}: {a.worker_id} and {first.worker_id}")
    for name in ("worker_id", "ip"):
        values = [getattr(a, name) for a in group]
        if len(set(values)) != len(values):
            raise ValueError(f"workers in one process must each have their own {name}: {sorted(values)}")


async def _serve_one(worker: Worker) -> LinkEnd:
    _serving.set((worker.args.ip, worker.args.worker_id))
    try:
        return await worker.link.run()
    finally:
        worker.abandon_jobs()
        await asyncio.gather(*worker.tasks, return_exceptions=True)
        await worker.session.close()


async def _measure_lag(workers: Sequence[Worker]) -> None:
    """Loop lag: how late a 250 ms sleep wakes up. A busy or stuck loop shows here first.
    One loop, so one figure for every worker on it."""
    while True:
        start = time.perf_counter()
        await asyncio.sleep(0.25)
        lag = max(0.0, (time.perf_counter() - start - 0.25) * 1000)
        for w in workers:
            w.lag_ms = lag


async def serve_group(group: Sequence[WorkerArgs]) -> int:
    """Run the workers of one process until each is drained or their coordinator is gone.

    A signal is the process's, so it drains every worker; a Drain from the coordinator is one
    worker's, and the others keep serving. The process exits when the last one has ended."""
    check_group(group)
    first = group[0]
    workers = [Worker(a) for a in group]
    loop = asyncio.get_running_loop()

    def drain_all(reason: str) -> None:
        for w in workers:
            w.drain(reason)

    loop.add_signal_handler(signal.SIGTERM, drain_all, "SIGTERM")
    if first.coordinator_pid is None:
        loop.add_signal_handler(signal.SIGINT, drain_all, "SIGINT")
    else:
        # Ctrl-C in a terminal reaches the whole process group; the supervising process gets it
        # too and drains its workers in order. Draining here as well would look like a crash.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    lag = loop.create_task(_measure_lag(workers))

    def stop_all() -> None:
        for w in workers:
            w.link.stop()

    fd = None
    if first.coordinator_pid is not None:
        fd = _watch_pid(first.coordinator_pid, stop_all)
        if fd is not None:  # a stall of the coordinator's loop is not its death: wait while it runs
            for w in workers:
                w.link.peer_alive = functools.partial(_pidfd_running, fd)
    log.info("worker starting", extra={"endpoint": first.endpoint, "pid": os.getpid(), "workers": len(workers)})
    try:
        ends = await asyncio.gather(*(_serve_one(w) for w in workers))
    finally:
        lag.cancel()
        await asyncio.gather(lag, return_exceptions=True)
        if fd is not None:
            loop.remove_reader(fd)
            os.close(fd)
    log.info("worker exiting: %s", ", ".join(sorted(set(ends))))
    return EXIT_KEY_REFUSED if "refused" in ends else 0


GC_THRESHOLD = (20_000, 50, 100)


def worker_entry(args: WorkerArgs | Sequence[WorkerArgs]) -> None:
    """Process target: set up logging and uvloop, serve one worker or several, exit with the right code."""
    import uvloop

    import workers.clients  # noqa: F401  (registers every upstream's job handler)

    # A job allocates a few hundred objects (aiohttp request and response, futures, structs),
    # and almost none form cycles; the default threshold (700) ran a collection every few jobs.
    # Measured with `galileo bench saturation`: ~8 % less worker CPU per job.
    gc.set_threshold(*GC_THRESHOLD)

    group = [args] if isinstance(args, WorkerArgs) else list(args)
    first = group[0] if group else WorkerArgs(worker_id="?", ip="?", bind=False, endpoint="")
    setup_logging(first.log_level, "json" if first.log_format == "json" else "kv")
    logging.getLogger().handlers[0].addFilter(
        _LocalIpFilter(",".join(a.ip for a in group), ",".join(a.worker_id for a in group))
    )
    try:
        code = uvloop.run(serve_group(group))
    except Exception as exc:  # anything escaping serve() means the worker never worked
        logging.getLogger("workers.main").error("worker failed: %s: %s", type(exc).__name__, exc)
        code = EXIT_BOOT_ERROR
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
