"""Everything one simulator instance holds, reachable from any handler via ``state_of(request)``."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web
from solders.pubkey import Pubkey

from galileo.sim.accounts import SimAccounts, sim_accounts
from galileo.sim.config import SimConfig
from galileo.sim.faults import FaultPlan
from galileo.sim.ledger import BASE_SLOT, Ledger
from galileo.sim.limiter import IpOverride
from galileo.sim.limits import ServiceLimits
from galileo.sim.prices import PriceModel
from galileo.sim.stats import SimStats
from galileo.sim.vm import ChainVM

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
    pool: int = 0


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
    _vm: ChainVM | None = None

    @classmethod
    def create(cls, config: SimConfig) -> SimState:
        """A fresh world for ``config``; the chain starts at slot BASE_SLOT now."""
        state = cls._create(config)
        if config.execution:
            _ = state.vm  # build it now: it takes tens of milliseconds, which slots must not see
        return state

    @classmethod
    def _create(cls, config: SimConfig) -> SimState:
        now = time.monotonic()
        ledger = Ledger(config.seed, config.slot_ms, config.blockhash_ttl_blocks, config.land_delay_slots, now)
        return cls(
            config=config,
            ledger=ledger,
            prices=PriceModel(config.seed, BASE_SLOT, config.pool_hold_slots),
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

    @property
    def vm(self) -> ChainVM:
        """The VM (built on first use: a simulator that never lands anything never pays for it)."""
        if self._vm is None:
            self._vm = ChainVM(self.prices, self.accounts, self.config.fund_lamports)
        return self._vm

    def settle(self) -> int:
        """Run every send due by now, and move the VM to the current slot; returns the slot."""
        now = time.monotonic()
        self.ledger.settle(now, self.vm if self.config.execution else None)
        slot = self.ledger.slot(now)
        if self.config.execution:
            self.vm.at(slot)
        return slot

    def seen(self, wallet: Pubkey) -> None:
        """A wallet asked for a route or paid for a send: fund it if it is new (``fund_lamports``)."""
        if self.config.execution:
            self.vm.fund_lamports = self.config.fund_lamports
            self.vm.ensure_funded(wallet)

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
