"""`galileo farm scale` is state the rescans respect: a removed address stays out until `--add`,
an added one stays in, and a change that cannot be made exits 1 saying why."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker.jobs import HttpRequest
from broker.types import JobSpec
from galileo.config import GalileoConfig
from galileo.farm.control import control_request
from galileo.farm.coordinator import Farm
from tests.farm.conftest import Recorder, farm_config, loopback

Make = Callable[..., Any]


async def cli(*args: str | Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "galileo", "--log-level", "warning", *[str(a) for a in args],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "300"},
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), " ".join(err.decode().split())


async def traffic(farm: Farm, recorder: Recorder, seconds: float) -> set[str]:
    """Jobs for ``seconds``; the addresses they were sent from."""
    used: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        outs = await asyncio.gather(
            *(farm.submit(JobSpec(HttpRequest(url=f"{recorder.url}/t"), upstream="t")) for _ in range(20))
        )
        assert all(o.ok for o in outs), [o for o in outs if not o.ok][:3]
        used |= {o.ip for o in outs if o.ip}
        await asyncio.sleep(0.05)
    return used


async def test_scale_changes_survive_rescans_and_reloads(make_farm: Make, recorder: Recorder, tmp_path: Path) -> None:
    ips = loopback(3, start=140)
    out_ip, extra = ips[1], "127.0.0.143"  # extra: not in the config, added by hand
    farm: Farm = await make_farm(ips, rescan_every=0.1)
    rescans: list[float] = []
    real_rescan = farm.rescan

    async def counted() -> list[str]:
        rescans.append(time.monotonic())
        return await real_rescan()

    farm.rescan = counted  # type: ignore[method-assign]
    loaded = farm_config(ips, farm.runtime_dir)
    cfg = tmp_path / "c.yaml"
    listed = ", ".join(f"'{ip}'" for ip in ips)
    cfg.write_text(
        f"bot: {{network: {{enable_multiple_ip: true, manual_ips: [{listed}]}}}}\n"
        f"farm: {{runtime_dir: '{farm.runtime_dir}'}}\n"
    )

    async def reloaded() -> GalileoConfig:
        return loaded

    farm.config_loader = reloaded  # what SIGHUP runs

    sock = farm.runtime_dir / "control.sock"
    reply = await asyncio.to_thread(control_request, sock, {"cmd": "scale", "remove": [out_ip]})
    assert reply["results"] == [
        {
            "ip": out_ip,
            "ok": True,
            "message": f"{out_ip}: worker draining; held out until `galileo farm scale --add {out_ip}`",
        }
    ]
    deadline = time.monotonic() + 10
    while f"local/{out_ip}" in farm.hub.workers and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    removed_at = len(recorder.hits)
    seen = len(rescans)
    used = await traffic(farm, recorder, 1.2)
    await farm.reload()
    used |= await traffic(farm, recorder, 0.3)
    # Every 0.1 s: about 15 ran meanwhile on an idle machine; a few are what the check needs.
    assert len(rescans) - seen >= 3, "the periodic rescan did not run"
    assert out_ip not in used and out_ip not in {h.remote for h in recorder.hits[removed_at:]}
    assert f"local/{out_ip}" not in farm.supervisor.slots

    held = (await asyncio.to_thread(control_request, sock, {"cmd": "stats"}))["farm"]["held_out"]
    assert [h["ip"] for h in held] == [out_ip] and "scale --remove" in held[0]["reason"]
    code, out, err = await cli("farm", "stats", "-c", cfg)
    assert code == 0 and f"{out_ip} held out since" in " ".join(out.split())

    # changes that cannot be made: each says why, and the command exits 1
    code, out, err = await cli(
        "farm", "scale", "--add", ips[0], "--add", "192.0.2.77", "--remove", out_ip, "--remove", "127.0.0.199",
        "-c", cfg,
    )  # fmt: skip
    assert code == 1
    assert f"{ips[0]}: already has a worker (ready" in err
    assert "192.0.2.77: cannot bind: Cannot assign requested address" in err
    assert f"{out_ip}: already held out" in err
    assert "127.0.0.199: not an address of this farm" in err
    assert f"local/{ips[0]}" in farm.hub.workers and "local/192.0.2.77" not in farm.supervisor.slots

    # back in with --add, and an address the config does not list stays in too
    code, out, err = await cli("farm", "scale", "--add", out_ip, "--add", extra, "-c", cfg)
    assert code == 0 and f"{out_ip}: worker starting (no longer held out)" in out and f"{extra}: worker" in out, err
    assert await farm.wait_ready(count=4, timeout=15)
    seen = len(rescans)
    used = await traffic(farm, recorder, 1.0)
    await farm.reload()
    assert len(rescans) - seen >= 3
    assert {out_ip, extra} <= used and f"local/{extra}" in farm.hub.workers
    assert farm.snapshot()["farm"]["held_out"] == []
