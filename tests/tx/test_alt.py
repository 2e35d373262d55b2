"""Lookup table account data in the on-chain layout, and the TTL cache with a fake clock."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.pubkey import Pubkey

from galileo.tx.alt import AltCache, alt_from_account_data
from galileo.tx.errors import AltDecodeError
from tests.tx.shapes import key

U64_MAX = 2**64 - 1


def onchain(addresses: list[Pubkey], *, authority: Pubkey | None = None, state: int = 1) -> bytes:
    """An AddressLookupTable account as the runtime stores it: 56-byte meta, then 32-byte keys."""
    meta = struct.pack("<IQQB", state, U64_MAX, 300_000_123, 2)
    meta += b"\x01" + bytes(authority) if authority else b"\x00" + bytes(32)
    meta += b"\x00\x00"  # padding
    assert len(meta) == 56
    return meta + b"".join(bytes(a) for a in addresses)


def keys(n: int) -> list[Pubkey]:
    return [Pubkey.from_string(key(f"entry-{i}")) for i in range(n)]


@pytest.mark.parametrize("count", [0, 1, 3, 256])
@pytest.mark.parametrize("authority", [None, Pubkey.from_string(key("authority"))])
def test_decodes_the_onchain_layout(count: int, authority: Pubkey | None) -> None:
    address = key("table")
    account = alt_from_account_data(address, onchain(keys(count), authority=authority))
    assert account == AddressLookupTableAccount(Pubkey.from_string(address), keys(count))
    assert str(account.key) == address and account.addresses == keys(count)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "0 bytes"),
        (onchain([])[:40], "40 bytes"),
        (onchain(keys(2))[:-1], "is not a lookup table"),
        (onchain(keys(1), state=0), "UninitializedAccount"),
        (onchain(keys(1), state=7), "is not a lookup table"),
    ],
)
def test_rejects_other_data(data: bytes, problem: str) -> None:
    with pytest.raises(AltDecodeError, match=problem) as info:
        alt_from_account_data(key("table"), data)
    assert info.value.address == key("table")
    assert "56-byte header" in str(info.value)


def test_rejects_a_bad_address() -> None:
    with pytest.raises(AltDecodeError, match="not a base58 public key"):
        alt_from_account_data("0OIl", onchain([]))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_alt_decode_error(data: bytes) -> None:
    try:
        account = alt_from_account_data(key("table"), data)
    except AltDecodeError:
        return
    assert len(account.addresses) == (len(data) - 56) // 32


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def account(name: str) -> AddressLookupTableAccount:
    return AddressLookupTableAccount(Pubkey.from_string(key(name)), keys(2))


def test_cache_missing_put_get_many_and_expiry() -> None:
    clock = FakeClock()
    cache = AltCache(ttl=30.0, clock=clock)
    a, b, c = key("a"), key("b"), key("c")
    assert cache.missing([a, b, a]) == [a, b]
    cache.put(a, account("a"))
    assert cache.missing([a, b, c]) == [b, c]
    cache.put(b, account("b"))
    assert cache.get_many([b, a, b, c]) == [account("b"), account("a")]  # order kept, absent skipped

    clock.now += 29.9
    assert cache.missing([a, b]) == []
    cache.put(a, account("a"))  # refreshed
    clock.now += 0.1
    assert cache.missing([a, b]) == [b]
    assert cache.get_many([a, b]) == [account("a")]
    assert len(cache) == 1


def test_cache_put_checks_the_key_and_bounds_its_size() -> None:
    clock = FakeClock()
    cache = AltCache(ttl=10.0, clock=clock, max_entries=2)
    with pytest.raises(ValueError, match="does not match"):
        cache.put(key("a"), account("b"))
    cache.put(key("a"), account("a"))
    clock.now += 1
    cache.put(key("b"), account("b"))
    cache.put(key("c"), account("c"))  # evicts the oldest, a
    assert cache.missing([key("a"), key("b"), key("c")]) == [key("a")]
    clock.now += 9.5  # b expired, c fresh
    cache.put(key("d"), account("d"))  # evicts expired b first
    assert cache.missing([key("b"), key("c"), key("d")]) == [key("b")]


@pytest.mark.parametrize(("ttl", "size"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_cache_rejects_bad_settings(ttl: float, size: int) -> None:
    with pytest.raises(ValueError):
        AltCache(ttl=ttl, clock=FakeClock(), max_entries=size)
