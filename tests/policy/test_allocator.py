"""FarmPolicy.pick over fake workers: affinity, hashing, least loaded, cooldowns, pacing."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter

import pytest

from broker.jobs import HttpRequest
from broker.protocol import Outcome
from broker.types import Blocked, Job, JobSpec, WorkerInfo
from galileo.policy.allocator import LEAD, FarmPolicy
from galileo.policy.hashing import hrw_rank
from galileo.policy.learning import PACE
from galileo.policy.pacing import ahead
from tests.conftest import fake_worker


def worker(ip: str, capacity: int = 4, inflight: int = 0) -> WorkerInfo:
    w = fake_worker(ip, capacity)
    loop = asyncio.new_event_loop()
    for i in range(inflight):
        w.inflight[-i - 1] = job(loop=loop)
    loop.close()
    return w


def job(upstream: str = "jupiter", loop: asyncio.AbstractEventLoop | None = None, **spec: object) -> Job:
    own = loop is None
    loop = loop or asyncio.new_event_loop()
    j = Job(
        id=1,
        spec=JobSpec(HttpRequest(url="http://x/"), upstream=upstream, **spec),  # type: ignore[arg-type]
        kind="http",
        deadline=100.0,
        submitted=0.0,
        future=loop.create_future(),
    )
    if own:
        loop.close()
    return j


def pool(*ws: WorkerInfo) -> dict[str, WorkerInfo]:
    return {w.worker_id: w for w in ws}


def policy() -> FarmPolicy:
    return FarmPolicy(rng=random.Random(1))


def cool(p: FarmPolicy, ip: str, upstream: str = "jupiter", now: float = 0.0, retry_after: float = 5.0) -> None:
    p.cooldowns.record(ip, upstream, "rate_limited", 429, retry_after, now)


def test_least_loaded_wins_and_ties_rotate() -> None:
    p = policy()
    ws = pool(worker("1.1.1.1", inflight=2), worker("1.1.1.2"), worker("1.1.1.3"))
    picks = Counter()
    for _ in range(20):
        chosen = p.pick(job(), ws, 0.0)
        assert isinstance(chosen, WorkerInfo)
        picks[chosen.ip] += 1
    assert picks["1.1.1.1"] == 0
    assert picks["1.1.1.2"] > 5 and picks["1.1.1.3"] > 5  # spare IPs take turns


def test_cooling_pair_is_skipped_but_other_upstreams_are_not() -> None:
    p = policy()
    ws = pool(worker("1.1.1.1"), worker("1.1.1.2"))
    cool(p, "1.1.1.1")
    for _ in range(10):
        chosen = p.pick(job(), ws, 1.0)
        assert isinstance(chosen, WorkerInfo) and chosen.ip == "1.1.1.2"
    ips = set()
    for _ in range(10):
        chosen = p.pick(job("dflow"), ws, 1.0)
        assert isinstance(chosen, WorkerInfo)
        ips.add(chosen.ip)
    assert ips == {"1.1.1.1", "1.1.1.2"}


def test_everything_cooling_blocks_until_the_earliest_end() -> None:
    p = policy()
    ws = pool(worker("1.1.1.1"), worker("1.1.1.2"))
    cool(p, "1.1.1.1", retry_after=3.0)
    cool(p, "1.1.1.2", retry_after=2.0)
    blocked = p.pick(job(), ws, 0.0)
    assert isinstance(blocked, Blocked) and blocked.until == pytest.approx(2.0) and blocked.upstream_wide


def test_no_credit_blocks_without_a_time() -> None:
    p = policy()
    blocked = p.pick(job(), pool(worker("1.1.1.1", capacity=1, inflight=1)), 0.0)
    assert isinstance(blocked, Blocked) and blocked.until is None


def test_prefer_ip_waits_when_busy_and_moves_when_cooling() -> None:
    p = policy()
    busy = worker("1.1.1.1", capacity=1, inflight=1)
    ws = pool(busy, worker("1.1.1.2"))
    waiting = p.pick(job(prefer_ip="1.1.1.1"), ws, 0.0)
    assert isinstance(waiting, Blocked) and not waiting.upstream_wide
    busy.inflight.clear()
    chosen = p.pick(job(prefer_ip="1.1.1.1"), ws, 0.0)
    assert isinstance(chosen, WorkerInfo) and chosen.ip == "1.1.1.1"
    cool(p, "1.1.1.1")
    moved = p.pick(job(prefer_ip="1.1.1.1"), ws, 1.0)
    assert isinstance(moved, WorkerInfo) and moved.ip == "1.1.1.2"


def test_prefer_ip_that_is_gone_moves() -> None:
    chosen = policy().pick(job(prefer_ip="9.9.9.9"), pool(worker("1.1.1.2")), 0.0)
    assert isinstance(chosen, WorkerInfo) and chosen.ip == "1.1.1.2"


def test_require_ip_never_moves() -> None:
    p = policy()
    ws = pool(worker("1.1.1.1"), worker("1.1.1.2"))
    cool(p, "1.1.1.1", retry_after=4.0)
    blocked = p.pick(job(require_ip="1.1.1.1"), ws, 1.0)
    assert isinstance(blocked, Blocked) and blocked.until == pytest.approx(4.0)
    assert isinstance(p.pick(job(require_ip="7.7.7.7"), ws, 1.0), Blocked)


def test_an_ip_pick_follows_the_pool_when_its_worker_is_replaced_or_leaves() -> None:
    p = policy()
    old = worker("1.1.1.1")
    ws = pool(old, worker("1.1.1.2"))
    assert p.pick(job(require_ip="1.1.1.1"), ws, 0.0) is old
    new = worker("1.1.1.1")  # a new process registers for the same slot: same id, same IP
    ws[new.worker_id] = new
    assert p.pick(job(require_ip="1.1.1.1"), ws, 0.0) is new
    assert p.pick(job(prefer_ip="1.1.1.1"), ws, 0.0) is new
    del ws[new.worker_id]
    assert isinstance(p.pick(job(require_ip="1.1.1.1"), ws, 0.0), Blocked)
    moved = p.pick(job(prefer_ip="1.1.1.1"), ws, 0.0)
    assert isinstance(moved, WorkerInfo) and moved.ip == "1.1.1.2"


def test_avoid_ip_is_soft() -> None:
    p = policy()
    ws = pool(worker("1.1.1.1"), worker("1.1.1.2"))
    for _ in range(10):
        chosen = p.pick(job(avoid_ip="1.1.1.1"), ws, 0.0)
        assert isinstance(chosen, WorkerInfo) and chosen.ip == "1.1.1.2"
    only = p.pick(job(avoid_ip="1.1.1.1"), pool(worker("1.1.1.1")), 0.0)
    assert isinstance(only, WorkerInfo) and only.ip == "1.1.1.1"


def test_hash_key_sticks_to_its_owner_and_falls_back_in_rank_order() -> None:
    p = policy()
    ips = [f"1.1.1.{i}" for i in range(1, 9)]
    ws = pool(*(worker(ip) for ip in ips))
    ranked = hrw_rank("jito:frankfurt", ips)
    for _ in range(5):
        chosen = p.pick(job("jito:frankfurt", hash_key="jito:frankfurt"), ws, 0.0)
        assert isinstance(chosen, WorkerInfo) and chosen.ip == ranked[0]
    cool(p, ranked[0], "jito:frankfurt")
    chosen = p.pick(job("jito:frankfurt", hash_key="jito:frankfurt"), ws, 1.0)
    assert isinstance(chosen, WorkerInfo) and chosen.ip == ranked[1]


def send(p: FarmPolicy, ws: dict[str, WorkerInfo], key: str, now: float) -> WorkerInfo | Blocked:
    j = job("jito:ny", hash_key=key)
    chosen = p.pick(j, ws, now)
    if isinstance(chosen, WorkerInfo):
        p.on_dispatch(j, chosen, now)
    return chosen


def test_bundles_spread_over_every_ip_with_budget_for_the_region_then_wait_for_the_next_slot() -> None:
    """16 IPs at 1 send/s per (IP, region): 16 different bundles go out at once, one from each IP."""
    p = FarmPolicy(known_rates={"jito": 1.0}, rng=random.Random(1))
    ips = [f"10.0.0.{i}" for i in range(1, 17)]
    ws = pool(*(worker(ip) for ip in ips))
    picked = [send(p, ws, f"jito:ny|bundle-{i}", 0.0) for i in range(16)]
    assert sorted(w.ip for w in picked if isinstance(w, WorkerInfo)) == sorted(ips)
    blocked = send(p, ws, "jito:ny|bundle-16", 0.0)
    assert isinstance(blocked, Blocked) and blocked.upstream_wide  # every IP spent: no other send can go either
    # the earliest next slot, paced at 98 % of 1/s (woken LEAD before it: the worker holds the send)
    assert blocked.until == pytest.approx(1 / 0.98 - LEAD)
    assert isinstance(send(p, ws, "jito:ny|bundle-16", 1.021), WorkerInfo)


def test_a_resend_stays_on_its_ip_and_spills_to_the_next_ranked_while_that_one_is_paced_or_cooling() -> None:
    p = FarmPolicy(known_rates={"jito": 1.0}, rng=random.Random(1))
    ips = [f"10.0.0.{i}" for i in range(1, 17)]
    ws = pool(*(worker(ip) for ip in ips))
    key = "jito:ny|bundle-7"
    ranked = hrw_rank(key, ips)
    for t in (0.0, 2.0, 4.0):  # re-sends of the same bytes, each once its IP has budget again
        chosen = send(p, ws, key, t)
        assert isinstance(chosen, WorkerInfo) and chosen.ip == ranked[0]
    assert isinstance(send(p, ws, "jito:ny|other", 6.0), WorkerInfo)
    p.on_dispatch(job("jito:ny"), ws[f"w/{ranked[0]}"], 6.0)  # its owner's slot is spent: paced
    spilled = send(p, ws, key, 6.0)
    assert isinstance(spilled, WorkerInfo) and spilled.ip == ranked[1]  # spills at once, does not wait
    cool(p, ranked[0], "jito:ny", now=8.0, retry_after=5.0)
    cooled = send(p, ws, key, 8.0)
    assert isinstance(cooled, WorkerInfo) and cooled.ip == ranked[1]
    back = send(p, ws, key, 14.0)  # cooled down and paced again: back to its own IP
    assert isinstance(back, WorkerInfo) and back.ip == ranked[0]


def test_lanes_are_the_eligible_ips_with_their_pace_cap_and_latency() -> None:
    p = FarmPolicy(known_rates={"jupiter": 10.0}, rng=random.Random(1))
    a, b, c = worker("1.1.1.1"), worker("1.1.1.2"), worker("1.1.1.3")
    c.state = "draining"
    ws = pool(a, b, c)
    cool(p, "1.1.1.2")
    for sent, took in ((1.0, 0.2), (1.5, 0.1)):  # sent alone, answered after `took`: latency moves towards it
        j = job()
        p.on_dispatch(j, a, sent)
        j.sent_at = sent
        p.on_outcome(j, a, Outcome(result="ok", status=200, latency=took), sent + took)
    (lane,) = p.lanes(ws, "jupiter", 1.0)  # b cools, c drains: not eligible
    assert lane.ip == "1.1.1.1" and lane.rate == pytest.approx(9.8) and lane.cap is None
    # Both were sent with nothing else in flight: what the upstream takes unloaded, the floor.
    assert lane.latency == pytest.approx(0.2 + 0.2 * (0.1 - 0.2)) and lane.floor == pytest.approx(0.18)
    assert lane.window == pytest.approx(9.8 * lane.latency)
    (open_lane, _) = p.lanes(pool(a, worker("1.1.1.9")), "dflow", 1.0)  # dflow: no told rate, ramping
    assert open_lane.rate == float("inf") and open_lane.cap == 8 and open_lane.latency == 0.0
    assert [w.ip for w in ws.values() if p.eligible(w, "jupiter", 1.0)] == ["1.1.1.1"]


def test_pacing_blocks_a_pair_and_marks_it_saturated() -> None:
    p = FarmPolicy(known_rates={"jupiter": 2.0}, rng=random.Random(1))
    ws = pool(worker("1.1.1.1"))
    first = p.pick(job(), ws, 0.0)
    assert isinstance(first, WorkerInfo)
    p.on_dispatch(job(), first, 0.0)
    blocked = p.pick(job(), ws, 0.0)
    assert isinstance(blocked, Blocked) and blocked.until == pytest.approx(1 / 1.96 - LEAD)
    assert p.pacing.get("1.1.1.1", "jupiter").saturated(0.1)


@pytest.mark.parametrize("late", [0.0, 0.004, 0.009])
def test_a_pair_whose_slot_is_near_takes_its_job_and_its_worker_holds_it_so_a_late_wake_keeps_the_pace(
    late: float,
) -> None:
    """The hub wakes LEAD before a paced pair's slot. Woken up to LEAD late, it still dispatches before
    the slot: the job's hold takes it there, and the pace's schedule is kept. Without the lead, a wake
    more than the pace's catch_up late loses what it was late past catch_up."""
    interval = 1 / (0.98 * 10.0)

    def send_times(lead: float) -> list[float]:
        p = FarmPolicy(known_rates={"jupiter": 10.0}, rng=random.Random(1), lead=lead)
        ws = pool(worker("1.1.1.1"))
        now, went = 0.0, []
        for _ in range(20):
            choice = p.pick(job(), ws, now)
            while not isinstance(choice, WorkerInfo):
                assert isinstance(choice, Blocked) and choice.until is not None and choice.until > now
                now = choice.until + late  # the loop wakes this late, every time
                choice = p.pick(job(), ws, now)
            j = job()
            p.on_dispatch(j, choice, now)
            assert 0.0 <= j.hold <= lead + 1e-9
            went.append(now + j.hold)
        return went

    held = send_times(LEAD)
    assert [b - a for a, b in itertools.pairwise(held)] == pytest.approx([interval] * 19)
    plain = send_times(0.0)
    # The first wait is late by all of ``late``; each after it keeps catch_up of the lateness before.
    step = interval + max(0.0, late - PACE.catch_up)
    assert [b - a for a, b in itertools.pairwise(plain)] == pytest.approx([interval + late] + [step] * 18)


