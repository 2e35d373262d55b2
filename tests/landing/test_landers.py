"""The lander stack on an in-memory farm and a virtual clock: hashed sends, batched follows, drops."""

from __future__ import annotations

import asyncio
import logging

import pytest
from solders.hash import Hash
from solders.keypair import Keypair

from broker.jobs import JitoInflightStatuses, JitoSendBundle, RpcSignatureStatuses
from broker.results import BundleAccepted, BundleStatus, BundleStatuses, ResultValue, SignatureStatus, SignatureStatuses
from broker.types import JobSpec
from galileo.chain import ChainState
from galileo.config import GalileoConfig, parse_config
from galileo.landing import Assembled, LanderStack, LandingStats, bundle_id_of
from galileo.upstreams import Upstreams
from tests.fakefarm import FakeFarm
from tests.fault.landing import opportunities
from tests.virtualtime import run_virtual

SOL = "So11111111111111111111111111111111111111112"
U = "http://127.0.0.1:7900"  # a loopback host: the region is named by the path (as in the simulator)


def config(mode: str = "live") -> GalileoConfig:
    return parse_config(f"""
upstreams:
  rpc: {{urls: ['{U}/rpc']}}
  jito: {{endpoints: ['{U}/jito/frankfurt', '{U}/jito/ny']}}
lander: {{mode: {mode}, follow_timeout_s: 60}}
""")


class Chain:
    """What the simulator would answer: bundles accepted, statuses by the ids it was told."""

    def __init__(self) -> None:
        self.landed: dict[str, float] = {}  # signature -> when it lands (the loop's time)
        self.inflight: dict[str, dict[str, str]] = {}  # region label -> bundle id -> status

    def answer(self, spec: JobSpec, ip: str) -> ResultValue | None:
        job = spec.payload
        now = asyncio.get_running_loop().time()
        if isinstance(job, JitoSendBundle):
            return BundleAccepted(bundle_id="ignored: the lander knows its id")
        if isinstance(job, RpcSignatureStatuses):
            return SignatureStatuses(
                slot=1,
                statuses=[SignatureStatus(slot=1) if self.landed.get(s, 1e9) <= now else None for s in job.signatures],
            )
        if isinstance(job, JitoInflightStatuses):
            region = "jito:" + job.base_url.rsplit("/", 1)[-1]
            known = self.inflight.get(region, {})
            return BundleStatuses(
                slot=1,
                statuses=[BundleStatus(bundle_id=b, status=known.get(b, "Invalid")) for b in job.bundle_ids],
            )
        return None


def stack(farm: FakeFarm, cfg: GalileoConfig) -> tuple[LanderStack, LandingStats]:
    upstreams = Upstreams(cfg)
    stats = LandingStats()
    return LanderStack(farm, upstreams, ChainState(farm, upstreams), cfg.lander, ["jito"], stats), stats


def opps(n: int) -> list[Assembled]:
    return opportunities(Keypair(), str(Hash.default()), 10**9, n)


def test_each_bundle_goes_to_each_region_hashed_by_region_and_bundle() -> None:
    chain = Chain()
    farm = FakeFarm([f"10.0.0.{i}" for i in range(1, 5)], latency=0.01, answer=chain.answer)
    lander, stats = stack(farm, config())
    batch = opps(3)

    async def main() -> None:
        for o in batch:
            receipts = await lander.land(o, SOL, profit=1000)
            assert [(r.endpoint, r.accepted) for r in receipts] == [("jito:frankfurt", True), ("jito:ny", True)]
        assert await lander.land(batch[0], SOL) == []  # the same transaction again: not sent twice
        await lander.close(timeout=0)

    run_virtual(main())
    sends = [spec for _, spec, _ in farm.jobs if isinstance(spec.payload, JitoSendBundle)]
    ids = [bundle_id_of([o.jito.signature]) for o in batch if o.jito is not None]
    assert [(s.upstream, s.hash_key) for s in sends] == [
        (f"jito:{region}", f"jito:{region}|{bundle}") for bundle in ids for region in ("frankfurt", "ny")
    ]
    assert all(s.payload.transactions == [o.jito.wire] for s, o in zip(sends[::2], batch, strict=True) if o.jito)  # type: ignore[union-attr]
    assert stats.duplicates == 1 and stats.totals()["accepted"] == 6


