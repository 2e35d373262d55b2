"""Fixtures for the simulator tests: a started simulator and sessions bound to loopback addresses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from galileo.sim import SimConfig, SimServer, start_sim
from tests.sim.sim_helpers import SessionFactory, SimFactory


@pytest.fixture
async def sim_factory() -> AsyncIterator[SimFactory]:
    """Start simulators on free ports (``port=0``) with a fixed seed; all closed at teardown.

    Every accepted bundle wins Jito's auction (``auction_contention=0``) unless a test asks for
    contention: these tests are about the wire and the chain, the auction has its own.
    """
    servers: list[SimServer] = []

    async def make(**kwargs: Any) -> SimServer:
        kwargs.setdefault("port", 0)
        kwargs.setdefault("seed", 7)
        kwargs.setdefault("auction_contention", 0.0)
        server = await start_sim(SimConfig(**kwargs))
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def sim(sim_factory: SimFactory) -> SimServer:
    """A simulator with fast slots (20 ms) so landing tests need no long waits."""
    return await sim_factory(slot_ms=20)


@pytest.fixture
async def bound() -> AsyncIterator[SessionFactory]:
    """aiohttp sessions whose connections come from a chosen 127.x address."""
    sessions: list[aiohttp.ClientSession] = []

    def make(ip: str = "127.0.0.2", **kwargs: Any) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(ip, 0)), **kwargs)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.close()


@pytest.fixture
async def client(bound: SessionFactory) -> aiohttp.ClientSession:
    """A session bound to 127.0.0.2."""
    return bound("127.0.0.2")