def test_a_pair_held_back_by_its_learnt_cap_is_not_saturated_so_its_pace_is_not_proven_faster() -> None:
    """A rate limit at latency L keeps ρ·L in flight, so a cap can be found where there is none:
    what the cap alone kept clean must not prove a faster pace (it would send in bursts). A pair
    with a cap of 2 carries 3: each job marked with the cap, one waiting at its worker for a slot."""
    p = FarmPolicy(known_rates={"jupiter": 100.0}, rng=random.Random(1))
    ws = pool(worker("1.1.1.1", capacity=8))
    pacer = p.pacing.get("1.1.1.1", "jupiter", 0.0)
    pacer.caps.cap = 2
    assert pacer.carried == 3 == 2 + ahead(2)
    for t in (0.0, 0.5, 0.55):
        w = p.pick(job(), ws, t)
        assert isinstance(w, WorkerInfo)
        p.on_dispatch(sent := job(), w, t)
        assert sent.cap == 2
    held = p.pick(job(), ws, 0.6)
    assert isinstance(held, Blocked) and held.until is None and pacer.at_cap  # until a job returns
    assert not pacer.saturated(0.6)  # the cap held it, not the pace
    p.on_outcome(job(), w, Outcome(result="ok", status=200, latency=0.2), 0.7)
    assert not pacer.at_cap and isinstance(p.pick(job(), ws, 0.7), WorkerInfo)
    p.on_dispatch(job(), w, 0.7)
    pacer.caps.cap = 8
    # Held by the cap past its slot, the schedule kept one interval of credit: one more goes at once ...
    assert isinstance(p.pick(job(), ws, 0.7), WorkerInfo)
    p.on_dispatch(job(), w, 0.7)
    paced = p.pick(job(), ws, 0.7)  # ... then the pace's next slot is 1/98 s away: the pace holds it
    assert isinstance(paced, Blocked) and paced.until < 1.0 and pacer.saturated(0.7)


