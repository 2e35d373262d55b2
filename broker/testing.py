"""Test doubles for the wire: a plain policy, a manual clock, and the hub core without sockets.

:class:`MemoryTransport` plays the role httpx's ``MockTransport`` and dramatiq's
``StubBroker`` play: a :class:`~broker.core.HubCore` built on it runs the real registry,
queues, liveness and outcomes, while the test delivers each worker's messages and reads what
the hub sent, in any order it likes, at any time it likes (:class:`ManualClock`)::

    clock, transport = ManualClock(), MemoryTransport()
    core = HubCore(LeastLoadedPolicy(), transport, clock=clock)
    w = MemoryWorker(core, transport, "10.0.0.1").register()
    fut = core.submit(spec)
    w.reply(w.jobs()[0])

The farm's real policy (cooldowns per IP and upstream, learned pacing, rendezvous hashing)
lives in ``galileo.policy``; :class:`LeastLoadedPolicy` only honours credit and affinity, so
broker tests do not depend on it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

from broker.core import LOCAL, HubCore, Peer
from broker.protocol import Bye, Dispatch, Drain, Heartbeat, Message, Outcome, Ready, Result
from broker.types import Blocked, Job, WorkerInfo

__all__ = ["LeastLoadedPolicy", "ManualClock", "MemoryTransport", "MemoryWorker"]


class LeastLoadedPolicy:
    """Most free credit wins, round robin on ties; ``prefer_ip`` waits for its IP while it lives."""

    def __init__(self) -> None:
        self._turn = 0

    def pick(self, job: Job, workers: dict[str, WorkerInfo], now: float) -> WorkerInfo | Blocked:
        spec = job.spec
        pinned = spec.require_ip or spec.prefer_ip
        if pinned is not None:
            mine = [w for w in workers.values() if w.ip == pinned]
            if mine:
                free = [w for w in mine if w.credit > 0]
                return free[0] if free else Blocked(upstream_wide=False, pinned=pinned)
            if spec.require_ip is not None:
                return Blocked(upstream_wide=False, pinned=pinned)
        candidates = [w for w in workers.values() if w.credit > 0]
        if spec.avoid_ip is not None and any(w.ip != spec.avoid_ip for w in candidates):
            candidates = [w for w in candidates if w.ip != spec.avoid_ip]
        if not candidates:
            return Blocked()
        self._turn += 1
        n = len(candidates)
        best = max(range(n), key=lambda i: (candidates[i].credit, -((i - self._turn) % n)))
        return candidates[best]

    def on_dispatch(self, job: Job, worker: WorkerInfo, now: float) -> None:
        pass

    def on_outcome(self, job: Job, worker: WorkerInfo, outcome: Outcome, now: float) -> None:
        pass

    def on_worker_up(self, worker: WorkerInfo, now: float) -> None:
        pass

    def on_worker_down(self, worker: WorkerInfo, now: float) -> None:
        pass


class ManualClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryTransport:
    """Keeps what the hub sends, per peer, until the test takes it."""

    def __init__(self) -> None:
        self.outbox: defaultdict[Peer, list[Message]] = defaultdict(list)
        self.forgotten: list[Peer] = []

    def send(self, peer: Peer, msg: Message) -> None:
        self.outbox[peer].append(msg)

    def forget(self, peer: Peer) -> None:
        self.outbox.pop(peer, None)
        self.forgotten.append(peer)

    def take(self, peer: Peer) -> list[Message]:
        """Everything sent to ``peer`` since the last take, in order."""
        return self.outbox.pop(peer, [])


_routes = itertools.count(1)
_incarnations = itertools.count(1)


class MemoryWorker:
    """One worker process, played by the test against a :class:`HubCore` on a :class:`MemoryTransport`.

    Each instance is a new process (its own incarnation) on its own connection (its own
    routing id); ``principal`` is the CURVE key it connects with (``LOCAL``: this host).
    """

    def __init__(
        self,
        core: HubCore,
        transport: MemoryTransport,
        ip: str,
        *,
        worker_id: str | None = None,
        capacity: int = 4,
        principal: bytes = LOCAL,
        via: int = 0,
        pid: int | None = None,
        incarnation: str | None = None,
    ) -> None:
        self.core = core
        self.transport = transport
        self.principal = principal
        self.peer: Peer = (via, f"route-{next(_routes)}".encode())
        n = next(_incarnations)
        self.ready = Ready(
            worker_id=worker_id or f"local/{ip}",
            ip=ip,
            family="ipv4",
            bind=True,
            host="test",
            pid=pid if pid is not None else 10_000 + n,
            capacity=capacity,
            incarnation=incarnation if incarnation is not None else f"inc-{n}",
        )
        self.inbox: list[Message] = []

    def send(self, *msgs: Message) -> None:
        self.core.receive(self.peer, list(msgs), self.principal)

    def register(self) -> MemoryWorker:
        self.send(self.ready)
        return self

    def reconnect(self) -> MemoryWorker:
        """The same process on a fresh socket (a new routing id), registering again."""
        self.peer = (self.peer[0], f"route-{next(_routes)}".encode())
        return self.register()

    def received(self) -> list[Message]:
        """Everything the hub sent this worker so far (kept in :attr:`inbox` too)."""
        self.inbox += self.transport.take(self.peer)
        return self.inbox

    def jobs(self) -> list[Dispatch]:
        """Jobs sent to it since the last call."""
        self.received()
        got = [m for m in self.inbox if isinstance(m, Dispatch)]
        self.inbox = [m for m in self.inbox if not isinstance(m, Dispatch)]
        return got

    def drained(self) -> bool:
        return any(isinstance(m, Drain) for m in self.received())

    def reply(self, job: Dispatch, outcome: Outcome | None = None) -> None:
        self.send(Result(job_id=job.job_id, attempt=job.attempt, outcome=outcome or Outcome(result="ok")))

    def beat(self, **fields: object) -> None:
        self.send(Heartbeat(**fields))  # type: ignore[arg-type]

    def bye(self) -> None:
        self.send(Bye(reason="drained"))

    @property
    def info(self) -> WorkerInfo | None:
        """The hub's record of this process, whether it is its slot's current one or not."""
        return next((w for w in self.core.connections if (w.via, w.routing_id) == self.peer), None)
