"""Issue 9.7: landing is safe: dry run sends nothing, signed bytes are only re-broadcast, keys stay secret.

* ``lander.mode: dry_run`` with the blind strategy running for real: the simulator receives no
  transaction or bundle at all, while the log says what would have been sent.
* Under upstream faults, a duplicate ``land()`` and a blockhash that expires while followed, the
  lander stack only ever re-broadcasts the bytes that were signed once: no second signature
  for an opportunity, ever.
* A keypair file others can read is warned about.
* A full live run (``galileo farm start``, debug logs, JSON) with fake secrets in every place a
  secret can be (an API key, a Jito uuid, an RPC URL with ``?api-key=``, a Titan token): the
  simulator requires them, so they were used, and no byte of them is in any log line of the
  coordinator or its workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from solders.keypair import Keypair

from galileo.chain import ChainState
from galileo.config import parse_config
from galileo.farm.runner import load_wallet
from galileo.landing import LanderStack, LandingStats, bundle_id_of
from galileo.sim import SimServer
from galileo.tx import write_keypair
from galileo.upstreams import Upstreams
from tests.fault.conftest import SOL, FarmFactory, SimFactory, StartCli, farm_yaml, ips, sim_control, sim_get, wait_for
from tests.fault.landing import opportunities, recording_bundles, sim_blockhash

pytestmark = [pytest.mark.fault, pytest.mark.slow]

FAKE = {
    "JUPITER_API_KEY": "FAKESECRET-jupiter-7f3a9c2e",
    "TITAN_TOKEN": "FAKESECRET-titan-5d81b04f",
    "GALILEO_FAULT_JITO_UUID": "FAKESECRET-jito-c0ffee11",
}
RPC_KEY = "FAKESECRET-rpc-9e4477aa"


def blind_yaml(sim: SimServer, rt: Path, mode: str, extra_upstreams: str = "") -> str:
    u = sim.url
    return farm_yaml(
        ips(4, start=130 if mode == "live" else 140),
        rt,
        f"""
upstreams:
  jupiter: {{base_url: '{u}/jupiter/swap/v1', api_key_env: JUPITER_API_KEY}}
  jito: {{endpoints: ['{u}/jito/frankfurt', '{u}/jito/ny'], rate_limit_per_ip: null}}
{extra_upstreams}
intermedium:
  mints: [EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v, Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCE8BenwNYB,
          JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN]
blind_strategy:
  enable: true
  base_mints:
    - mint: {SOL}
      trade_size_range: [500_000_000, 2_000_000_000]
      trade_range_count: 3
      trade_range_strategy: exponential
      min_quote_profit: 20_000
lander: {{mode: {mode}, follow_timeout_s: 5}}
wallet: {{keypair_path: '{rt / "id.json"}'}}
""",
    )


def wallet_file(rt: Path) -> Path:
    rt.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_keypair(rt / "id.json", Keypair())
    return rt / "id.json"


@pytest.mark.fault
async def test_dry_run_blind_strategy_sends_nothing(
    sim_factory: SimFactory, galileo_cli: StartCli, tmp_path: Path
) -> None:
    sim = await sim_factory()
    rt = tmp_path / "rt"
    wallet_file(rt)
    cfg = tmp_path / "galileo.yaml"
    cfg.write_text(blind_yaml(sim, rt, "dry_run", f"  rpc: {{urls: ['{sim.url}/rpc']}}"))
    run = await galileo_cli(  # per-send lines are at debug
        "--log-level", "debug", "--log-format", "json", "farm", "start", "-c", str(cfg), "--duration", "6", name="dry"
    )
    assert await run.wait(60) == 0, run.output()[-3000:]

    stats = await sim_get(sim, "/sim/stats")
    assert stats["requests"]["by_service"].get("jupiter", {}).get("200", 0) > 50  # the strategy did run
    assert all(v["received"] == 0 for v in stats["sends"].values()), stats["sends"]
    assert not [s for s in stats["requests"]["by_service"] if s.startswith("jito")], stats["requests"]["by_service"]
    lines = [orjson.loads(line) for line in run.output().splitlines() if line.startswith("{")]
    would = [r for r in lines if r.get("msg", "").startswith("dry run: would send bundle")]
    assert would, "no opportunity in the run: the dry run was not tested"


@pytest.mark.fault
async def test_lander_only_rebroadcasts_the_signed_bytes_under_faults_duplicates_and_expiry(
    sim_factory: SimFactory, farm_factory: FarmFactory
) -> None:
    sim = await sim_factory(slot_ms=100, land_delay_slots=10_000)  # accepted, never landed: followed to expiry
    extra = f"""