def test_outcomes_feed_cooldowns_and_suspension_hooks() -> None:
    p = policy()
    w = worker("1.1.1.1")
    seen: list[tuple[str, str, str]] = []
    suspended: list[str] = []
    p.cooldown_hooks.append(lambda ip, up, reason, s: seen.append((ip, up, reason)))
    p.suspend_hooks.append(lambda ip, why: suspended.append(ip))
    p.on_outcome(job(), w, Outcome(result="rate_limited", status=429, retry_after=2.0), 0.0)
    p.on_outcome(job(), w, Outcome(result="bind_error", error="cannot bind"), 0.0)
    assert seen == [("1.1.1.1", "jupiter", "rate_limited"), ("1.1.1.1", "jupiter", "bind_error")]
    assert suspended == ["1.1.1.1"]
    assert isinstance(p.pick(job("other"), pool(w), 0.0), Blocked)


def test_a_job_that_waited_out_most_of_its_time_in_the_queue_is_not_dispatched_to_time_out() -> None:
    p = policy()
    ws = pool(worker("1.1.1.1"))
    starved = job(timeout=2.0)
    starved.deadline = 10.0
    assert isinstance(p.pick(starved, ws, 9.4), WorkerInfo)  # 0.6 of its 2 s left: worth sending
    held = p.pick(starved, ws, 9.6)  # 0.4 s left: it would time out at the upstream and cool the IP
    assert isinstance(held, Blocked) and not held.upstream_wide  # other jobs of the upstream still go
    assert held.expire  # and the hub ends it now: held to its deadline it would stand in their way


