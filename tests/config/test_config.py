"""Config: every error at once, with its key path; defaults; the template and schema stay in step."""

from __future__ import annotations

import typing

import msgspec
import pytest
import yaml

from galileo.config import ConfigError, json_schema, parse_config
from galileo.config.schema import GalileoConfig
from galileo.config.template import TEMPLATE


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.yaml")
    return [str(i) for i in info.value.issues]


def test_empty_file_gives_defaults() -> None:
    cfg = parse_config("")
    assert cfg.bot.network.enable_multiple_ip is False
    assert cfg.bot.network.manual_ips == []
    assert cfg.bot.prometheus.listen == "127.0.0.1:9898"


def test_every_error_is_reported_with_its_key_path() -> None:
    found = issues_of(
        """
bot:
  network:
    manual_ips: ["127.0.0.2", "not-an-ip"]
    per_ip_limit: 4
  prometheus:
    listen: 9898
"""
    )
    assert "bot.network.manual_ips[1]: 'not-an-ip' is not an IP address" in found
    assert any(f.startswith("bot.network.per_ip_limit: unknown key") for f in found)
    assert any(f.startswith("bot.prometheus.listen: 9898 is not a string") for f in found)
    assert len(found) == 3


def test_wrong_types_name_the_value() -> None:
    found = issues_of("bot: {network: {enable_multiple_ip: 'sometimes', manual_ips: 3}}")
    assert "bot.network.enable_multiple_ip: 'sometimes' is not true or false" in found
    assert "bot.network.manual_ips: 3 is not a list" in found


def test_duplicate_manual_ips_are_refused_even_when_spelled_differently() -> None:
    assert issues_of("bot: {network: {manual_ips: ['::1', '0:0:0:0:0:0:0:1']}}") == [
        "bot.network.manual_ips: ['::1', '0:0:0:0:0:0:0:1'] lists '0:0:0:0:0:0:0:1' twice"
    ]


def test_unknown_key_suggests_the_close_one() -> None:
    (msg,) = issues_of("bot: {network: {enable_multiple_ips: true}}")
    assert "did you mean 'enable_multiple_ip'" in msg


def test_retired_keys_of_the_original_bot_explain_themselves() -> None:
    (msg,) = issues_of("bot: {network: {per_ip_inflight_limit: 2}}")
    assert "retired" in msg and "adapts at run time" in msg


def test_duplicate_yaml_keys_are_errors_not_silently_last_wins() -> None:
    (msg,) = issues_of("bot:\n  network: {}\nbot:\n  prometheus: {}\n")
    assert "duplicate key 'bot'" in msg and "line 3" in msg


def test_invalid_yaml_reports_line_and_column() -> None:
    (msg,) = issues_of("bot: [1, 2\n")
    assert "invalid YAML" in msg and "line" in msg


def test_top_level_must_be_a_mapping() -> None:
    assert issues_of("- 1\n- 2\n") == ["[1, 2] is not a mapping"]


def test_yaml_is_loaded_safely() -> None:
    found = issues_of("bot: !!python/object/apply:os.system ['true']\n")
    assert len(found) == 1 and "invalid YAML" in found[0]


def test_template_parses_and_documents_every_key() -> None:
    cfg = parse_config(TEMPLATE)
    assert cfg == GalileoConfig()  # the template shows the defaults
    raw = yaml.safe_load(TEMPLATE)

    def walk(tp: type[msgspec.Struct], data: dict[str, object], path: str) -> None:
        hints = typing.get_type_hints(tp)
        for name in tp.__struct_fields__:
            assert name in data, f"template lacks {path}{name}"
            sub = hints[name]
            if isinstance(sub, type) and issubclass(sub, msgspec.Struct):
                value = data[name]
                assert isinstance(value, dict)
                walk(sub, value, f"{path}{name}.")

    walk(GalileoConfig, raw, "")


def test_json_schema_forbids_unknown_keys() -> None:
    schema = json_schema()
    network = schema["$defs"]["NetworkConfig"]
    assert network["additionalProperties"] is False
    assert set(network["properties"]) == {"enable_multiple_ip", "manual_ips"}


def test_the_example_file_is_the_template() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "galileo.example.yaml"
    assert example.read_text() == TEMPLATE, "regenerate galileo.example.yaml with `galileo config init`"


def test_a_rate_per_key_needs_the_key_it_is_for() -> None:
    found = issues_of("upstreams: {jupiter: {base_url: 'https://api.jup.ag/swap/v1', rate_limit_per_key: 30}}")
    assert found == [
        "upstreams.jupiter.rate_limit_per_key: requires api_key_env in this section: "
        "it is that API key's limit, shared by every IP"
    ]
    cfg = parse_config(
        "upstreams: {dflow: {base_url: 'https://quote-api.dflow.net', api_key_env: DFLOW_KEY, rate_limit_per_key: 30}}"
    )
    assert cfg.upstreams.dflow.rate_limit_per_key == 30.0 and cfg.upstreams.dflow.rate_limit_per_ip is None
    assert cfg.upstreams.jupiter.rate_limit_per_key is None  # the default: learnt
