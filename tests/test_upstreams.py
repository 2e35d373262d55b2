"""Told limits: `rate_limit_per_key` reaches the upstream the jobs are sent to, and the farm's pacing."""

from __future__ import annotations

from pathlib import Path

import pytest

from galileo.config import GalileoConfig, parse_config
from galileo.farm.coordinator import Farm
from galileo.upstreams import QuoteRequest, Upstreams
from tests.conftest import fake_worker

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
U = "http://127.0.0.1:9"


def config() -> GalileoConfig:
    return parse_config(f"""
upstreams:
  jupiter: {{base_url: '{U}/jupiter', api_key_env: GALILEO_TEST_JUP_KEY, rate_limit_per_key: 30}}
  ultra: {{base_url: '{U}/ultra', api_key_env: GALILEO_TEST_JUP_KEY, rate_limit_per_ip: 4, rate_limit_per_key: 20}}
  dflow: {{base_url: '{U}/dflow', api_key_env: GALILEO_TEST_DFLOW_KEY, rate_limit_per_key: 50}}
  rpc: {{urls: ['{U}/rpc']}}
""")


def test_rates_per_key_are_named_as_the_jobs_upstreams_where_the_key_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_TEST_JUP_KEY", "k")
    monkeypatch.delenv("GALILEO_TEST_DFLOW_KEY", raising=False)
    up = Upstreams(config())
    rates = up.known_key_rates()
    # DFlow's key is not set here: its requests go without it, so its limit is not the key's.
    assert rates == {"jupiter": 30.0, "ultra": 20.0}
    assert up.known_rates() == {"ultra": 4.0, "jito": 5.0}  # per IP: apart
    quote = up.quote(QuoteRequest(SOL, USDC, 10**9), prefer_ip=None, task="quote_buy", provider="jupiter")
    assert quote.upstream in rates


def test_the_farm_paces_every_ip_of_a_told_key_as_one_from_the_first_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_TEST_JUP_KEY", "k")
    farm = Farm(config(), runtime_dir=tmp_path)
    try:
        policy = farm.policy
        workers = {f"w/{ip}": fake_worker(ip, 256) for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3")}
        lanes = policy.lanes(workers, "jupiter", 0.0)
        shared = policy.pacing.group("jupiter")
        assert shared is not None and shared.told == 30.0 and shared.phase == "hold"  # told, never learnt
        assert [lane.rate for lane in lanes] == pytest.approx([0.98 * 30 / 3] * 3)  # each IP its share
        assert all(policy.pacing.get(ip, "jupiter").grouped for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"))
        # Told per IP as well: each IP keeps to its own 4/s, less than its share of the key's 20/s.
        assert [lane.rate for lane in policy.lanes(workers, "ultra", 0.0)] == pytest.approx([0.98 * 4] * 3)
        assert policy.pacing.group("ultra") is not None
        assert policy.pacing.group("dflow") is None  # no key sent: learnt per IP
        policy.lanes(workers, "dflow", 0.0)
        assert policy.pacing.group("dflow") is None
    finally:
        farm.ctx.destroy(linger=0)
