"""Landing: assemble swap legs into signed transactions, send them, follow them until they land.

Strategies use what this package exports, never its modules' internals; landing imports no
strategy (tests/test_import_direction.py).
"""

from galileo.landing.assemble import Assembled, SimulationFailed, assemble, leg_of
from galileo.landing.landers import LanderStack, Receipt, bundle_id_of
from galileo.landing.stats import LanderKind, LandingStats, Settled

__all__ = [
    "Assembled",
    "LanderKind",
    "LanderStack",
    "LandingStats",
    "Receipt",
    "Settled",
    "SimulationFailed",
    "assemble",
    "bundle_id_of",
    "leg_of",
]
