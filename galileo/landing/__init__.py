"""Landing: assemble swap legs into signed transactions, send them, follow them until they land.

Strategies use what this package exports, never its modules' internals; landing imports no
strategy (tests/test_import_direction.py).
"""

from galileo.landing.assemble import Assembled, SimulationFailed, assemble, leg_of
from galileo.landing.fees import FeeMarket, Fees, writable_accounts
from galileo.landing.landers import LanderStack, Receipt, bundle_id_of
from galileo.landing.pnl import BalanceChange, Prices, balance_change
from galileo.landing.stats import LanderKind, LandingStats, Settled
from galileo.landing.trades import TradeBook, TradeKey

__all__ = [
    "Assembled",
    "BalanceChange",
    "FeeMarket",
    "Fees",
    "LanderKind",
    "LanderStack",
    "LandingStats",
    "Prices",
    "Receipt",
    "Settled",
    "SimulationFailed",
    "TradeBook",
    "TradeKey",
    "assemble",
    "balance_change",
    "bundle_id_of",
    "leg_of",
    "writable_accounts",
]
