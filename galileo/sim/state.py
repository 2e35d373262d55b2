"""Everything one simulator instance holds, reachable from any handler via ``state_of(request)``."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from galileo.sim.accounts import SimAccounts, sim_accounts
from galileo.sim.config import SimConfig
from galileo.sim.faults import FaultPlan
from galileo.sim.ledger import BASE_SLOT, Ledger
from galileo.sim.limiter import IpOverride
from galileo.sim.limits import ServiceLimits
from galileo.sim.prices import PriceModel
from galileo.sim.stats import SimStats

__all__ = ["COUNTED", "STATE", "SimState", "UltraOrder", "state_of"]


@dataclass
class UltraOrder:
    """An Ultra /order kept until /execute: the unsigned message and the amounts it promised."""

    request_id: str
    message: bytes
    taker: str
    in_mint: str
    out_mint: str
    in_amount: int
    out_amount: int
    created: float


@dataclass
class SimState:
    """The simulator's world and its counters."""

    config: SimConfig
    ledger: Ledger
    prices: PriceModel
    limits: ServiceLimits
    faults: FaultPlan
    stats: SimStats
    accounts: SimAccounts = field(default_factory=sim_accounts)
    overrides: dict[str, IpOverride] = field(default_factory=dict)
    orders: dict[str, UltraOrder] = field(default_factory=dict)
    websockets: set[web.WebSocketResponse] = field(default_factory=set)
    _ids: int = 0

    @classmethod
    def create(cls, config: SimConfig) -> SimState:
        """A fresh world for ``config``; the chain starts at slot BASE_SLOT now."""
        now = time.monotonic()
        ledger = Ledger(config.seed, config.slot_ms, config.blockhash_ttl_blocks, config.land_delay_slots, now)
        return cls(
            config=config,
            ledger=ledger,
            prices=PriceModel(config.seed, BASE_SLOT),
            limits=ServiceLimits(config),
            faults=FaultPlan(config.faults, config.seed),
            stats=SimStats(started_wall=time.time(), seconds=config.stats_seconds),
        )

    @staticmethod
    def now() -> float:
        """Monotonic seconds (every limiter and ledger decision uses this clock)."""
        return time.monotonic()

    def slot(self) -> int:
        """The current slot."""
        return self.ledger.slot(time.monotonic())

    def new_uuid(self) -> str:
        """A UUID4 string that depends only on the seed and how many were issued before."""
        self._ids += 1
        digest = hashlib.sha256(f"galileo-sim/{self.config.seed}/uuid/{self._ids}".encode()).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))


STATE = web.AppKey("galileo_sim_state", SimState)
COUNTED = web.RequestKey("galileo_sim_counted", bool)
"""Set on a request whose stats line is already written (WS upgrades, timeouts, resets)."""


def state_of(request: web.Request) -> SimState:
    """The SimState of the app serving ``request``."""
    return request.app[STATE]
