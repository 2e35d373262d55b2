"""Landing: assemble a round trip into signed transactions, send them, follow them until they land."""

from galileo.landing.assemble import Assembled, RoundTrip, assemble
from galileo.landing.landers import LanderStack, Receipt

__all__ = ["Assembled", "LanderStack", "Receipt", "RoundTrip", "assemble"]
