"""Address lookup tables: decoding on-chain account data and a small TTL cache.

Upstreams return only ALT *addresses*; the caller fetches the accounts over RPC
(``getAccountInfo`` / ``getMultipleAccounts``) and decodes them here. The cache does no I/O:
:meth:`AltCache.missing` names what to fetch, the caller fetches and stores each with
:meth:`AltCache.put`, then takes :meth:`AltCache.get_many` for the build.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from solders.address_lookup_table_account import (
    LOOKUP_TABLE_META_SIZE,
    AddressLookupTable,
    AddressLookupTableAccount,
)
from solders.pubkey import Pubkey

from galileo.tx.errors import AltDecodeError

__all__ = ["LOOKUP_TABLE_META_SIZE", "AltCache", "alt_from_account_data"]


def alt_from_account_data(address: str, data: bytes) -> AddressLookupTableAccount:
    """Decode an address lookup table account as stored on chain.

    Layout: a 56-byte header (u32 state tag = 1, deactivation slot u64, last extended slot
    u64, start index u8, optional authority, padding), then the addresses, 32 bytes each.
    Decoding is solders' ``AddressLookupTable.deserialize`` (the runtime's own code).
    Raises :class:`AltDecodeError` naming the address when the data is not a lookup table.
    """
    try:
        key = Pubkey.from_string(address)
    except ValueError:
        raise AltDecodeError(address, "the address is not a base58 public key") from None
    try:
        table = AddressLookupTable.deserialize(data)
    except ValueError as exc:
        raise AltDecodeError(
            address,
            f"account data ({len(data)} bytes) is not a lookup table: {exc} "
            f"(expected a {LOOKUP_TABLE_META_SIZE}-byte header then 32-byte addresses)",
        ) from None
    return AddressLookupTableAccount(key, table.addresses)


class AltCache:
    """Decoded lookup tables by address, each kept for ``ttl`` seconds of ``clock`` time.

    Tables change only when extended (appends) or closed, so a short TTL bounds staleness.
    When more than ``max_entries`` are held, expired entries go first, then the oldest.
    """

    def __init__(self, *, ttl: float, clock: Callable[[], float], max_entries: int = 4096) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._ttl = ttl
        self._clock = clock
        self._max = max_entries
        self._entries: dict[str, tuple[float, AddressLookupTableAccount]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def missing(self, addresses: Iterable[str]) -> list[str]:
        """Addresses with no fresh entry, deduplicated, in the order given: fetch these."""
        now = self._clock()
        return [a for a in dict.fromkeys(addresses) if self._fresh(a, now) is None]

    def put(self, address: str, account: AddressLookupTableAccount) -> None:
        """Store ``account`` under ``address`` (which must be its key), fresh from now."""
        if str(account.key) != address:
            raise ValueError(f"lookup table account key {account.key} does not match address {address}")
        now = self._clock()
        self._entries.pop(address, None)  # re-insert at the end: insertion order = age
        self._entries[address] = (now + self._ttl, account)
        if len(self._entries) > self._max:
            self._evict(now)

    def get_many(self, addresses: Iterable[str]) -> list[AddressLookupTableAccount]:
        """Fresh entries for ``addresses``, deduplicated, in the order given; absent ones skipped.

        Call :meth:`missing` first and put what it names; anything still absent (a failed
        fetch) is left out, and the build then compiles those accounts statically.
        """
        now = self._clock()
        found = (self._fresh(a, now) for a in dict.fromkeys(addresses))
        return [account for account in found if account is not None]

    def _fresh(self, address: str, now: float) -> AddressLookupTableAccount | None:
        entry = self._entries.get(address)
        if entry is None:
            return None
        expires, account = entry
        if now >= expires:
            del self._entries[address]
            return None
        return account

    def _evict(self, now: float) -> None:
        for address in [a for a, (expires, _) in self._entries.items() if now >= expires]:
            del self._entries[address]
        while len(self._entries) > self._max:
            del self._entries[next(iter(self._entries))]
