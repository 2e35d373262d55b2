"""Shared fixtures: running the real ``galileo`` command, temporary config files, a worker record for policy tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

from broker.types import WorkerInfo

# Property tests judge their examples, not how fast they ran: on a loaded CI box a 200 ms deadline
# (hypothesis's default) fails a correct test.
settings.register_profile("galileo", deadline=None)
settings.load_profile("galileo")


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


def fake_worker(ip: str, capacity: int) -> WorkerInfo:
    """A ready local worker's record as the hub keeps it, for policies judged without a hub."""
    return WorkerInfo(
        routing_id=ip.encode(),
        worker_id=f"w/{ip}",
        ip=ip,
        family="ipv4",
        bind=True,
        host="h",
        pid=1,
        capacity=capacity,
        registered=0.0,
        last_seen=0.0,
    )
