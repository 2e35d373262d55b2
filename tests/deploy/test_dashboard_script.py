"""deploy/scripts/check-dashboard-queries.py: what it asks Prometheus, and the demo farm it starts.

The script itself runs a farm and a real Prometheus for minutes (see deploy/README.md); here,
its two pure parts: every dashboard query, with Grafana's variables replaced, and the config
of the farm it scrapes.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from galileo.config import parse_config

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "scripts" / "check-dashboard-queries.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_dashboard_queries", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_panel_query_and_variable_is_asked_with_variables_replaced(script: ModuleType) -> None:
    dashboard = json.loads(script.DASHBOARD.read_text())
    asked = script.queries(dashboard, "45s")
    targets = [t for p in dashboard["panels"] for t in p.get("targets", [])]
    variables = [v for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert len(asked) == len(targets) + len(variables) >= 40
    for where, expr in asked:
        assert "$" not in expr, (where, expr)
    assert any("[45s]" in expr for _, expr in asked)
    assert ("variable $ip", "label_values(galileo_worker_up, ip)") in asked


@pytest.mark.parametrize("mode", ["live", "dry_run"])
def test_the_demo_farm_serves_metrics_in_the_mode_asked(script: ModuleType, tmp_path: Path, mode: str) -> None:
    text = script.farm_yaml(
        "http://127.0.0.1:1", ["127.0.0.2"], tmp_path / "rt", tmp_path / "w.json", "127.0.0.1:9999", mode
    )
    cfg = parse_config(text)
    assert cfg.bot.prometheus.enable and cfg.bot.prometheus.listen == "127.0.0.1:9999"
    assert cfg.lander.mode == mode and cfg.blind_strategy.enable
