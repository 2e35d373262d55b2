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

from galileo.sim.app import SimServer, build_app, run_sim, start_sim
from galileo.sim.config import FAULT_KINDS, SimConfig, parse_fault_spec

__all__ = ["FAULT_KINDS", "SimConfig", "SimServer", "build_app", "parse_fault_spec", "run_sim", "start_sim"]
