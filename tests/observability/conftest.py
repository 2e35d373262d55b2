"""Observability tests reuse the farm fixtures: a recording HTTP server and real farms on loopback IPs."""

from tests.farm.conftest import make_farm, recorder

__all__ = ["make_farm", "recorder"]
