"""Building v0 transactions: compile with lookup tables, sign, size-check, keep tips static."""

from __future__ import annotations

import base64

import pytest
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from broker.solana import AccountMeta, Instruction
from galileo.tx.build import PACKET_DATA_SIZE, BuiltTransaction, build_transaction, to_solders_instruction
from galileo.tx.errors import SignerMismatch, TooManyAccountLocks, TransactionTooLarge, TxBuildError
from galileo.tx.merge import merge_legs
from galileo.tx.tip import JITO_TIP_ACCOUNTS, tip_instruction
from tests.tx.shapes import dflow_leg, jupiter_leg, key, r, w

BLOCKHASH = str(Hash(bytes(range(32))))
TIP = JITO_TIP_ACCOUNTS[5]


def pk(address: str) -> Pubkey:
    return Pubkey.from_string(address)


def table(name: str, addresses: list[str]) -> AddressLookupTableAccount:
    return AddressLookupTableAccount(pk(key(name)), [pk(a) for a in addresses])


def looked_up(message: MessageV0, tables: list[AddressLookupTableAccount]) -> list[Pubkey]:
    """The accounts a v0 message loads through its lookups, resolved against ``tables``."""
    by_key = {t.key: t.addresses for t in tables}
    return [
        by_key[lookup.account_key][i]
        for lookup in message.address_table_lookups
        for i in (*lookup.writable_indexes, *lookup.readonly_indexes)
    ]


def assert_signed(built: BuiltTransaction, *signers: Keypair) -> None:
    tx = built.transaction
    assert tx.verify_with_results() == [True] * len(signers)
    signed = to_bytes_versioned(tx.message)
    for signature, keypair in zip(tx.signatures, signers, strict=True):
        assert signature.verify(keypair.pubkey(), signed)
    assert VersionedTransaction.from_bytes(built.wire) == tx
    assert base64.b64decode(built.base64) == built.wire == bytes(tx)
    assert built.size == len(built.wire) <= PACKET_DATA_SIZE
    assert Signature.from_string(built.signature) == tx.signatures[0]


def test_merged_legs_with_alts_compile_sign_and_keep_the_blockhash() -> None:
    payer = Keypair()
    owner = str(payer.pubkey())
    jup, dflow = jupiter_leg(owner, pools=8), dflow_leg(owner, pools=8)
    merged = merge_legs([jup, dflow], tail=[tip_instruction(owner, TIP, 2_444)])
    alts = [
        table("alt-jupiter", [key(f"jup-pool-{i}") for i in range(8)] + [key("unused")]),
        table("alt-dflow", [key(f"dflow-pool-{i}") for i in range(8)]),
    ]
    assert [str(t.key) for t in alts] == list(merged.alts)
    built = build_transaction(payer, merged.instructions, alts, BLOCKHASH)

    assert_signed(built, payer)
    message = built.message
    assert built.transaction.message == message
    assert message.recent_blockhash == Hash.from_string(BLOCKHASH)
    assert built.blockhash == BLOCKHASH
    assert message.account_keys[0] == payer.pubkey()
    loaded = set(looked_up(message, alts))
    assert loaded == {pk(key(f"{tag}-pool-{i}")) for tag in ("jup", "dflow") for i in range(8)}
    assert pk(TIP) in message.account_keys


def test_without_alts_the_same_transaction_is_larger() -> None:
    payer = Keypair()
    owner = str(payer.pubkey())
    ixs = merge_legs([jupiter_leg(owner, pools=8)]).instructions
    plain = build_transaction(payer, ixs, [], BLOCKHASH)
    with_alt = build_transaction(payer, ixs, [table("t", [key(f"jup-pool-{i}") for i in range(8)])], BLOCKHASH)
    assert with_alt.size < plain.size
    assert plain.message.address_table_lookups == []


def test_extra_signers() -> None:
    payer, other = Keypair(), Keypair()
    ix = Instruction(
        key("program"),
        (AccountMeta(str(payer.pubkey()), True, True), AccountMeta(str(other.pubkey()), True, False)),
        b"\x01",
    )
    built = build_transaction(payer, [ix], [], BLOCKHASH, signers=[other, payer])
    assert_signed(built, payer, other)
    with pytest.raises(SignerMismatch, match=f"no keypair for required signer.*{other.pubkey()}"):
        build_transaction(payer, [ix], [], BLOCKHASH)
    stranger = Keypair()
    with pytest.raises(SignerMismatch, match=f"{stranger.pubkey()} sign nothing"):
        build_transaction(payer, [ix], [], BLOCKHASH, signers=[other, stranger])


def test_oversized_instruction_set_raises_with_its_size() -> None:
    payer = Keypair()
    ixs = [Instruction(key("program"), tuple(w(key(f"acct-{i}-{j}")) for j in range(8)), b"") for i in range(5)]
    with pytest.raises(TransactionTooLarge) as info:
        build_transaction(payer, ixs, [], BLOCKHASH)
    assert info.value.size > PACKET_DATA_SIZE
    assert f"{info.value.size} bytes" in str(info.value)
    # The same accounts through a lookup table fit.
    alt = table("big", [key(f"acct-{i}-{j}") for i in range(5) for j in range(8)])
    assert build_transaction(payer, ixs, [alt], BLOCKHASH).size <= PACKET_DATA_SIZE


