"""Issue 18: Titan's connections and streams per token and IP, refusals by reason, quote ages, as
Prometheus series; the token label is the env var's name, and the token never shows."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from galileo.metrics import FarmMetrics
from tests.strategy.faketitan import FakeTitan
from tests.strategy.test_titan_streams import IPS, streams, wants
from tests.virtualtime import run_virtual


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_titan_series_per_token_and_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_A", "titan-secret-token-a")
    monkeypatch.setenv("TITAN_B", "titan-secret-token-b")

    async def main() -> str:
        fake = FakeTitan(IPS, limit=2, advertised=3)
        titan = streams(fake, "[TITAN_A, TITAN_B]")
        metrics = FarmMetrics()
        metrics.titan_source(titan.report)
        titan.start(wants(5))
        await asyncio.sleep(2)
        body, _ = metrics.render()
        await titan.stop()
        return body.decode()

    text = run_virtual(main())
    assert "titan-secret-token" not in text
    conns = samples(text, "galileo_titan_connections")
    assert sorted(dict(k)["token"] for k, v in conns.items() if v == 1) == ["TITAN_A", "TITAN_B"]
    assert len({dict(k)["ip"] for k in conns}) == 2
    assert sum(samples(text, "galileo_titan_streams").values()) == 4  # 2 each: the server's real limit
    assert set(samples(text, "galileo_titan_stream_limit").values()) == {2.0}  # 3 advertised, 2 learned
    refusals = samples(text, "galileo_titan_refusals_total")
    assert sum(v for k, v in refusals.items() if dict(k)["reason"] == "stream_limit") >= 1
    assert refusals[(("reason", "token_in_use"), ("token", "TITAN_A"))] == 0  # seeded at 0
    ages = samples(text, "galileo_titan_quote_age_seconds")
    assert len(ages) == 4 and all(0 <= v <= 1.0 for v in ages.values())
    assert {dict(k)["pair"] for k in ages} == {"SOL->USDC"}