def test_a_job_waiting_for_its_ip_may_be_parked_unless_a_pace_holds_it() -> None:
    """``Blocked.pinned`` lets the hub park a job until its IP may take it (broker/parking.py): a
    cooldown, a busy worker. A pace, learnt or told, keeps being asked at every pump (parked, a
    learnt pace learnt a 5 s fixed window worse at 64 addresses, and a told one met more boxes)."""
    p = FarmPolicy(rng=random.Random(1))
    w = worker("1.1.1.1", capacity=64)
    ws = pool(w)
    sent = job(require_ip="1.1.1.1")
    assert p.pick(sent, ws, 0.0) is w
    p.on_dispatch(sent, w, 0.0)
    sent.sent_at = 0.0
    p.on_outcome(sent, w, Outcome(result="rate_limited", status=429, retry_after=1.0), 0.3)
    cooling = p.pick(job(require_ip="1.1.1.1"), ws, 0.5)
    assert isinstance(cooling, Blocked) and cooling.until == pytest.approx(1.3)
    assert cooling.pinned == "1.1.1.1" and not cooling.upstream_wide  # parked until the cooldown ends
    nxt = job(require_ip="1.1.1.1")
    assert p.pick(nxt, ws, 1.5) is w
    p.on_dispatch(nxt, w, 1.5)
    paced = p.pick(job(require_ip="1.1.1.1"), ws, 1.5)
    assert isinstance(paced, Blocked) and paced.until is not None and paced.until > 1.5
    assert paced.pinned is None and not paced.upstream_wide  # a learnt pace: not parked
    w.inflight.update({i: job() for i in range(64)})
    busy = p.pick(job(require_ip="1.1.1.1"), ws, 1.5)
    assert busy == Blocked(until=None, upstream_wide=False, pinned="1.1.1.1")  # parked until a credit returns
    told = FarmPolicy(known_rates={"jupiter": 2.0})
    t = worker("1.1.1.2")
    assert told.pick(job(prefer_ip="1.1.1.2"), pool(t), 0.0) is t
    told.on_dispatch(job(), t, 0.0)
    held = told.pick(job(prefer_ip="1.1.1.2"), pool(t), 0.0)
    assert isinstance(held, Blocked) and held.until == pytest.approx(1 / 1.96 - LEAD)
    assert held.pinned is None and not held.upstream_wide  # a told pace: not parked either