upstreams:
  rpc: {{urls: ['{sim.url}/rpc']}}
  jito: {{endpoints: ['{sim.url}/jito/frankfurt', '{sim.url}/jito/ny', '{sim.url}/jito/tokyo'],
          rate_limit_per_ip: null}}
lander: {{mode: live, follow_timeout_s: 60}}
"""
    farm = await farm_factory(ips(3, start=150), extra)
    upstreams = Upstreams(farm.cfg)
    chain = ChainState(farm, upstreams)
    stats = LandingStats()
    lander = LanderStack(farm, upstreams, chain, farm.cfg.lander, ["jito"], stats)
    blockhash, last_valid = await sim_blockhash(sim)
    opps = opportunities(Keypair(), blockhash, last_valid, 6)
    chain.start()
    try:
        await sim_control(sim, {"faults": {"5xx": 0.2, "reset": 0.2, "malformed": 0.1}})
        with recording_bundles() as seen:
            receipts = await asyncio.wait_for(asyncio.gather(*(lander.land(o, SOL) for o in opps)), 60)
            again = await lander.land(opps[0], SOL)  # the same transaction again: not sent twice
            await sim_control(sim, {"faults": {}})
            await asyncio.sleep(2.5)  # a few rounds of following: statuses asked, nothing re-sent
            before_expiry = len(seen.bundles)
            await sim_control(sim, {"advance_slots": 1_000})  # every blockhash expires now
            await wait_for(lambda: not lander.follower.pending, 30, "following to end at expiry")
            after_expiry = len(seen.bundles)
    finally:
        await lander.close(timeout=1)
        await chain.stop()

    wires = {o.jito.wire for o in opps if o.jito is not None}
    assert again == [] and stats.duplicates == 1
    assert seen.transactions and set(seen.transactions) <= wires, "a transaction the lander never signed was sent"
    assert after_expiry == before_expiry, "something was sent while following or after expiry"
    # At most one send per endpoint per opportunity (no worker died, nothing to re-dispatch).
    assert len(seen.transactions) <= 3 * len(opps)
    accepted = [r for per in receipts for r in per if r.accepted]
    assert accepted and {r.ident for r in accepted} <= {bundle_id_of([o.jito.signature]) for o in opps if o.jito}
    assert any(not r.accepted for per in receipts for r in per), "the faults never hit a send: nothing was tested"
    assert stats.totals()["expired"] == len({r.ident for r in accepted})  # followed once each, until expiry


@pytest.mark.fault
async def test_a_send_answered_already_processed_is_followed_as_landed_not_failed(
    sim_factory: SimFactory, farm_factory: FarmFactory
) -> None:
    """What a re-sent job meets when its first send got through: the same bytes, already on chain."""
    sim = await sim_factory(slot_ms=50, land_delay_slots=2)
    extra = f"""
upstreams:
  rpc: {{urls: ['{sim.url}/rpc']}}
  jito: {{endpoints: ['{sim.url}/jito/frankfurt'], rate_limit_per_ip: null}}
