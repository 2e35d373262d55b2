"""Chain state the coordinator needs to build transactions: a fresh blockhash, lookup tables, simulations.

Both are fetched *through the farm* (RPC jobs from the worker IPs), like every other network
call. The blockhash is refreshed in the background every 2 s and on demand when older than
10 s; lookup tables change rarely and are cached for 5 minutes. The current block height is
estimated from the newest blockhash: a blockhash is valid for 150 blocks, so
``height ~= last_valid_block_height - 150``.

The current slot costs nothing more: it is the newest slot any answer named (the blockhash
answers' context slot, every quote's ``contextSlot``) plus one slot per 400 ms since.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from solders.address_lookup_table_account import AddressLookupTableAccount

from broker.results import Accounts, Blockhash, Simulation
from galileo.client import FarmClient
from galileo.tx.alt import AltCache, alt_from_account_data
from galileo.tx.errors import AltDecodeError
from galileo.upstreams import Upstreams

__all__ = ["BLOCKHASH_WINDOW", "SLOT_SECONDS", "ChainError", "ChainState"]

log = logging.getLogger("galileo.chain")

BLOCKHASH_WINDOW = 150
REFRESH_EVERY = 2.0
STALE_AFTER = 10.0
ALT_TTL = 300.0
SLOT_SECONDS = 0.4  # a Solana slot's target length


class ChainError(RuntimeError):
    """A blockhash or lookup table could not be had."""


class ChainState:
    def __init__(self, farm: FarmClient, upstreams: Upstreams, clock: Callable[[], float] = time.monotonic) -> None:
        self.farm = farm
        self.upstreams = upstreams
        self.clock = clock
        self.alts = AltCache(ttl=ALT_TTL, clock=clock)
        self._blockhash: Blockhash | None = None
        self._fetched = float("-inf")
        self._slot: int | None = None  # the newest slot an answer named
        self._slot_at = float("-inf")
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_forever(), name="chain-refresh")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self._fetch()
            except ChainError as exc:
                log.warning("blockhash refresh failed: %s", exc)
            await asyncio.sleep(REFRESH_EVERY)

    async def _fetch(self) -> Blockhash:
        async with self._lock:
            if self._blockhash is not None and self.clock() - self._fetched < 0.2:
                return self._blockhash
            out = await self.farm.run(self.upstreams.latest_blockhash())
            if not out.ok or not isinstance(out.value, Blockhash):
                raise ChainError(f"getLatestBlockhash: {out.result} {out.error}".strip())
            newest = (
                self._blockhash is None or out.value.last_valid_block_height >= self._blockhash.last_valid_block_height
            )
            if newest:
                self._blockhash, self._fetched = out.value, self.clock()
            self.saw_slot(out.value.slot)
            return self._blockhash or out.value

    async def blockhash(self) -> Blockhash:
        """A recent blockhash (fetched now if the cached one is older than 10 s)."""
        if self._blockhash is None or self.clock() - self._fetched > STALE_AFTER:
            return await self._fetch()
        return self._blockhash

    def block_height(self) -> int | None:
        """The estimated current block height, from the newest blockhash seen."""
        if self._blockhash is None:
            return None
        return self._blockhash.last_valid_block_height - BLOCKHASH_WINDOW

    def saw_slot(self, slot: int) -> None:
        """An answer named ``slot`` (a blockhash's context, a quote's ``contextSlot``): the chain is there at least."""
        if slot > 0 and (self._slot is None or slot > self._slot):
            self._slot, self._slot_at = slot, self.clock()

    def slot(self) -> int | None:
        """The chain's current slot, estimated (None: no answer named one yet)."""
        if self._slot is None:
            return None
        return self._slot + max(0, int((self.clock() - self._slot_at) / SLOT_SECONDS))

    async def simulate(self, transaction: bytes) -> Simulation:
        """``simulateTransaction`` of ``transaction`` now: its units and its error, if it fails."""
        out = await self.farm.run(self.upstreams.simulate(transaction))
        if not out.ok or not isinstance(out.value, Simulation):
            raise ChainError(f"simulateTransaction: {out.result} {out.error}".strip())
        return out.value

    async def lookup_tables(self, addresses: list[str]) -> list[AddressLookupTableAccount]:
        """The lookup tables at ``addresses`` (cached; missing ones fetched in one RPC call)."""
        wanted = list(dict.fromkeys(addresses))
        missing = self.alts.missing(wanted)
        if missing:
            out = await self.farm.run(self.upstreams.accounts(missing))
            if not out.ok or not isinstance(out.value, Accounts):
                raise ChainError(f"getMultipleAccounts: {out.result} {out.error}".strip())
            for info in out.value.accounts:
                if info.data is None:
                    raise ChainError(f"lookup table {info.address} does not exist")
                try:
                    self.alts.put(info.address, alt_from_account_data(info.address, info.data))
                except AltDecodeError as exc:
                    raise ChainError(str(exc)) from None
        return self.alts.get_many(wanted)