def test_following_asks_once_a_second_for_every_pending_send_in_one_call() -> None:
    chain = Chain()
    farm = FakeFarm(["10.0.0.1", "10.0.0.2"], latency=0.01, answer=chain.answer)
    lander, stats = stack(farm, config())
    batch = opps(12)

    async def main() -> None:
        for i, o in enumerate(batch):
            assert o.jito is not None
            chain.landed[o.jito.signature] = 0.5 if i % 2 else 1.5  # half land by the 1st poll, half by the 2nd
        await asyncio.gather(*(lander.land(o, SOL, profit=500) for o in batch))
        await asyncio.sleep(3.5)
        assert not lander.follower.pending
        await lander.close(timeout=0)

    run_virtual(main())
    polls = [spec for _, spec, _ in farm.jobs if isinstance(spec.payload, RpcSignatureStatuses)]
    # One call per second for everything pending (a bundle sent to two regions is one entry).
    assert [len(p.payload.signatures) for p in polls] == [12, 6]  # type: ignore[union-attr]
    assert not [s for _, s, _ in farm.jobs if isinstance(s.payload, JitoInflightStatuses)]  # on chain within 2 s
    assert stats.totals()["landed"] == 12 and stats.landed_profit[SOL] == 12 * 500


def test_bundles_not_on_chain_are_asked_about_at_jito_five_at_a_time_and_dropped_when_no_region_knows_them() -> None:
    chain = Chain()
    farm = FakeFarm([f"10.0.0.{i}" for i in range(1, 9)], latency=0.01, answer=chain.answer)
    lander, stats = stack(farm, config())
    batch = opps(7)
    ids = [bundle_id_of([o.jito.signature]) for o in batch if o.jito is not None]
    chain.inflight["jito:frankfurt"] = {ids[0]: "Pending", ids[1]: "Failed"}
    chain.inflight["jito:ny"] = {ids[2]: "Pending"}  # unknown in frankfurt, pending in ny

    async def main() -> None:
        await asyncio.gather(*(lander.land(o, SOL) for o in batch))
        await asyncio.sleep(4.5)
        await lander.close(timeout=0)

    run_virtual(main())
    asks = [spec for _, spec, _ in farm.jobs if isinstance(spec.payload, JitoInflightStatuses)]
    first = [a for a in asks if a.upstream == "jito:frankfurt"][:2]
    assert sorted(len(a.payload.bundle_ids) for a in first) == [2, 5]  # type: ignore[union-attr]
    assert all(a.hash_key == f"{a.upstream}|{a.payload.bundle_ids[0]}" for a in asks)  # type: ignore[union-attr]
    # ids[0] pending, ids[2] pending in ny; ids[1] failed; the other four no region knows: dropped.
    assert set(lander.follower.pending) == {("jito", ids[0]), ("jito", ids[2])}
    assert stats.totals() == {
        "dry_run_sends": 0,
        "duplicates": 0,
        "rebroadcasts": 0,
        "resends": 0,
        "sends": 14,
        "accepted": 14,
        "shed": 0,
        "landed": 0,
        "failed": 1,
        "expired": 0,
        "dropped": 4,
        "realised": 0,
        "unrealised": 0,
    }


def test_sends_beyond_a_second_of_the_regions_budget_are_shed_not_queued_to_go_stale() -> None:
    chain = Chain()
    farm = FakeFarm(["10.0.0.1", "10.0.0.2", "10.0.0.3"], rate=2.0, latency=0.2, answer=chain.answer)
    lander, stats = stack(farm, config())  # 3 IPs x 2/s: 6 sends outstanding per region at most
    batch = opps(12)

    async def main() -> None:
        first = await asyncio.gather(*(lander.land(o, SOL) for o in batch[:10]))
        assert [len(r) for r in first] == [2] * 6 + [0] * 4  # the 7th bundle on finds both regions full
        again = await lander.land(batch[10], SOL)  # the 6 sent were answered: room again
        assert [r.accepted for r in again] == [True, True]
        await lander.close(timeout=0)

    run_virtual(main())
    totals = stats.totals()
    assert totals["sends"] == 14 and totals["shed"] == 8 and totals["accepted"] == 14
    sent = sorted(t for t, s, _ in farm.jobs if isinstance(s.payload, JitoSendBundle))
    # Nothing queued past the horizon: each region's 6 went out within its 3 IPs' first second of budget.
    assert sent == [0.0] * 6 + [0.5] * 6 + [1.0] * 2


def test_dry_run_sends_nothing_and_says_so_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="galileo.lander")
    farm = FakeFarm(["10.0.0.1"])
    lander, stats = stack(farm, config("dry_run"))

    async def main() -> None:
        assert await lander.land(opps(1)[0], SOL) == []

    run_virtual(main())
    assert farm.jobs == [] and stats.dry_run_sends == 2
    would = [r for r in caplog.records if r.getMessage().startswith("dry run: would send bundle")]
    assert len(would) == 2 and {r.levelno for r in would} == {logging.DEBUG}
