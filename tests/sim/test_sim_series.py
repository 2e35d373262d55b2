"""Per-second series in /sim/stats: rings of the last N seconds, bounded, per IP, service and status."""

from __future__ import annotations

from galileo.sim.series import SecondRing, SeriesTable
from galileo.sim.stats import SimStats
from tests.sim.sim_helpers import SessionFactory, SimFactory, rpc


def test_ring_keeps_the_last_n_seconds() -> None:
    ring = SecondRing(5, now_sec=100)
    for sec in (100, 100, 101, 103):
        ring.add(sec)
    assert ring.window(103) == [0, 2, 1, 0, 1]  # seconds 99..103
    ring.add(96)  # older than the window: ignored
    ring.add(107)  # 104..106 were quiet, 99..102 fall off
    assert ring.window(107) == [1, 0, 0, 0, 1]
    assert ring.window(110) == [0, 1, 0, 0, 0]  # asked later: 106..110, the unseen seconds are 0
    ring.add(200)
    assert ring.window(200) == [0, 0, 0, 0, 1] and ring.total(200) == 1


def test_table_sweeps_idle_series_and_caps_the_rest() -> None:
    table: SeriesTable[int] = SeriesTable(seconds=10, max_series=600)
    for key in range(600):
        table.add(key, 1000)
    table.add(600, 1000)  # full, and nothing is idle: not started, counted
    assert len(table) == 600 and table.dropped == 1
    table.add(601, 1011)  # everything else fell out of its window: swept, then started
    assert len(table) == 1 and dict(table.items(1011)) == {601: [0] * 9 + [1]}


def test_snapshot_series_sum_over_ips_and_keep_ok_per_second() -> None:
    stats = SimStats(started_wall=0.0, seconds=4)
    for ip, bucket, status, t in [
        ("a", "rpc", "200", 10.2),
        ("a", "rpc", "200", 10.7),
        ("b", "rpc", "200", 11.0),
        ("b", "rpc", "429", 12.5),
        ("a", "jupiter", "200", 5.0),  # older than 4 s at snapshot time: not in the series
    ]:
        stats.record(ip, bucket, status, t)
    stats.refusal("b", "rpc", "limit")
    snap = stats.snapshot({}, now_wall=12.9)
    series = snap["per_second"]
    assert (series["seconds"], series["end"]) == (4, 12)
    assert series["by_ip_service"] == {
        "a": {"rpc": {"200": [0, 2, 0, 0]}},
        "b": {"rpc": {"200": [0, 0, 1, 0], "429": [0, 0, 0, 1]}},
    }
    assert series["by_service"] == {"rpc": {"200": [0, 2, 1, 0], "429": [0, 0, 0, 1]}}
    assert snap["ok_per_second"] == {"a": {"rpc": {"10": 2}}, "b": {"rpc": {"11": 1}}}
    assert snap["requests"]["by_ip_service"]["a"]["jupiter"] == {"200": 1}  # totals keep everything
    assert snap["limits"]["refused"] == {"rpc": {"limit": 1}}


async def test_series_over_http(sim_factory: SimFactory, bound: SessionFactory) -> None:
    sim = await sim_factory(limiters={"rpc": "sliding:3/60s"}, stats_seconds=30)
    a, b = bound("127.0.0.2"), bound("127.0.0.3")
    for session in (a, b):
        for _ in range(4):
            await rpc(session, sim.url, "getSlot")
    async with a.get(sim.url + "/sim/stats") as r:
        body = await r.json()
    series = body["per_second"]
    assert series["seconds"] == 30
    for ip in ("127.0.0.2", "127.0.0.3"):
        per_status = series["by_ip_service"][ip]["rpc"]
        assert {s: sum(v) for s, v in per_status.items()} == {"200": 3, "429": 1}
        assert all(len(v) == 30 for v in per_status.values())
    assert {s: sum(v) for s, v in series["by_service"]["rpc"].items()} == {"200": 6, "429": 2}
    assert body["limits"]["refused"] == {"rpc": {"limit": 2}}
    async with a.post(sim.url + "/sim/control", json={"stats_seconds": 5}) as r:
        assert r.status == 200
    async with a.get(sim.url + "/sim/stats") as r:
        body = await r.json()
    assert body["per_second"]["seconds"] == 5 and body["per_second"]["by_ip_service"] == {}