lander: {{mode: live, follow_timeout_s: 20}}
"""
    farm = await farm_factory(ips(2, start=160), extra)
    upstreams = Upstreams(farm.cfg)
    chain = ChainState(farm, upstreams)
    blockhash, last_valid = await sim_blockhash(sim)
    (opp,) = opportunities(Keypair(), blockhash, last_valid, 1)
    first_stats, again_stats = LandingStats(), LandingStats()
    first = LanderStack(farm, upstreams, chain, farm.cfg.lander, ["jito"], first_stats)
    again = LanderStack(farm, upstreams, chain, farm.cfg.lander, ["jito"], again_stats)  # forgot it was sent
    chain.start()
    try:
        (sent,) = await first.land(opp, SOL)
        await wait_for(lambda: first_stats.totals()["landed"] == 1, 20, "the bundle to land")
        (resent,) = await again.land(opp, SOL)
        await wait_for(lambda: again_stats.totals()["landed"] == 1, 20, "the re-sent bundle to be followed to landed")
    finally:
        await first.close(timeout=1)
        await again.close(timeout=1)
        await chain.stop()
    assert sent.accepted and resent.accepted and resent.ident == sent.ident, (sent, resent)
    assert again_stats.sends[("jito", resent.endpoint, "failed")] == 0
    stats = await sim_get(sim, "/sim/stats")
    rejected = stats["sends"]["jito_bundle"]["rejected"]
    assert rejected.get("already_processed") == 1, stats["sends"]  # the simulator did refuse the second send


@pytest.mark.fault
def test_a_keypair_file_others_can_read_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="galileo.wallet")
    path = wallet_file(tmp_path / "w")
    cfg = parse_config(f"wallet: {{keypair_path: '{path}'}}")
    load_wallet(cfg)
    assert not caplog.records, "a 0600 keypair must not be warned about"
    os.chmod(path, 0o644)
    load_wallet(cfg)
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING and "chmod 600" in warning.getMessage()
    assert str(path) in warning.getMessage() and "0644" in warning.getMessage()


@pytest.mark.fault
async def test_secrets_are_used_and_never_logged_in_a_live_debug_run(
    sim_factory: SimFactory, galileo_cli: StartCli, tmp_path: Path
) -> None:
    api_keys = {"jupiter": FAKE["JUPITER_API_KEY"], "jito": FAKE["GALILEO_FAULT_JITO_UUID"], "rpc": RPC_KEY}
    sim = await sim_factory(api_keys=api_keys, faults={"5xx": 0.03, "reset": 0.03, "malformed": 0.03})
    rt = tmp_path / "rt"
    wallet_file(rt)
    cfg = tmp_path / "galileo.yaml"
    rpc_url = f"{sim.url}/rpc?api-key={RPC_KEY}"
    cfg.write_text(
        blind_yaml(sim, rt, "live", "  rpc: {urls: [], url_envs: [GALILEO_FAULT_RPC_URL]}").replace(
            "rate_limit_per_ip: null}", "rate_limit_per_ip: null, uuid_env: GALILEO_FAULT_JITO_UUID}"
        )
    )
    env = {**FAKE, "GALILEO_FAULT_RPC_URL": rpc_url}
    run = await galileo_cli(
        "--log-level", "debug", "--log-format", "json", "farm", "start", "-c", str(cfg), "--duration", "12", env=env
    )
    code = await run.wait(60)
    output = run.output()
    assert code == 0, output[-3000:]

    # The secrets were used: the simulator answers 401 without them, and it answered 200s.
    stats: dict[str, Any] = await sim_get(sim, "/sim/stats")
    by_service = stats["requests"]["by_service"]
    assert by_service["jupiter"].get("200", 0) > 50 and by_service["rpc"].get("200", 0) > 0, by_service
    assert stats["sends"]["jito_bundle"]["accepted"] > 0, stats["sends"]
    assert "401" not in stats["requests"]["by_status"], stats["requests"]["by_status"]
    # Coordinator and workers logged plenty, at debug, and none of it holds a secret.
    records = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(str(r.get("worker_id", "")).startswith("local/") for r in records), "no worker log was captured"
    assert any(r.get("level") == "debug" for r in records)
    for secret in (*FAKE.values(), RPC_KEY, rpc_url):
        assert secret not in output, f"{secret} leaked into the logs"
    assert "FAKESECRET" not in output
