"""Issue 17.3: amounts written the way people write them are numbers; the rest say how to write them."""

from __future__ import annotations

import pytest

from galileo.config import ConfigError, parse_config

SOL = "So11111111111111111111111111111111111111112"


def sizes(written: str) -> tuple[int, int]:
    cfg = parse_config(f"blind_strategy: {{base_mints: [{{mint: {SOL}, trade_size_range: [{written}]}}]}}")
    size = cfg.blind_strategy.base_mints[0].trade_size_range
    assert size is not None
    return size


@pytest.mark.parametrize(
    "written",
    ["100000000, 2000000000", "0.1e9, 2e9", "100_000_000, 2_000_000_000", "1e8, 2E9", "0.1e+9, 20e8", "1.0e8, 2.e9"],
)
def test_integer_amounts_in_every_usual_spelling(written: str) -> None:
    assert sizes(written) == (100_000_000, 2_000_000_000)
    assert all(type(v) is int for v in sizes(written))


def test_numbers_for_float_keys_too() -> None:
    cfg = parse_config("lander: {follow_timeout_s: 1e2, cu_limit_multiplier: 12e-1, tip_lamports: 1e4}")
    assert cfg.lander.follow_timeout_s == 100.0 and cfg.lander.cu_limit_multiplier == pytest.approx(1.2)
    assert cfg.lander.tip_lamports == 10_000


def issue(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    (only,) = info.value.issues
    return str(only)


def test_a_fraction_where_a_whole_number_is_needed_says_how_to_write_it() -> None:
    msg = issue("lander: {tip_lamports: 12345.5}")
    assert msg.startswith("lander.tip_lamports: 12345.5 is not an integer")
    assert "2e9, 0.1e9, 2_000_000_000 and 2000000000 all work" in msg


def test_a_quoted_number_says_to_drop_the_quotes() -> None:
    msg = issue("lander: {tip_lamports: '2e9'}")
    assert msg.startswith("lander.tip_lamports: '2e9' is not an integer but a quoted string")
    assert "without quotes" in msg
    assert "without quotes" in issue("lander: {follow_timeout_s: '5'}")
    assert "without quotes" not in issue("lander: {tip_lamports: 'lots'}")


def test_strings_that_only_look_numeric_stay_strings() -> None:
    cfg = parse_config("bot: {network: {manual_ips: ['10.0.0.1']}, prometheus: {listen: '127.0.0.1:9898'}}")
    assert cfg.bot.network.manual_ips == ["10.0.0.1"]
    assert issue("upstreams: {titan: {providers: [1e3]}}") == "upstreams.titan.providers[0]: 1000 is not a string"
