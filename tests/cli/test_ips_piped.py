"""Issue 17.10: `galileo ips` piped to another program prints full rows, as ls and git do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_piped_rows_are_not_cut_at_80_columns(tmp_path: Path) -> None:
    cfg = tmp_path / "galileo.yaml"
    cfg.write_text('bot: {network: {enable_multiple_ip: true, manual_ips: ["127.0.0.2", "203.0.113.250"]}}\n')
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "GALILEO_CONFIG")}
    env["NO_COLOR"] = "1"
    out = subprocess.run(  # stdout is a pipe, as with `galileo ips | grep ...`
        [sys.executable, "-m", "galileo", "ips", "-c", str(cfg)], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    (row,) = [line for line in out.stdout.splitlines() if "203.0.113.250" in line]
    assert "cannot bind: Cannot assign requested address (EADDRNOTAVAIL)" in row
    assert len(row) > 80
