"""``galileo sim``: faithful local versions of every upstream the farm talks to, on one port.

Jupiter Swap v1 and Ultra, DFlow, Jito (any region), Solana JSON-RPC (``/rpc`` and ``/staked``)
and the Titan WebSocket, with a limiter zoo per service (``galileo.sim.limiter``), seeded
latency, prices and faults, and a simulated chain that issues blockhashes, verifies signatures
and lands transactions. docs/simulator.md describes all of it.
Clients bound to 127.0.0.2, 127.0.0.3, ... are told apart by their source address.

    server = await start_sim(SimConfig(port=0, rate_limit=5, seed=1))
    ...  # talk to server.url; inspect server.state or GET /sim/stats
    await server.close()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from galileo.sim.app import SimServer, build_app, run_sim, start_sim
    from galileo.sim.config import FAULT_KINDS, SimConfig, parse_fault_spec

__all__ = ["FAULT_KINDS", "SimConfig", "SimServer", "build_app", "parse_fault_spec", "run_sim", "start_sim"]

# Loaded on first use: the server pulls in aiohttp (~0.5 s), which every `galileo` command
# would otherwise pay for, since the CLI parses `galileo sim`'s options with galileo.sim.config.
_HOME = {
    "SimServer": "app",
    "build_app": "app",
    "run_sim": "app",
    "start_sim": "app",
    "FAULT_KINDS": "config",
    "SimConfig": "config",
    "parse_fault_spec": "config",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'galileo.sim' has no attribute {name!r}")
    return getattr(importlib.import_module(f"galileo.sim.{home}"), name)
