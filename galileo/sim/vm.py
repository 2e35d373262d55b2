"""The chain every landed transaction runs on: a LiteSVM instance holding the simulator's world.

What is in it, besides LiteSVM's own programs (System, Compute Budget, SPL Token and Token-2022,
Associated Token Account, Memo, Address Lookup Table, all real):

* the router program (:mod:`galileo.sim.router`) at Jupiter's, DFlow's and Titan's program ids;
* the simulated mints (wrapped SOL included: LiteSVM does not create the native mint);
* each router's vaults (one token account per mint, owned by the router's PDA, funded deep);
* every pool's state account, rewritten from the price model whenever the slot changes;
* the address lookup tables the aggregators return, and the eight Jito tip accounts;
* wallets: whoever asks for an airdrop, or (with ``fund_lamports``) whoever first shows up.

Signatures and blockhashes are checked by the simulator before a transaction gets here (the
same ed25519 check, with Jito's and RPC's own error messages), so LiteSVM's copies of those
checks are off; so is its transaction history, since the simulator keeps its own landing book
and a failed bundle must leave no trace.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

import orjson
from solders.account import Account
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.token.associated import get_associated_token_address
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata

from galileo.sim.accounts import (
    ALT_PROGRAM,
    ROUTERS,
    SYSTEM_PROGRAM,
    TIP_ACCOUNTS,
    TOKEN_PROGRAM,
    SimAccounts,
    decode_alt,
    token_account_data,
)
from galileo.sim.prices import FEE_PPM, MINTS, SOL, PriceModel
from galileo.sim.router import POOL_MAGIC, router_elf
from galileo.sim.txmeta import TxMeta, TxMetaBook, balances_of

__all__ = ["LAMPORTS_PER_SOL", "MAX_WALLETS", "ChainVM", "Execution", "WalletLimit", "pool_burn_units"]

LAMPORTS_PER_SOL = 10**9
_VAULT_DEPTH = 2**62  # raw units per vault: more than any run can drain
_WSOL_VAULT_LAMPORTS = 10**18
_TIP_ACCOUNT_LAMPORTS = 1_000_000  # the tip accounts exist (and are rent exempt) before any tip
_WSOL = Pubkey.from_string(SOL)


def pool_burn_units(index: int) -> int:
    """Compute units a swap through pool ``index`` burns on top of the router's own work."""
    return 60_000 + 17_000 * index


@dataclass(frozen=True, slots=True)
class Execution:
    """What running one transaction did: ``err`` is the RPC's JSON error (None = success).

    ``logs`` are kept for simulations and failures only: a landed transaction's are not read by
    anyone, and hundreds a second of them would be most of the landing book's memory.
    """

    signature: str
    err: object
    logs: tuple[str, ...]
    units: int
    fee: int

    @property
    def ok(self) -> bool:
        """The transaction succeeded."""
        return self.err is None


MAX_WALLETS = 10_000  # wallets the simulator credits (airdrops, fund_lamports): a bound on its records


class WalletLimit(Exception):
    """The simulator already credits MAX_WALLETS wallets and will not credit another."""


@dataclass(slots=True)
class Wallet:
    """A wallet the simulator credited: what it put in, for realised P&L."""

    deposited: int = 0
    atas: tuple[tuple[str, Pubkey], ...] = ()  # (mint, its associated token account), found once


