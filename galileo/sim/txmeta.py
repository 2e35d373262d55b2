"""What each executed transaction did to balances: the ``meta`` ``getTransaction`` answers with.

Before a transaction runs, the lamports and token balances of every account it names (static
keys, then the lookup tables' writable and read-only addresses, the order the RPC gives) are
read; after it runs, again. A failed bundle leaves no record (nothing of it is on chain); a
plain transaction that failed keeps one (it paid its fee). Reading ~40 accounts twice costs
~70 µs of the ~1 ms an executed swap bundle costs.

Records are kept for the last ``MAX_RECORDS`` transactions (each ~1-2 KB: the wire bytes and
the balances), so a busy run's memory stays bounded; an older signature is "not found", as a
node that pruned it would say. Enough for a follower that asks within seconds.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

from solders.account import Account
from solders.pubkey import Pubkey

__all__ = ["MAX_RECORDS", "TokenAmount", "TxMeta", "TxMetaBook", "balances_of"]

MAX_RECORDS = 10_000
_TOKEN_PROGRAMS = frozenset(
    {
        Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"),
        Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"),
    }
)


@dataclass(frozen=True, slots=True)
class TokenAmount:
    """A token account's balance: ``account_index`` in the transaction's keys."""

    account_index: int
    mint: str
    owner: str
    program: str
    amount: int


@dataclass(slots=True)
class TxMeta:
    """One executed transaction, as ``getTransaction`` reports it."""

    slot: int
    wire: bytes
    err: object
    fee: int
    units: int
    logs: tuple[str, ...]
    pre: tuple[int, ...]
    post: tuple[int, ...]
    pre_tokens: tuple[TokenAmount, ...]
    post_tokens: tuple[TokenAmount, ...]
    loaded_writable: tuple[str, ...]
    loaded_readonly: tuple[str, ...]


def balances_of(accounts: list[Account | None]) -> tuple[tuple[int, ...], tuple[TokenAmount, ...]]:
    """Lamports of each account, and the token balances among them (SPL Token and Token-2022)."""
    lamports = tuple(0 if a is None else a.lamports for a in accounts)
    tokens = []
    for i, a in enumerate(accounts):
        if a is None or a.owner not in _TOKEN_PROGRAMS or len(a.data) < 165 or a.lamports == 0:
            continue
        data = bytes(a.data[:72])
        tokens.append(
            TokenAmount(
                i, str(Pubkey(data[:32])), str(Pubkey(data[32:64])), str(a.owner), struct.unpack_from("<Q", data, 64)[0]
            )
        )
    return lamports, tuple(tokens)


class TxMetaBook:
    """The last ``limit`` executed transactions' metas, by signature."""

    def __init__(self, limit: int = MAX_RECORDS) -> None:
        self.limit = limit
        self._by_signature: OrderedDict[str, TxMeta] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_signature)

    def put(self, signature: str, meta: TxMeta) -> None:
        self._by_signature[signature] = meta
        self._by_signature.move_to_end(signature)
        while len(self._by_signature) > self.limit:
            self._by_signature.popitem(last=False)

    def drop(self, signature: str) -> None:
        """Forget ``signature`` (its bundle failed: nothing of it is on chain)."""
        self._by_signature.pop(signature, None)

    def get(self, signature: str) -> TxMeta | None:
        return self._by_signature.get(signature)
