"""Logging for galileo processes; the implementation is shared with workers in :mod:`broker.logs`."""

from __future__ import annotations

from broker.logs import LogFormat, redact, register_secret, setup_logging

__all__ = ["LogFormat", "redact", "register_secret", "setup_logging"]
