"""What pacing holds, shown to an operator: `galileo farm stats` and the `galileo_pace_*` gauges.

The views (galileo.policy.views) are read off pacers that learnt in virtual time against the
simulator's limiters; the wiring (the stats snapshot, its table, the gauges on /metrics) on a real
farm with told rates, a told key budget and a cap.
"""

from __future__ import annotations

import random

import pytest
from rich.console import Console

from galileo.cli._farm import _pacing_text, _stats_view
from galileo.farm.coordinator import Farm
from galileo.farm.stats import farm_snapshot
from galileo.metrics import FarmMetrics
from galileo.policy.allocator import FarmPolicy
from galileo.policy.views import pair_paces, shared_paces
from tests.farm.conftest import Recorder, loopback
from tests.observability.test_metrics import Make, get, scrape
from tests.policy.limitsim import SimUpstream, simulate

IPS = [f"10.0.0.{i}" for i in range(1, 3)]


def learnt(spec: str, latency: str = "50", seconds: float = 90.0, **policy: object) -> FarmPolicy:
    pol = FarmPolicy(rng=random.Random(1), **policy)  # type: ignore[arg-type]
    simulate(SimUpstream(spec, latency=latency, seed=1), IPS, seconds=seconds, warmup=60, policy=pol)
    return pol


def test_a_learnt_pace_a_cap_a_trimmed_cap_and_a_keys_budget_read_as_they_were_learnt() -> None:
    bucket = pair_paces(learnt("bucket:20/1s,burst=0.1").pacing)
    assert [(p.ip, p.upstream, p.phase, p.told, p.cap, p.shared) for p in bucket] == [
        (ip, "u", "hold", False, None, False) for ip in IPS
    ]
    assert all(p.rate is not None and 18.0 <= p.rate <= 20.5 for p in bucket), bucket
    assert all(p.noise == 0.0 for p in bucket), bucket

    shedding = pair_paces(learnt("bucket:20/1s,burst=1 & shed:0.02", seconds=180.0).pacing)
    assert all(0.005 <= p.noise <= 0.05 for p in shedding), shedding  # found for what it is: 2 % or so

    cap = pair_paces(learnt("concurrency:4").pacing)
    assert all(p.cap == p.found == 4 for p in cap), cap

    queue = pair_paces(learnt("queue:20/1s,burst=1", "300").pacing)
    assert all(p.found is not None and p.cap is not None and p.cap < p.found for p in queue), queue

    keyed = learnt("sliding:60/1s,scope=key", keyed=["u"]).pacing
    assert all(p.shared and p.rate is None for p in pair_paces(keyed))
    (budget,) = shared_paces(keyed)
    assert budget.upstream == "u" and budget.phase == "hold" and not budget.told
    assert budget.rate is not None and 50.0 <= budget.rate <= 61.0, budget


def test_the_pacing_column_says_each_upstream_in_a_few_words() -> None:
    def pair(upstream: str, phase: str, rate: float | None, **kw: object) -> dict[str, object]:
        row = {"upstream": upstream, "phase": phase, "rate_per_s": rate, "told": False, "cap": None}
        return row | {"cap_found": kw.get("cap"), "shared": False} | kw

    assert _pacing_text([]) == "-"
    assert _pacing_text([pair("quotes", "open", None)]) == "-"  # no limit met: nothing to say
    assert (
        _pacing_text(
            [
                pair("jupiter", "hold", 19.62),
                pair("dflow", "hold", 19.6, told=True),
                pair("titan", "hold", 30.0, cap=3, cap_found=26),
                pair("rpc", "open", None, cap=4),
                pair("ultra", "learn", 1.0),
                pair("jito", "hold", None, shared=True),
                pair("quotes", "hold", 19.43, noise_share=0.0123),
            ]
        )
        == "jupiter 19.6/s, dflow 19.6/s told, titan 30.0/s cap 3 of 26, rpc cap 4, ultra learning, jito shared, "
        "quotes 19.4/s (1.2 % shed)"
    )


async def test_stats_and_gauges_show_told_paces_a_told_key_budget_and_a_cap(
    make_farm: Make, recorder: Recorder
) -> None:
    ips = loopback(2, start=81)
    policy = FarmPolicy(known_rates={"jupiter": 10.0}, known_shared={"dflow": 30.0})
    farm: Farm = await make_farm(ips, policy=policy)
    metrics = FarmMetrics()
    metrics.attach(farm)
    address = await metrics.serve("127.0.0.1:0")
    try:
        for ip in ips:
            for upstream in ("jupiter", "dflow", "rpc"):
                assert (await farm.run(get(f"{recorder.url}/{upstream}", upstream=upstream, require_ip=ip))).ok
        capped = policy.pacing.get(ips[0], "rpc")
        capped.caps.cap, capped.queue.limit = 26, 8  # as a queue's refusals and the trim would leave it

        m, _ = await scrape(address)
        for ip in ips:
            told = m.value("galileo_pace_requests_per_second", ip=ip, upstream="jupiter", source="told")
            assert told == pytest.approx(9.8)
        assert {s["upstream"] for s in m.series("galileo_pace_requests_per_second")} == {"jupiter"}  # not dflow,
        # whose one budget paces every IP, nor rpc, which has met no limit
        budget = m.value("galileo_pace_shared_requests_per_second", upstream="dflow", source="told")
        assert budget == pytest.approx(29.4)
        assert m.moved("galileo_pace_inflight_limit") == {(("ip", ips[0]), ("upstream", "rpc")): 8}

        snap = farm_snapshot(farm)
        assert snap["farm"]["shared_pacing"] == [
            {"upstream": "dflow", "phase": "hold", "rate_per_s": 29.4, "told": True}
        ]
        rows = {r["ip"]: r for r in snap["workers"]}
        assert next(p for p in rows[ips[1]]["pacing"] if p["upstream"] == "jupiter") == {
            "upstream": "jupiter",
            "phase": "hold",
            "rate_per_s": 9.8,
            "told": True,
            "cap": None,
            "cap_found": None,
            "shared": False,
            "noise_share": 0.0,
        }
        console = Console(width=400, record=True)
        console.print(_stats_view(snap))
        text = console.export_text()
        assert "dflow shared, jupiter 9.8/s told, rpc cap 8 of 26" in text, text
        assert "dflow shared, jupiter 9.8/s told " in text, text  # the other IP: no cap
    finally:
        await metrics.close()