@dataclass
class ChainVM:
    """LiteSVM plus the simulator's accounts; every method runs at the slot last given to ``at``."""

    prices: PriceModel
    accounts: SimAccounts
    fund_lamports: int
    svm: LiteSVM = field(init=False)
    wallets: dict[Pubkey, Wallet] = field(default_factory=dict)
    metas: TxMetaBook = field(default_factory=TxMetaBook)  # what getTransaction answers from
    slot: int = -1
    _airdrops: int = 0

    def __post_init__(self) -> None:
        svm = LiteSVM().with_sigverify(False).with_blockhash_check(False).with_transaction_history(0)
        elf = router_elf()
        for router in ROUTERS:
            svm.add_program(router, elf)
        for address, static in self.accounts.accounts.items():
            svm.set_account(Pubkey.from_string(address), Account(static.lamports, static.data, static.owner))
        token_rent = svm.minimum_balance_for_rent_exemption(165)
        for (router, mint), vault in self.accounts.vaults.items():
            owner = self.accounts.authorities[router]
            if mint == SOL:
                data = token_account_data(_WSOL, owner, _WSOL_VAULT_LAMPORTS, native_rent=token_rent)
                svm.set_account(vault, Account(_WSOL_VAULT_LAMPORTS + token_rent, data, TOKEN_PROGRAM))
            else:
                data = token_account_data(Pubkey.from_string(mint), owner, _VAULT_DEPTH)
                svm.set_account(vault, Account(token_rent, data, TOKEN_PROGRAM))
        for tip in TIP_ACCOUNTS:
            svm.set_account(Pubkey.from_string(tip), Account(_TIP_ACCOUNT_LAMPORTS, b"", SYSTEM_PROGRAM))
        self.svm = svm

    # -- the clock and the pools ----------------------------------------------------------------

    def at(self, slot: int) -> None:
        """Move the chain to ``slot``: the clock sysvar, and every pool's state at that slot."""
        if slot == self.slot:
            return
        self.slot = slot
        self.svm.warp_to_slot(slot)
        for (a, b), pools in self.accounts.pools.items():
            if a > b:
                continue
            for pool in pools:
                state = self.prices.pool_state(a, b, pool.index, slot)
                data = struct.pack(
                    "<QQQQQ", POOL_MAGIC, state.reserve_a, state.reserve_b, FEE_PPM, pool_burn_units(pool.index)
                )
                data += bytes(Pubkey.from_string(a)) + bytes(Pubkey.from_string(b))
                self.svm.set_account(pool.amm, Account(1_461_600, data, pool.program))

    # -- wallets --------------------------------------------------------------------------------

    def airdrop(self, address: Pubkey, lamports: int) -> str:
        """Credit ``lamports`` (as ``requestAirdrop``); the answer is a signature for the record.

        Raises WalletLimit for a new wallet once MAX_WALLETS are credited.
        """
        if address not in self.wallets and len(self.wallets) >= MAX_WALLETS:
            raise WalletLimit(f"the simulator credits at most {MAX_WALLETS:,} wallets")
        account = self.svm.get_account(address)
        if account is None or account.lamports == 0:
            account = Account(0, b"", SYSTEM_PROGRAM)
        self.svm.set_account(
            address, Account(account.lamports + lamports, account.data, account.owner, account.executable)
        )
        self.wallets.setdefault(address, Wallet()).deposited += lamports
        self._airdrops += 1
        digest = hashlib.sha512(f"galileo-sim/airdrop/{address}/{self._airdrops}".encode()).digest()
        return str(Signature(digest))

    def ensure_funded(self, address: Pubkey) -> None:
        """Fund a wallet seen for the first time with ``fund_lamports`` (when it has nothing)."""
        if self.fund_lamports <= 0 or address in self.wallets or len(self.wallets) >= MAX_WALLETS:
            return
        if self.balance(address) == 0:
            self.airdrop(address, self.fund_lamports)
        else:
            self.wallets[address] = Wallet()

    def balance(self, address: Pubkey) -> int:
        """Lamports at ``address`` (0 when there is no account)."""
        account = self.svm.get_account(address)
        return 0 if account is None else account.lamports

    def account(self, address: Pubkey) -> Account | None:
        """The account at ``address``; None when it does not exist (no lamports)."""
        account = self.svm.get_account(address)
        return None if account is None or account.lamports == 0 else account

    def token_amount(self, address: Pubkey) -> tuple[int, int] | None:
        """(amount, decimals) of the token account at ``address``, None when it is not one."""
        account = self.account(address)
        if account is None or account.owner != TOKEN_PROGRAM or len(account.data) != 165:
            return None
        mint = str(Pubkey(bytes(account.data[:32])))
        decimals = MINTS[mint].decimals if mint in MINTS else 0
        return struct.unpack_from("<Q", bytes(account.data), 64)[0], decimals

    def wallet_value(self, owner: Pubkey) -> tuple[int, dict[str, int]]:
        """(value in lamports at the current slot's mid prices, raw balance per mint).

        Native SOL, plus each simulated mint's associated token account (its rent included: it
        comes back on close).
        """
        slot = self.slot
        sol_usd = self.prices.mid_usd(SOL, slot)
        lamports = self.balance(owner)
        balances: dict[str, int] = {"SOL": lamports}
        value = float(lamports)
        record = self.wallets.get(owner) or Wallet()
        if not record.atas:  # a PDA derivation costs ~13 µs: /sim/stats values every wallet
            record.atas = tuple((m, get_associated_token_address(owner, Pubkey.from_string(m))) for m in MINTS)
        for mint, ata in record.atas:
            m = MINTS[mint]
            account = self.account(ata)
            if account is None:
                continue
            value += account.lamports
            if mint == SOL:
                balances["WSOL"] = account.lamports
                continue
            amount = struct.unpack_from("<Q", bytes(account.data), 64)[0]
            balances[m.symbol] = amount
            value += amount / 10**m.decimals * self.prices.mid_usd(mint, slot) / sol_usd * LAMPORTS_PER_SOL
        return int(value), balances

    # -- running transactions -------------------------------------------------------------------

    def _run(self, tx: VersionedTransaction, simulate: bool) -> Execution:
        result = self.svm.simulate_transaction(tx) if simulate else self.svm.send_transaction(tx)
        signature = str(tx.signatures[0])
        if isinstance(result, FailedTransactionMetadata):
            meta = result.meta()
            err = orjson.loads(result.to_json())["err"]
            return Execution(signature, err, tuple(meta.logs()), meta.compute_units_consumed(), meta.fee())
        meta = result if isinstance(result, TransactionMetadata) else result.meta()
        logs = tuple(meta.logs()) if simulate else ()
        return Execution(signature, None, logs, meta.compute_units_consumed(), meta.fee())

    def execute(self, tx: VersionedTransaction) -> Execution:
        """Run ``tx`` as the network would: a failed transaction still pays its fee.

        Its balance changes are kept for ``getTransaction`` (:mod:`galileo.sim.txmeta`).
        """
        writable, readonly = [], []
        for lookup in getattr(tx.message, "address_table_lookups", None) or ():
            addresses = self._table(lookup.account_key)
            writable += [addresses[i] for i in lookup.writable_indexes if i < len(addresses)]
            readonly += [addresses[i] for i in lookup.readonly_indexes if i < len(addresses)]
        keys = [*tx.message.account_keys, *writable, *readonly]
        pre, pre_tokens = balances_of([self.svm.get_account(k) for k in keys])
        run = self._run(tx, simulate=False)
        post, post_tokens = balances_of([self.svm.get_account(k) for k in keys])
        meta = TxMeta(
            slot=self.slot,
            wire=bytes(tx),
            err=run.err,
            fee=run.fee,
            units=run.units,
            logs=run.logs,
            pre=pre,
            post=post,
            pre_tokens=pre_tokens,
            post_tokens=post_tokens,
            loaded_writable=tuple(str(k) for k in writable),
            loaded_readonly=tuple(str(k) for k in readonly),
        )
        self.metas.put(run.signature, meta)
        return run

    def simulate(self, tx: VersionedTransaction) -> Execution:
        """Run ``tx`` and keep nothing (``simulateTransaction``)."""
        return self._run(tx, simulate=True)

    def execute_bundle(self, txs: list[VersionedTransaction]) -> list[Execution]:
        """Run ``txs`` in order, all or nothing: the first failure restores every account the
        bundle could have touched, fees included, and the rest are not run."""
        keys = {k for tx in txs for k in self.touched(tx)}
        before = {k: self.svm.get_account(k) for k in keys}
        done: list[Execution] = []
        for tx in txs:
            result = self.execute(tx)
            done.append(result)
            if not result.ok:
                for key, account in before.items():
                    self.svm.set_account(key, account if account is not None else Account(0, b"", SYSTEM_PROGRAM))
                for run in done:  # nothing of a failed bundle is on chain
                    self.metas.drop(run.signature)
                break
        return done

    def touched(self, tx: VersionedTransaction) -> list[Pubkey]:
        """Every account ``tx`` can write: its static keys and the ones its lookups load."""
        msg = tx.message
        keys = list(msg.account_keys)
        for lookup in getattr(msg, "address_table_lookups", None) or ():
            addresses = self._table(lookup.account_key)
            keys += [addresses[i] for i in lookup.writable_indexes if i < len(addresses)]
        return keys

    def _table(self, key: Pubkey) -> list[Pubkey]:
        """The addresses of lookup table ``key`` (empty when there is none)."""
        addresses = self.accounts.alt_addresses.get(key)
        if addresses is None:  # a table someone made on this chain
            account = self.account(key)
            if account is None or account.owner != ALT_PROGRAM:
                return []
            addresses = list(decode_alt(bytes(account.data)).addresses)
        return addresses
