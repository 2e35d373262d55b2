"""Upstream clients: importing this package registers every job handler with the executor.

One module per upstream (Jupiter, DFlow, Ultra, Jito, Solana RPC, Titan); each registers its
handlers with :func:`workers.clients.transport.upstream` when imported.
"""

from workers import executor  # noqa: F401  (the generic http handler)
from workers.clients import dflow, jito, jupiter, rpc, titan, ultra  # noqa: F401  (registers handlers)
