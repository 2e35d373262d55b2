"""Issue 16.8: hostile config and keypair files cost bounded time and memory, and exit 2 saying why.

An alias bomb, a list of half a million entries, a file of megabytes, a FIFO, a directory:
each is refused with a message that says what is wrong (and, for YAML, where). A keypair
problem names ``wallet.keypair_path``, from ``config check`` as from ``farm start``.
Processes are real where the point is what an operator sees (exit codes, never hanging).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from galileo.config import MAX_CONFIG_BYTES, MAX_VALUES, ConfigError, load_config, parse_config
from galileo.tx import ephemeral_keypair, write_keypair
from tests.conftest import run_galileo

SOL = "So11111111111111111111111111111111111111112"
# The classic "billion laughs": 9 levels of 9 aliases, 9^9 = 387,420,489 strings from 395 bytes,
# the last level where a value is expected (a report of it once quoted the whole expansion).
BOMB = (
    "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9 if prev else ['lol'] * 9)}]\n"
        for prev, name in zip(["", *"abcdefg"], "abcdefgh", strict=True)
    )
    + f"bot: [{', '.join(['*h'] * 9)}]\n"
)
LIVE_BLIND = f"""
lander: {{mode: live}}
blind_strategy: {{enable: true, base_mints: [{{mint: {SOL}, trade_size_range: [1000000000, 2000000000]}}]}}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.yaml")
    return [issue.located() for issue in info.value.issues]


def test_an_alias_bomb_is_refused_naming_its_line() -> None:
    assert len(BOMB) < 400
    (msg,) = problems(BOMB)
    assert msg.startswith("line ") and f"more than {MAX_VALUES} values" in msg and "alias" in msg


def test_an_alias_inside_its_own_collection_is_refused() -> None:
    (msg,) = problems("bot: &b {network: *b}\n")
    assert msg == "line 1: alias *b is inside the collection it names (endless)"


def test_a_huge_list_is_refused_before_it_is_built() -> None:
    text = "bot: {network: {manual_ips: [" + "1," * 500_000 + "]}}\n"  # just under 1 MiB
    assert len(text) < MAX_CONFIG_BYTES
    (msg,) = problems(text)
    assert f"more than {MAX_VALUES} values" in msg


def test_aliases_that_stay_small_are_fine() -> None:
    cfg = parse_config("upstreams:\n  jupiter: &up {base_url: 'https://a.example', timeout_ms: 900}\n  dflow: *up\n")
    assert cfg.upstreams.dflow.timeout_ms == 900


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * MAX_CONFIG_BYTES + "\nbot: {}\n")
    out = run_galileo("config", "check", str(path))
    assert out.returncode == 2, out.stderr
    assert f"a config file is at most {MAX_CONFIG_BYTES} bytes" in out.stderr


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_only_a_regular_file_is_read_as_the_config(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "galileo.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # nobody ever writes to it: reading it would wait forever
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path("/dev/zero")  # endless
    out = run_galileo("config", "check", str(path), timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    expected = {"fifo": "is a FIFO (named pipe)", "directory": "is a directory", "device": "is a character device"}
    assert f"{expected[kind]}, not a regular file" in out.stderr


async def test_load_config_runs_in_a_thread_off_the_event_loop(tmp_path: Path) -> None:
    """The entry point a SIGHUP reload calls: plain, stateless, bounded, fine in a thread."""
    good, bomb = tmp_path / "good.yaml", tmp_path / "bomb.yaml"
    good.write_text("bot: {network: {enable_multiple_ip: true}}\n")
    bomb.write_text(BOMB)
    cfg = await asyncio.to_thread(load_config, good)
    assert cfg.bot.network.enable_multiple_ip is True
    with pytest.raises(ConfigError, match="alias bomb"):
        await asyncio.to_thread(load_config, bomb)


def test_config_check_of_a_live_config_reads_its_keypair(tmp_path: Path) -> None:
    path = tmp_path / "galileo.yaml"
    missing = tmp_path / "id.json"
    path.write_text(f"{LIVE_BLIND}wallet: {{keypair_path: '{missing}'}}\n")
    out = run_galileo("config", "check", str(path))
    assert out.returncode == 2, out.stdout
    assert f"wallet.keypair_path: {missing}: file not found" in out.stderr
    write_keypair(missing, ephemeral_keypair())
    out = run_galileo("config", "check", str(path))
    assert out.returncode == 0, out.stderr
    assert f"wallet: {missing} (public key " in out.stdout and "mode 0600" in out.stdout


def test_a_fifo_as_the_keypair_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "id.json"
    os.mkfifo(fifo)
    path = tmp_path / "galileo.yaml"
    path.write_text(f"{LIVE_BLIND}wallet: {{keypair_path: '{fifo}'}}\n")
    for args in (("config", "check", str(path)), ("farm", "start", "-c", str(path), "--duration", "1")):
        out = run_galileo(*args, timeout=60)
        assert out.returncode == 2, (args, out.stderr)
        assert f"wallet.keypair_path: {fifo}: is not a regular file" in out.stderr, out.stderr


def test_farm_start_names_the_key_of_a_bad_keypair_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "id.json"
    bad.write_text("[1, 2, 3]")
    path = tmp_path / "galileo.yaml"
    path.write_text(f"{LIVE_BLIND}wallet: {{keypair_path: '{bad}'}}\nfarm: {{runtime_dir: '{tmp_path / 'rt'}'}}\n")
    out = run_galileo("farm", "start", "-c", str(path), "--duration", "1", timeout=60)
    assert out.returncode == 2, out.stderr
    assert f"wallet.keypair_path: {bad}: has 3 values, expected 64" in out.stderr
