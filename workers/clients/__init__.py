"""Upstream clients: importing this package registers every job handler with the executor."""

from workers import executor  # noqa: F401  (the generic http handler)
