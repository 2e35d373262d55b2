"""Well-known program ids, Jito tip accounts, the simulated pools, router vaults and lookup tables.

Nothing here depends on the seed: pool, vault and ALT addresses are the same in every run, so
clients may cache ALT contents just as they would on mainnet.

Each aggregator program (Jupiter, DFlow, Titan) runs the router (:mod:`galileo.sim.router`) and
holds one vault per mint, owned by its PDA ``["vault", bump]``; a pool is only a price (its state
account, owned by its DEX's program id, is written by the simulator every slot).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from functools import cache
from itertools import combinations

from solders.address_lookup_table_account import (
    LOOKUP_TABLE_META_SIZE,
    AddressLookupTable,
    AddressLookupTableAccount,
    LookupTableMeta,
)
from solders.pubkey import Pubkey

from galileo.sim.prices import MINTS, SOL
from galileo.sim.router import vault_authority

__all__ = [
    "ALT_PROGRAM",
    "ATA_PROGRAM",
    "COMPUTE_BUDGET_PROGRAM",
    "DFLOW_PROGRAM",
    "JUPITER_EVENT_AUTHORITY",
    "JUPITER_PROGRAM",
    "ROUTERS",
    "SYSTEM_PROGRAM",
    "TIP_ACCOUNTS",
    "TITAN_PROGRAM",
    "TOKEN_PROGRAM",
    "AccountData",
    "Pool",
    "SimAccounts",
    "decode_alt",
    "derived_key",
    "encode_alt",
    "mint_data",
    "sim_accounts",
    "token_account_data",
]

SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
ATA_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
COMPUTE_BUDGET_PROGRAM = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
ALT_PROGRAM = Pubkey.from_string("AddressLookupTab1e1111111111111111111111111")
JUPITER_PROGRAM = Pubkey.from_string("JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4")
JUPITER_EVENT_AUTHORITY = Pubkey.from_string("D8cy77BBepLMngZx6ZukaTff5hCt1HrWyKk3Hnd9oitf")
DFLOW_PROGRAM = Pubkey.from_string("DF1ow4tspfHX9JwWJsAb9epbkA8hmpSEAtxXy1V27QBH")
TITAN_PROGRAM = Pubkey.from_string("T1TANpTeScyeqVzzgNViGDNrkQ6qHz9KrSBS4aNXvGT")
ROUTERS: tuple[Pubkey, ...] = (JUPITER_PROGRAM, DFLOW_PROGRAM, TITAN_PROGRAM)

TIP_ACCOUNTS: tuple[str, ...] = (
    "96gYZGLnJYVFmbjzopPSU6QiEV5fGqZNyN9nmNhvrZU5",
    "HFqU5x63VTqvQss8hp11i4wVV8bD44PvwucfZ2bU7gRe",
    "Cw8CFyM9FkoMi7K7Crf6HNQqf4uEMzpKw6QNghXLvLkY",
    "ADaUMid9yfUytqMBgopwjb2DTLSokTSzL1zt6iGPaS49",
    "DfXygSm4jCyNCybVYYK6DwvWqjKee8pbDmJGcLWNDXjh",
    "ADuUkR4vqLUMWXxW9gh6D6L8pMSawimctcNZ5pGwDcEt",
    "DttWaMuVvTiduZRnguLF7jNxTgiMBZ1hyAumKUiL2KRL",
    "3AVi9Tg9Uo68tJfuvoKvqKNWKkC5wPdSSdeBnizKZ6jT",
)

# (Jupiter label, DFlow venue, DEX program) per pool index; the programs are the public mainnet ids.
_DEXES: tuple[tuple[str, str, str], ...] = (
    ("Raydium CLMM", "Raydium CLMM", "CAMMCzo5YL8w4VFF8KVHrK22GGUsp5VTaW7grrKgrWqK"),
    ("Whirlpool", "Orca Whirlpool", "whirLbMiicVdio4qvUfM5KAg6Ct8VwpYzGff3uctyCc"),
    ("Meteora DLMM", "Meteora DLMM", "LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YuVaPwxo"),
)
_ALT_LAST_EXTENDED_SLOT = 370_000_000


def derived_key(label: str) -> Pubkey:
    """A stable pseudo-random address for a simulated account."""
    return Pubkey(hashlib.sha256(b"galileo-sim/" + label.encode()).digest())


@dataclass(frozen=True)
class Pool:
    """One simulated AMM pool for an (unordered) mint pair."""

    index: int
    label: str
    venue: str
    program: Pubkey
    amm: Pubkey
    alt: Pubkey


@dataclass(frozen=True)
class AccountData:
    """An account as ``getAccountInfo`` reports it."""

    lamports: int
    owner: Pubkey
    data: bytes
    executable: bool = False


def encode_alt(meta: LookupTableMeta, addresses: list[Pubkey]) -> bytes:
    """On-chain AddressLookupTable account data: u32 state tag 1 and the bincode meta, zero-padded
    to LOOKUP_TABLE_META_SIZE (56), then the 32-byte addresses.

    solders deserialises this layout (``AddressLookupTable.deserialize``) but its ``bytes()`` is
    bincode of the struct, not the account layout, hence this serializer.
    """
    header = (struct.pack("<I", 1) + bytes(meta)).ljust(LOOKUP_TABLE_META_SIZE, b"\0")
    return header + b"".join(bytes(a) for a in addresses)


def decode_alt(data: bytes) -> AddressLookupTable:
    """Parse on-chain AddressLookupTable account data with solders."""
    return AddressLookupTable.deserialize(data)


def mint_data(decimals: int, supply: int = 10**15) -> bytes:
    """SPL Mint: COption<authority>, supply u64, decimals u8, is_initialized, COption<freeze authority>."""
    return struct.pack("<I32sQBBI32s", 0, bytes(32), supply, decimals, 1, 0, bytes(32))


def token_account_data(mint: Pubkey, owner: Pubkey, amount: int, native_rent: int | None = None) -> bytes:
    """SPL token Account (165 bytes): mint, owner, amount, no delegate, initialized, is_native, no
    close authority. ``native_rent`` makes it a wrapped-SOL account holding that rent reserve."""
    native = struct.pack("<IQ", 1, native_rent) if native_rent is not None else struct.pack("<IQ", 0, 0)
    return (
        bytes(mint)
        + bytes(owner)
        + struct.pack("<Q", amount)
        + struct.pack("<I32s", 0, bytes(32))
        + b"\x01"
        + native
        + struct.pack("<Q", 0)
        + struct.pack("<I32s", 0, bytes(32))
    )


def _rent_exempt(size: int) -> int:
    return (128 + size) * 6960


class SimAccounts:
    """The simulator's static world: pools per pair, ALTs holding them, and the RPC-visible accounts."""

    def __init__(self) -> None:
        mints = sorted(MINTS)
        self.authorities: dict[Pubkey, Pubkey] = {r: vault_authority(r) for r in ROUTERS}
        self.vaults: dict[tuple[Pubkey, str], Pubkey] = {
            (r, m): derived_key(f"vault/{r}/{m}") for r in ROUTERS for m in mints
        }
        common = [SYSTEM_PROGRAM, TOKEN_PROGRAM, ATA_PROGRAM, JUPITER_EVENT_AUTHORITY]
        common += [Pubkey.from_string(m) for m in mints]
        common += [*self.authorities.values(), *self.vaults.values()]
        self.common_alt = derived_key("alt/common")
        self.pools: dict[tuple[str, str], tuple[Pool, ...]] = {}
        alts: dict[Pubkey, list[Pubkey]] = {self.common_alt: list(common)}
        for index, (_, _, program) in enumerate(_DEXES):
            alt = derived_key(f"alt/{index}")
            alts[alt] = [*common, Pubkey.from_string(program)]
        for a, b in combinations(mints, 2):
            pools = []
            for index, (label, venue, program) in enumerate(_DEXES):
                name = f"pool/{a}/{b}/{index}"
                pool = Pool(
                    index=index,
                    label=label,
                    venue=venue,
                    program=Pubkey.from_string(program),
                    amm=derived_key(name),
                    alt=derived_key(f"alt/{index}"),
                )
                alts[pool.alt].append(pool.amm)
                pools.append(pool)
            self.pools[(a, b)] = self.pools[(b, a)] = tuple(pools)
        self.alt_addresses: dict[Pubkey, list[Pubkey]] = alts
        self.alt_accounts: dict[Pubkey, AddressLookupTableAccount] = {
            key: AddressLookupTableAccount(key, addrs) for key, addrs in alts.items()
        }
        self.accounts: dict[str, AccountData] = {}
        meta = LookupTableMeta(last_extended_slot=_ALT_LAST_EXTENDED_SLOT)
        for key, addrs in alts.items():
            data = encode_alt(meta, addrs)
            self.accounts[str(key)] = AccountData(_rent_exempt(len(data)), ALT_PROGRAM, data)
        for m in MINTS.values():
            supply = 0 if m.mint == SOL else 10**15
            self.accounts[m.mint] = AccountData(_rent_exempt(82), TOKEN_PROGRAM, mint_data(m.decimals, supply))
        self.pool_by_amm: dict[Pubkey, tuple[str, str, Pool]] = {
            p.amm: (a, b, p) for (a, b), pools in self.pools.items() if a < b for p in pools
        }

    def vault(self, router: Pubkey, mint: str) -> Pubkey:
        """The vault of ``mint`` held by the router deployed at ``router``."""
        return self.vaults[(router, mint)]

    def pool(self, in_mint: str, out_mint: str, index: int) -> Pool:
        """The pool ``index`` of a pair (the pair must be one of the simulated mints)."""
        return self.pools[(in_mint, out_mint)][index]

    def account(self, address: str) -> AccountData | None:
        """The account at ``address``, or None when the simulator does not hold it."""
        return self.accounts.get(address)


@cache
def sim_accounts() -> SimAccounts:
    """The one shared, immutable SimAccounts (built once per process)."""
    return SimAccounts()
