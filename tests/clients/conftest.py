"""Fixtures for the client tests: the real simulator, a stub upstream, and jobs run as a worker runs them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import workers.clients  # noqa: F401  (registers every handler, as the fork server does)
from broker.jobs import JobPayload
from broker.protocol import Dispatch, Event, Outcome
from galileo.sim import SimConfig, SimServer, start_sim
from workers.executor import Executor
from workers.secrets import SecretPolicy, origin
from workers.session import BoundSession

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USER = "Cm7vjoV12JuVqCduW6rkGGcgN77NPkzqZr66pkVTzb5b"


@dataclass
class Ran:
    """One job's outcome and the events it emitted."""

    outcome: Outcome
    events: list[Event] = field(default_factory=list)


def allowing(payload: Any) -> SecretPolicy:
    """The policy a config listing this job's upstream gives its workers: its secret, to its URL's origin."""
    ref = getattr(payload, "secret", None)
    url = getattr(payload, "url", None) or getattr(payload, "base_url", None)
    dest = origin(url) if url else None
    headers = {ref.env: [dest]} if ref is not None and dest is not None else {}
    url_env = getattr(payload, "url_env", None)
    return SecretPolicy(headers=headers, url_envs=[url_env] if url_env else [])


@dataclass
class Running:
    """A long-lived job started with :meth:`Worker.start`: its events as they come, then its outcome."""

    task: asyncio.Task[Outcome]
    events: list[Event] = field(default_factory=list)

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]

    async def wait_for(self, name: str, count: int = 1, timeout: float = 5.0) -> list[Event]:
        """The first ``count`` events called ``name``, once they have come."""
        async with asyncio.timeout(timeout):
            while len(self.named(name)) < count:
                if self.task.done():
                    raise AssertionError(f"the job ended ({self.task.result()}) before {count} {name!r} event(s)")
                await asyncio.sleep(0.01)
        return self.named(name)[:count]


class Worker:
    """Runs jobs exactly as a worker process does: a BoundSession per IP and the Executor.

    The worker may release the secret each job names to that job's upstream, as if the config
    listed it (``secrets`` overrides this; tests of the policy itself pass their own).
    """

    def __init__(self) -> None:
        self.sessions: dict[str, BoundSession] = {}
        self.next_job = 1

    def start(
        self, payload: JobPayload, ip: str = "127.0.0.2", timeout: float = 30.0, secrets: SecretPolicy | None = None
    ) -> Running:
        """Start a job (a Titan connection) in the background, on the same session as this IP's other jobs."""
        events: list[Event] = []
        task = asyncio.ensure_future(self._execute(payload, ip, timeout, secrets, events))
        return Running(task, events)

    async def run(
        self, payload: JobPayload, ip: str = "127.0.0.2", timeout: float = 5.0, secrets: SecretPolicy | None = None
    ) -> Ran:
        events: list[Event] = []
        out = await self._execute(payload, ip, timeout, secrets, events)
        return Ran(out, events)

    async def _execute(
        self, payload: JobPayload, ip: str, timeout: float, secrets: SecretPolicy | None, events: list[Event]
    ) -> Outcome:
        session = self.sessions.get(ip)
        if session is None:
            session = self.sessions[ip] = BoundSession(ip)
        kind = type(payload).__struct_config__.tag
        dispatch = Dispatch(
            job_id=self.next_job, attempt=0, kind=str(kind), upstream="test", timeout=timeout, payload=payload
        )
        self.next_job += 1
        policy = secrets if secrets is not None else allowing(payload)
        return await Executor(session, events.append, policy).execute(dispatch)

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.close()


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    w = Worker()
    yield w
    await w.close()


SimFactory = Callable[..., Awaitable[SimServer]]


@pytest.fixture
async def sim_factory() -> AsyncIterator[SimFactory]:
    servers: list[SimServer] = []

    async def make(**kwargs: Any) -> SimServer:
        kwargs.setdefault("port", 0)
        kwargs.setdefault("seed", 11)
        kwargs.setdefault("slot_ms", 20)  # fast slots: landing in tens of ms, no long sleeps
        kwargs.setdefault("auction_contention", 0.0)  # about the wire: no accepted bundle is outbid
        server = await start_sim(SimConfig(**kwargs))
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def sim(sim_factory: SimFactory) -> SimServer:
    return await sim_factory()


async def control(sim: SimServer, body: dict[str, Any]) -> dict[str, Any]:
    """POST /sim/control (from the default address, which no test limits)."""
    async with aiohttp.ClientSession() as s, s.post(sim.url + "/sim/control", json=body) as r:
        assert r.status == 200, await r.text()
        out: dict[str, Any] = await r.json()
        return out


async def sim_stats(sim: SimServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(sim.url + "/sim/stats") as r:
        out: dict[str, Any] = await r.json()
        return out


@dataclass
class Canned:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class Stub:
    """An upstream that answers what a test tells it to, and records what it was sent."""

    def __init__(self) -> None:
        self.routes: dict[str, Canned] = {}
        self.seen: list[Seen] = []
        self.url = ""

    def answer(self, path: str, body: bytes | str, status: int = 200, headers: dict[str, str] | None = None) -> None:
        raw = body.encode() if isinstance(body, str) else body
        self.routes[path] = Canned(status, raw, headers or {})

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path, dict(request.query), dict(request.headers), body))
        canned = self.routes.get(request.path)
        if canned is None:
            return web.Response(status=404, text="no such stub route")
        return web.Response(
            status=canned.status, body=canned.body, headers=canned.headers, content_type="application/json"
        )


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    s = Stub()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", s.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    s.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield s
    await runner.cleanup()
