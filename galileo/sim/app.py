"""Build, start and run the simulator application."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from dataclasses import dataclass

import msgspec
import uvloop
from aiohttp import WSCloseCode, web

from galileo.sim import control, dflow, jito, jupiter, rpc, titan, ultra
from galileo.sim.config import SimConfig, validate_config
from galileo.sim.middleware import sim_middleware
from galileo.sim.state import STATE, SimState

__all__ = ["SimServer", "build_app", "run_sim", "start_sim"]

_SHUTDOWN_SECONDS = 0.5


def build_app(config: SimConfig) -> web.Application:
    """The aiohttp application serving every simulated upstream; ValueError on a bad config."""
    problems = validate_config(config)
    if problems:
        raise ValueError("invalid SimConfig: " + "; ".join(problems))
    app = web.Application(middlewares=[sim_middleware], client_max_size=4 * 1024 * 1024)
    app[STATE] = SimState.create(config)
    for module in (jupiter, ultra, dflow, jito, rpc, titan, control):
        module.add_routes(app)
    app.on_shutdown.append(_close_websockets)
    return app


async def _close_websockets(app: web.Application) -> None:
    state = app[STATE]
    for ws in list(state.websockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"simulator shutting down")


@dataclass
class SimServer:
    """A started simulator: its base URL, real port and in-process state."""

    runner: web.AppRunner
    host: str
    port: int
    state: SimState

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:7900`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        """Stop serving; in-flight requests get a short grace, then are cancelled."""
        await self.runner.cleanup()


async def start_sim(config: SimConfig) -> SimServer:
    """Start serving ``config`` on the running loop; ``port=0`` picks a free port."""
    app = build_app(config)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=_SHUTDOWN_SECONDS)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=1024)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port = int(runner.addresses[0][1])
    state = app[STATE]
    state.config = msgspec.structs.replace(state.config, port=port)  # /sim/control shows the real port
    return SimServer(runner, config.host, port, state)


async def _serve_forever(config: SimConfig) -> None:
    server = await start_sim(config)
    # What start-up built (the VM, the accounts, the routes) lives as long as the process: kept out
    # of the collector's full passes, which otherwise held every request up ~45 ms now and then.
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"galileo sim listening on {server.url} (seed {config.seed})", flush=True)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await server.close()


def run_sim(config: SimConfig) -> None:
    """Serve ``config`` under uvloop until SIGINT or SIGTERM, then return (exit 0)."""
    uvloop.run(_serve_forever(config))