def test_a_job_on_its_pairs_told_pace_carries_the_told_interval_for_its_worker_to_keep() -> None:
    """Told 10/s, a pair's job carries 0.1 s as its gap: its worker sends no two of the pair's jobs
    closer than that, however late it read them. A pair with no pace yet, one under a learnt cap (its
    freed slots may go at once) and a told budget shared by every IP carry none."""
    told = FarmPolicy(known_rates={"jupiter": 10.0}, rng=random.Random(1))
    w = worker("1.1.1.1")
    j = job()
    told.on_dispatch(j, w, 0.0)
    assert j.gap == pytest.approx(0.1)
    told.pacing.get("1.1.1.1", "jupiter", 0.0).caps.cap = 2
    told.on_dispatch(capped := job(), w, 1.0)
    assert capped.gap == 0.0
    learnt = FarmPolicy(rng=random.Random(1))
    learnt.on_dispatch(j2 := job(), w, 0.0)
    assert j2.gap == 0.0  # no pace yet
    shared = FarmPolicy(known_shared={"jupiter": 10.0}, rng=random.Random(1))
    shared.on_dispatch(j3 := job(), w, 0.0)
    assert j3.gap == 0.0


def test_a_job_on_a_learnt_pace_carries_the_interval_of_the_fastest_pace_proved_or_tried() -> None:
    """Converged a margin below what it proved (18/s), a pair's worker may send what queued at 18/s,
    so it catches up; trying 19/s, at that, so the try is not held back; still measuring the limit,
    as it comes (nothing is known yet)."""
    p = FarmPolicy(rng=random.Random(1))
    w = worker("1.1.1.1")
    learner = p.pacing.get("1.1.1.1", "jupiter", 0.0).learner
    learner.phase, learner.lo, learner.rate = "hold", 18.0, 17.8
    p.on_dispatch(converged := job(), w, 0.0)
    assert converged.gap == pytest.approx(1 / 18)
    learner.rate = 19.0
    p.on_dispatch(trying := job(), w, 1.0)
    assert trying.gap == pytest.approx(1 / 19)
    learner.phase = "learn"
    p.on_dispatch(measuring := job(), w, 2.0)
    assert measuring.gap == 0.0