def test_one_byte_over_the_limit_is_refused() -> None:
    payer = Keypair()

    def with_data(n: int) -> list[Instruction]:
        return [Instruction(key("program"), (r(key("a")),), bytes(n))]

    def size(n: int) -> int:
        return build_transaction(payer, with_data(n), [], BLOCKHASH, max_size=10_000).size

    guess = PACKET_DATA_SIZE - size(0)  # the data length prefix grows by one byte at 128
    exact = next(n for n in range(guess - 2, guess + 1) if size(n) == PACKET_DATA_SIZE)
    assert build_transaction(payer, with_data(exact), [], BLOCKHASH).size == PACKET_DATA_SIZE
    with pytest.raises(TransactionTooLarge) as info:
        build_transaction(payer, with_data(exact + 1), [], BLOCKHASH)
    assert info.value.size == PACKET_DATA_SIZE + 1


def test_tip_account_stays_static_even_when_an_alt_holds_it() -> None:
    payer = Keypair()
    owner = str(payer.pubkey())
    swap = Instruction(key("program"), (w(key("pool-0")), w(key("pool-1")), r(key("pool-2"))), b"\x09")
    tip = tip_instruction(owner, TIP, 5_000)
    # The tip account sits between other entries, so masking it must not shift their indexes.
    alt = table("shared", [key("pool-0"), TIP, key("pool-1"), JITO_TIP_ACCOUNTS[0], key("pool-2")])

    # What the compiler does on its own: the tip account would be loaded through the table.
    raw = MessageV0.try_compile(
        payer.pubkey(), [to_solders_instruction(swap), to_solders_instruction(tip)], [alt], Hash.default()
    )
    assert pk(TIP) in looked_up(raw, [alt])

    built = build_transaction(payer, [swap, tip], [alt], BLOCKHASH)
    message = built.message
    assert built.transaction.message == message
    assert pk(TIP) in message.account_keys
    assert pk(TIP) not in looked_up(message, [alt])
    assert set(looked_up(message, [alt])) == {pk(key("pool-0")), pk(key("pool-1")), pk(key("pool-2"))}
    [lookup] = message.address_table_lookups
    assert sorted(lookup.writable_indexes) == [0, 2] and list(lookup.readonly_indexes) == [4]
    assert_signed(built, payer)


def test_static_accounts_can_be_chosen() -> None:
    payer = Keypair()
    swap = Instruction(key("program"), (w(key("pool-0")), w(key("keep-me"))), b"")
    alt = table("t", [key("pool-0"), key("keep-me")])
    message = build_transaction(payer, [swap], [alt], BLOCKHASH, static_accounts=[key("keep-me")]).message
    assert looked_up(message, [alt]) == [pk(key("pool-0"))]
    assert pk(key("keep-me")) in message.account_keys


def test_duplicate_tables_are_compiled_once() -> None:
    payer = Keypair()
    swap = Instruction(key("program"), (w(key("pool-0")),), b"")
    alt = table("t", [key("pool-0")])
    built = build_transaction(payer, [swap], [alt, alt], BLOCKHASH)
    assert len(built.message.address_table_lookups) == 1


@pytest.mark.parametrize("blockhash", ["", "not-base58-0OIl", "1111", str(Pubkey.default()) + "1"])
def test_bad_blockhash(blockhash: str) -> None:
    with pytest.raises(TxBuildError, match="blockhash"):
        build_transaction(Keypair(), [], [], blockhash)


def test_bad_key_names_the_instruction_and_key() -> None:
    good = Instruction(key("program"), (), b"")
    bad = Instruction(key("program"), (w(key("a")), w("not a key")), b"")
    with pytest.raises(TxBuildError, match=r"instruction 1: 'not a key' is not a base58 public key"):
        build_transaction(Keypair(), [good, bad], [], BLOCKHASH)
    with pytest.raises(TxBuildError, match="static account 'zz0'"):
        build_transaction(Keypair(), [good], [], BLOCKHASH, static_accounts=["zz0"])


def test_too_many_accounts_is_a_build_error() -> None:
    ix = Instruction(key("program"), tuple(w(key(f"many-{i}")) for i in range(300)), b"")
    with pytest.raises(TxBuildError, match="cannot compile"):
        build_transaction(Keypair(), [ix], [], BLOCKHASH)


def test_more_accounts_than_the_runtime_locks_are_refused_before_signing(monkeypatch: pytest.MonkeyPatch) -> None:
    payer = Keypair()
    # 70 accounts through one table: 31 + 70 x 1 bytes of lookups fit a packet, 72 locks do not.
    many = [key(f"locked-{i}") for i in range(70)]
    ix = Instruction(key("program"), tuple(r(a) for a in many), b"")
    alt = table("wide", many)
    signed: list[object] = []
    monkeypatch.setattr("galileo.tx.build.VersionedTransaction", lambda *a: signed.append(a))
    with pytest.raises(TooManyAccountLocks) as info:
        build_transaction(payer, [ix], [alt], BLOCKHASH)
    assert (info.value.count, info.value.limit) == (72, 64) and signed == []  # payer + program + 70, unsigned
    assert "72 accounts, over the runtime's limit of 64 by 8" in str(info.value)
    assert "blind_strategy.max_accounts" in str(info.value)
    monkeypatch.undo()
    assert len(build_transaction(payer, [ix], [alt], BLOCKHASH, max_accounts=128).message.account_keys) == 2
