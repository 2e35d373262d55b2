"""deploy/galileo.service: parses, verifies with systemd-analyze where available, says what we mean."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "galileo.service"
DROP_IN = DEPLOY / "galileo.service.d" / "restart-backoff.conf"


def parse(path: Path) -> configparser.ConfigParser:
    ini = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"))
    ini.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    ini.read_string(path.read_text())
    return ini


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}
    for unit, factor in units.items():
        if value.endswith(unit) and value[: -len(unit)].isdigit():
            return int(value[: -len(unit)]) * factor
    return float(value)


def test_unit_says_what_the_farm_needs() -> None:
    unit = parse(UNIT)
    service = unit["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "RestartSec": "5",
        "RestartPreventExitStatus": "2",
        "KillMode": "mixed",
        "ExecStart": "/usr/local/bin/galileo farm start --config /etc/galileo/galileo.yaml",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "User": "galileo",
        "EnvironmentFile": "-/etc/galileo/galileo.env",
        "RuntimeDirectory": "galileo",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
    }
    assert {k: service.get(k) for k in expected} == expected
    assert "AF_NETLINK" in service["RestrictAddressFamilies"]  # the IP inventory reads interfaces over netlink
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"]

    # A crash loop backs off instead of hitting the start limit: even failing at once, fewer
    # starts than StartLimitBurst fit in StartLimitIntervalSec at one start per RestartSec.
    interval = seconds(unit["Unit"]["StartLimitIntervalSec"])
    burst = int(unit["Unit"]["StartLimitBurst"])
    assert interval / seconds(service["RestartSec"]) + 1 < burst
    # Stopping drains for 5 s and gives workers 10 s + 2 s: systemd must wait longer than that.
    assert seconds(service["TimeoutStopSec"]) > 17
    # The coordinator feeds the watchdog every half interval.
    assert seconds(service["WatchdogSec"]) >= 10


def test_drop_in_grows_the_restart_delay() -> None:
    service = parse(DROP_IN)["Service"]
    assert int(service["RestartSteps"]) > 0
    assert seconds(service["RestartMaxDelaySec"]) > seconds(parse(UNIT)["Service"]["RestartSec"])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    # verify insists that ExecStart's binary exists; galileo is not installed in /usr/local/bin here.
    text = UNIT.read_text().replace("/usr/local/bin/galileo", "/bin/true")
    unit = tmp_path / "galileo.service"
    unit.write_text(text)
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [line for line in proc.stderr.splitlines() if "galileo.service" in line]
    assert proc.returncode == 0 and not problems, proc.stderr
