"""Wallet keypair files: round trip, every way a file can be wrong, and no key bytes in messages."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
from solders.keypair import Keypair

from galileo.tx.errors import WalletError
from galileo.tx.keys import ephemeral_keypair, load_keypair, write_keypair


def leaks(err: WalletError, secret: bytes) -> bool:
    """Whether the error text shows any run of the key's byte values as a file would."""
    text = str(err)
    runs = [secret[i : i + 3] for i in range(len(secret) - 2)]
    return any(",".join(map(str, run)) in text.replace(" ", "") for run in runs)


def assert_clean(err: WalletError, secret: bytes, path: Path) -> None:
    assert str(path) in str(err)
    assert not leaks(err, secret)
    assert err.__cause__ is None
    assert err.__context__ is None or err.__suppress_context__  # parser messages stay hidden


def test_write_then_load_round_trips_with_mode_0600(tmp_path: Path) -> None:
    keypair = Keypair()
    path = tmp_path / "id.json"
    write_keypair(path, keypair)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == list(bytes(keypair))  # solana-keygen's format
    assert load_keypair(path) == keypair
    assert load_keypair(str(path)).pubkey() == keypair.pubkey()


def test_write_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_keypair(tmp_path / "id.json", Keypair())
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "id.json").stat().st_mode) == 0o600


def test_write_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "id.json"
    first = Keypair()
    write_keypair(path, first)
    with pytest.raises(WalletError, match="already exists"):
        write_keypair(path, Keypair())
    assert load_keypair(path) == first


def test_write_into_missing_directory_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "id.json"
    with pytest.raises(WalletError, match="cannot create") as info:
        write_keypair(path, Keypair())
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(WalletError, match="file not found") as info:
        load_keypair(path)
    assert info.value.path == str(path)
    assert "solana-keygen new" in str(info.value)


def test_directory_is_not_a_keypair(tmp_path: Path) -> None:
    with pytest.raises(WalletError, match="directory"):
        load_keypair(tmp_path)


@pytest.mark.parametrize("count", [0, 32, 63, 65])
def test_wrong_length(tmp_path: Path, count: int) -> None:
    secret = bytes(Keypair())
    values = (list(secret) * 2)[:count]
    path = tmp_path / "id.json"
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    with pytest.raises(WalletError, match=f"has {count} values, expected 64") as info:
        load_keypair(path)
    assert_clean(info.value, secret, path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("not json at all", "not valid JSON"),
        ("[1, 2, 3", "not valid JSON"),
        ('{"secret": [1, 2]}', "not a JSON array of integers"),
        ('["a", "b"]', "not a JSON array of integers"),
        ("[true, false]", "not a JSON array of integers"),
        ("[1.5, 2.5]", "not a JSON array of integers"),
    ],
)
def test_not_a_json_byte_array(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "id.json"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(WalletError, match=problem):
        load_keypair(path)


def test_values_outside_a_byte(tmp_path: Path) -> None:
    secret = bytes(Keypair())
    values = list(secret)
    values[10] = 300
    path = tmp_path / "id.json"
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    with pytest.raises(WalletError, match=r"outside 0\.\.255") as info:
        load_keypair(path)
    assert_clean(info.value, secret, path)


def test_public_half_not_matching_secret_half(tmp_path: Path) -> None:
    secret = bytes(Keypair())[:32] + bytes(Keypair().pubkey())
    path = tmp_path / "id.json"
    path.write_text(json.dumps(list(secret)))
    path.chmod(0o600)
    with pytest.raises(WalletError, match="does not match") as info:
        load_keypair(path)
    assert_clean(info.value, secret, path)


def test_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "id.json"
    path.write_text("[" + ",".join(["1"] * 40_000) + "]")
    path.chmod(0o600)
    with pytest.raises(WalletError, match="larger than"):
        load_keypair(path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_loose_permissions_warn_with_the_fix(tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int) -> None:
    keypair = Keypair()
    path = tmp_path / "id.json"
    write_keypair(path, keypair)
    path.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="galileo.wallet"):
        assert load_keypair(path) == keypair
    [record] = [r for r in caplog.records if r.name == "galileo.wallet"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert str(path) in message
    assert f"chmod 600 {path}" in message
    assert f"{mode:04o}" in message
    assert not any(",".join(map(str, bytes(keypair)[i : i + 3])) in message for i in range(62))


def test_private_file_loads_silently(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "id.json"
    write_keypair(path, Keypair())
    path.chmod(0o400)
    with caplog.at_level(logging.DEBUG, logger="galileo.wallet"):
        load_keypair(path)
    assert [r for r in caplog.records if r.name == "galileo.wallet"] == []


def test_ephemeral_keypairs_are_fresh() -> None:
    a, b = ephemeral_keypair(), ephemeral_keypair()
    assert a.pubkey() != b.pubkey()
    assert Keypair.from_bytes(bytes(a)) == a
