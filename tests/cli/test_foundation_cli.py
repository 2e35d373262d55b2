"""The foundation commands, run as an operator runs them: a real process, real exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from galileo import __version__
from galileo.inventory import default_route_sources
from tests.conftest import run_galileo


def test_version_and_help() -> None:
    out = run_galileo("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"galileo {__version__}"
    helps = [
        run_galileo(*args, "--help")
        for args in ((), ("ips",), ("config",), ("config", "check"), ("config", "init"), ("config", "schema"))
    ]
    for h in helps:
        assert h.returncode == 0, h.stderr
        assert "Usage:" in h.stdout
    assert "bind-probed" in " ".join(helps[1].stdout.split())


def test_ips_json_lists_the_default_route_address_and_not_loopback(tmp_path: Path) -> None:
    out = run_galileo("ips", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert all(set(r) == {"ip", "interface", "family", "source", "usable", "reason"} for r in rows)
    by_ip = {r["ip"]: r for r in rows}
    assert by_ip["127.0.0.1"]["usable"] is False and by_ip["127.0.0.1"]["reason"] == "loopback"
    primary = default_route_sources()["ipv4"]  # this machine's eth0 address
    assert by_ip[primary]["usable"] is True
    assert by_ip[primary]["interface"] not in (None, "lo")


def test_ips_with_multi_ip_on_offers_eth0_and_never_loopback(write_config: Callable[[str], Path]) -> None:
    cfg = write_config("bot: {network: {enable_multiple_ip: true}}")
    rows = json.loads(run_galileo("ips", "--json", "--config", str(cfg)).stdout)
    usable = {r["ip"] for r in rows if r["usable"]}
    assert default_route_sources()["ipv4"] in usable
    assert not any(ip.startswith("127.") or ip == "::1" for ip in usable)


def test_ips_manual_list_reports_the_bind_error(write_config: Callable[[str], Path]) -> None:
    cfg = write_config('bot: {network: {enable_multiple_ip: true, manual_ips: ["127.0.0.2", "192.0.2.1"]}}')
    out = run_galileo("ips", "--json", "-c", str(cfg))
    assert out.returncode == 0, out.stderr
    by_ip = {r["ip"]: r for r in json.loads(out.stdout)}
    assert by_ip["127.0.0.2"]["usable"] is True and by_ip["127.0.0.2"]["source"] == "manual"
    assert by_ip["192.0.2.1"]["usable"] is False
    assert "cannot bind" in by_ip["192.0.2.1"]["reason"]
    table = run_galileo("ips", "-c", str(cfg))
    assert table.returncode == 0 and "192.0.2.1" in table.stdout and "cannot bind" in table.stdout


def test_config_check_names_every_bad_key_and_exits_2(write_config: Callable[[str], Path]) -> None:
    cfg = write_config("bot:\n  network:\n    manual_ips: ['127.0.0.2', 'not-an-ip']\n    per_ip_limit: 8\n")
    out = run_galileo("config", "check", str(cfg))
    assert out.returncode == 2
    assert "bot.network.manual_ips[1]: 'not-an-ip' is not an IP address" in out.stderr
    assert "bot.network.per_ip_limit: unknown key" in out.stderr
    assert "Traceback" not in out.stderr


def test_config_check_ok_prints_a_summary(write_config: Callable[[str], Path]) -> None:
    cfg = write_config("bot: {network: {enable_multiple_ip: true, manual_ips: ['127.0.0.2', '127.0.0.3']}}")
    out = run_galileo("config", "check", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout and "127.0.0.2, 127.0.0.3" in out.stdout


def test_config_check_missing_file_exits_2(tmp_path: Path) -> None:
    out = run_galileo("config", "check", str(tmp_path / "nope.yaml"))
    assert out.returncode == 2 and "file not found" in out.stderr


def test_bad_config_for_ips_exits_2(write_config: Callable[[str], Path]) -> None:
    cfg = write_config("bot: {network: {manual_ips: [300.1.1.1]}}")
    out = run_galileo("ips", "-c", str(cfg))
    assert out.returncode == 2 and "bot.network.manual_ips[0]" in out.stderr


def test_config_init_writes_a_valid_template_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "g.yaml"
    first = run_galileo("config", "init", str(target))
    assert first.returncode == 0, first.stderr
    assert run_galileo("config", "check", str(target)).returncode == 0
    target.write_text("# mine\n")
    second = run_galileo("config", "init", str(target))
    assert second.returncode == 2 and "not overwriting" in second.stderr
    assert target.read_text() == "# mine\n"


def test_config_schema_is_json_schema() -> None:
    out = run_galileo("config", "schema")
    assert out.returncode == 0
    schema = json.loads(out.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "GalileoConfig" in schema["$defs"]


def test_bad_log_level_is_a_usage_error() -> None:
    out = run_galileo("--log-level", "loud", "ips")
    assert out.returncode == 2