def test_how_many_a_capped_pair_carries_past_its_cap() -> None:
    """A quarter of its cap more, and at least one: enough that a slot its worker frees is taken at
    once while the next job is on its way from the coordinator, who hears of the answer later."""
    assert [ahead(k) for k in (1, 2, 4, 5, 8, 16, 17)] == [1, 1, 1, 2, 2, 4, 5]


@pytest.mark.parametrize(("retry_after", "cools"), [(1.0, False), (None, False), (30.0, True)])
def test_a_429_of_one_more_than_the_cap_tried_on_purpose_does_not_cool_unless_it_names_seconds(
    retry_after: float | None, cools: bool
) -> None:
    p = policy()
    w = worker("10.0.0.1")
    pacer = p.pacing.get(w.ip, "jupiter", 0.0)
    pacer.caps.cap = 4
    pacer.caps.probe(500.0, held_since=0.0)  # held back for 500 s: one more is tried
    assert pacer.cap == 5
    j = job()
    j.sent_at = 501.0
    w.inflight[j.id] = j
    p.on_dispatch(j, w, 501.0)
    p.on_outcome(j, w, Outcome(result="rate_limited", status=429, latency=0.1, retry_after=retry_after), 501.1)
    assert (p.cooling(w.ip, "jupiter", 501.2) is not None) == cools
    # Refused, the cap is the cap; a 429 naming seconds is a window's or a box's, no verdict on it.
    assert pacer.cap == (5 if cools else 4)
