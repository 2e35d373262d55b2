"""Shared fixtures: running the real ``galileo`` command, and temporary config files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def run_galileo(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a fresh interpreter, as an operator would."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    full_env.pop("GALILEO_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "galileo", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def _write(text: str, name: str = "galileo.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write
