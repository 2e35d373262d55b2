"""Issue 17.4: a refused CURVE key is visible on both ends, and SIGHUP reloads the authorised keys.

Real processes on loopback tcp: ``galileo farm start`` with ``farm.listen`` and
``galileo farm join``. A host whose key is not authorised exits 1 at once, saying its key was
refused; the coordinator logs one WARNING with the key's fingerprint however often it knocks.
Adding the key and sending SIGHUP lets it in; removing it and sending SIGHUP drops its workers,
and the join exits 1 again.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import zmq.auth

from broker.auth import fingerprint
from broker.link import CurveSettings, try_handshake
from tests.fault.conftest import StartCli, free_port, ips, wait_for, wait_stats

pytestmark = [pytest.mark.fault, pytest.mark.slow]

REMOTE = ips(1, start=130)[0]


@pytest.mark.fault
async def test_a_refused_key_is_told_and_logged_and_sighup_reloads_the_keys(
    tmp_path: Path, galileo_cli: StartCli
) -> None:
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    keys.mkdir()
    allowed.mkdir()
    zmq.auth.create_certificates(keys, "coordinator")
    zmq.auth.create_certificates(keys, "hosta")
    hosta, _ = zmq.auth.load_certificate(str(keys / "hosta.key"))
    server_public, _ = zmq.auth.load_certificate(str(keys / "coordinator.key"))
    curve = CurveSettings(secret_key_path=str(keys / "hosta.key_secret"), server_public_key=server_public)
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    rt = tmp_path / "rt"
    cfg = tmp_path / "coordinator.yaml"
    cfg.write_text(
        f"bot: {{network: {{enable_multiple_ip: true, manual_ips: ['{ips(1, start=131)[0]}']}}, "
        f"prometheus: {{enable: false}}}}\n"
        f"farm: {{runtime_dir: '{rt}', listen: '{endpoint}', "
        f"server_secret_key_path: '{keys / 'coordinator.key_secret'}', authorized_keys_dir: '{allowed}'}}\n"
    )
    join_cfg = tmp_path / "join.yaml"
    join_cfg.write_text(
        f"bot: {{network: {{enable_multiple_ip: true, manual_ips: ['{REMOTE}']}}}}\n"
        f"farm: {{runtime_dir: '{tmp_path / 'j'}'}}\n"
    )
    join_args = (
        "farm",
        "join",
        "--connect",
        endpoint,
        "--key",
        str(keys / "hosta.key_secret"),
        "--server-key",
        str(keys / "coordinator.key"),
        "-c",
        str(join_cfg),
    )
    coordinator = await galileo_cli("--log-level", "warning", "farm", "start", "-c", str(cfg), name="coordinator")
    await wait_stats(rt, lambda s: s["farm"]["ready"] == 1, 30, "the coordinator")

    # Not authorised: the host says so and exits 1 by itself.
    refused = await galileo_cli("--log-level", "info", *join_args, name="refused")
    assert await refused.wait(30) == 1
    assert "refused this host's key" in refused.output() and fingerprint(hosta) in refused.output()
    assert "joined" not in refused.output()
    # The coordinator says which key, once, however often it knocks.
    for _ in range(5):
        assert await try_handshake(endpoint, curve) == "refused"
    await wait_for(lambda: fingerprint(hosta) in coordinator.output(), 10, "the coordinator's warning")
    warnings = [line for line in coordinator.output().splitlines() if fingerprint(hosta) in line]
    assert len(warnings) == 1 and "level=warning" in warnings[0] and "refused a CURVE key" in warnings[0]

    # Authorised, then SIGHUP: the same host joins.
    (allowed / "hosta.key").write_bytes((keys / "hosta.key").read_bytes())
    coordinator.proc.send_signal(signal.SIGHUP)
    for _ in range(100):
        if await try_handshake(endpoint, curve, timeout=2.0) == "accepted":
            break
    else:
        raise AssertionError("the key was not accepted after SIGHUP")
    joined = await galileo_cli("--log-level", "info", *join_args, name="joined")
    await wait_stats(
        rt, lambda s: any(w["ip"] == REMOTE and w["state"] == "ready" for w in s["workers"]), 30, "the join"
    )

    # Removed, then SIGHUP: its workers are dropped, and the host exits 1 saying why.
    (allowed / "hosta.key").unlink()
    coordinator.proc.send_signal(signal.SIGHUP)
    assert await joined.wait(30) == 1
    assert "refused this host's key" in joined.output()
    await wait_stats(rt, lambda s: all(w["ip"] != REMOTE for w in s["workers"]), 10, "the remote worker gone")
    assert await coordinator.stop() == 0
