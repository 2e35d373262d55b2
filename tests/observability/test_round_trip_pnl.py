"""Realised P&L next to expected profit: in /metrics (SOL, like galileo_opportunity_profit_sol) and `farm stats`."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from galileo.cli._farm import _stats_view
from galileo.metrics import SKIP_REASONS, FarmMetrics

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


def samples(metrics: FarmMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render()[0].decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def test_realised_and_expected_profit_are_exported_in_sol_and_kept_for_farm_stats() -> None:
    metrics = FarmMetrics()
    metrics.strategy_mint("blind", SOL)
    got = samples(metrics)
    blind_sol = frozenset({("strategy", "blind"), ("mint", SOL)})
    assert got[("galileo_round_trip_realised_profit_sol", blind_sol)] == 0  # at 0 before anything lands
    for reason in SKIP_REASONS:
        assert got[("galileo_opportunities_skipped_total", frozenset({("strategy", "blind"), ("reason", reason)}))] == 0

    metrics.round_trip("blind", SOL, expected_lamports=30_000, realised_lamports=25_000)
    metrics.round_trip("blind", SOL, expected_lamports=20_000, realised_lamports=-15_000)  # one lost its fee
    metrics.round_trip("multi_leg", USDC, expected_lamports=1_000_000, realised_lamports=990_000)
    metrics.opportunity_skipped("blind", "stale_quote")
    got = samples(metrics)
    assert got[("galileo_round_trip_realised_profit_sol", blind_sol)] == 0.00001
    assert got[("galileo_round_trip_expected_profit_sol", blind_sol)] == 0.00005
    assert got[("galileo_round_trips_on_chain_total", blind_sol)] == 2
    stale = frozenset({("strategy", "blind"), ("reason", "stale_quote")})
    assert got[("galileo_opportunities_skipped_total", stale)] == 1

    rows = {
        (k, m): (rt.on_chain, rt.expected_lamports, rt.realised_lamports) for (k, m), rt in metrics.round_trips.items()
    }
    assert rows == {("blind", SOL): (2, 50_000, 10_000), ("multi_leg", USDC): (1, 1_000_000, 990_000)}


def test_farm_stats_shows_round_trips_on_chain_expected_next_to_realised() -> None:
    snapshot = {
        "farm": {"ready": 1, "workers": 1, "queued": 0, "uptime_s": 5.0},
        "workers": [],
        "round_trips": [
            {"strategy": "blind", "mint": SOL, "on_chain": 2, "expected_sol": 0.00005, "realised_sol": 0.00001}
        ],
    }
    console = Console(width=200, record=True)
    console.print(_stats_view(snapshot))
    text = console.export_text()
    assert "round trips on chain (SOL)" in text
    (row,) = [line for line in text.splitlines() if line.lstrip("│ ").startswith("blind")]
    assert SOL in row and "+0.000050000" in row and "+0.000010000" in row
    del snapshot["round_trips"]
    console = Console(width=200, record=True)
    console.print(_stats_view(snapshot))
    assert "round trips" not in console.export_text()  # nothing on chain yet: the workers' table alone
