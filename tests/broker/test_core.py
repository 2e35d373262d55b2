"""The hub core on the in-memory transport: identity, eviction, ordering and liveness as plain unit tests.

No sockets, no sleeps: each test delivers the workers' messages itself, in the order it wants,
and moves a manual clock (issue 16.10; the points it serves are 16.4, 16.5 and 16.6).
"""

from __future__ import annotations

import pytest

from broker.core import MAX_WORKERS_PER_KEY, HubCore
from broker.jobs import HttpRequest
from broker.protocol import Disconnect, Drain, Outcome
from broker.testing import LeastLoadedPolicy, ManualClock, MemoryTransport, MemoryWorker
from broker.types import JobSpec
from galileo.policy.allocator import LEAD, FarmPolicy

HB = 1.0
KEY_A = b"A" * 40  # principals of remote hosts: their z85 public keys
KEY_B = b"B" * 40


def spec(**kw: object) -> JobSpec:
    return JobSpec(HttpRequest(url="http://127.0.0.1/"), upstream="u", **kw)  # type: ignore[arg-type]


@pytest.fixture
def env() -> tuple[HubCore, MemoryTransport, ManualClock]:
    clock, transport = ManualClock(), MemoryTransport()
    return HubCore(LeastLoadedPolicy(), transport, clock=clock, heartbeat_interval=HB), transport, clock


def run_for(core: HubCore, clock: ManualClock, seconds: float, *beating: MemoryWorker) -> None:
    """Let ``seconds`` pass in ticks, as the driver would, with ``beating`` workers heartbeating."""
    step = HB / 4
    for _ in range(round(seconds / step)):
        clock.advance(step)
        for w in beating:
            w.beat()
        core.tick()


# --- the seam itself -------------------------------------------------------------------------


async def test_jobs_flow_through_the_core_with_credit_and_exactly_one_outcome(
    env: tuple[HubCore, MemoryTransport, ManualClock],
) -> None:
    core, transport, _ = env
    w = MemoryWorker(core, transport, "10.0.0.1", capacity=2).register()
    futures = [core.submit(spec()) for _ in range(5)]
    core.pump()
    first = w.jobs()
    assert len(first) == 2  # its credit
    w.reply(first[0])
    w.reply(first[0], Outcome(result="timeout"))  # a duplicate: dropped and counted
    core.pump()
    more = w.jobs()
    assert len(more) == 1
    for job in [first[1], *more]:
        w.reply(job)
    core.pump()
    for job in w.jobs():
        w.reply(job)
    outs = [f.result() for f in futures]
    assert [o.result for o in outs] == ["ok"] * 5 and core.late_results == 1
    assert core.counts == {"ok": 5}


# --- 16.4: a worker's identity includes its incarnation ------------------------------------


async def test_a_new_process_for_a_draining_slot_never_evicts_it_and_its_results_are_delivered(
    env: tuple[HubCore, MemoryTransport, ManualClock],
) -> None:
    core, transport, clock = env
    old = MemoryWorker(core, transport, "10.0.0.1", capacity=4).register()
    once = [core.submit(spec(idempotent=False)) for _ in range(2)]
    twice = [core.submit(spec()) for _ in range(2)]
    jobs = old.jobs()
    assert len(jobs) == 4

    core.retire("local/10.0.0.1", "removed by operator")  # scale --remove ...
    assert old.drained()
    new = MemoryWorker(core, transport, "10.0.0.1", capacity=4).register()  # ... then --add: a new process

    assert core.workers["local/10.0.0.1"].incarnation == new.ready.incarnation
    assert old.info is not None and old.info.state == "draining"  # still connected, still owed its results
    run_for(core, clock, 1.0, old, new)
    for job in jobs:
        old.reply(job)
    old.bye()
    core.pump()
    assert new.jobs() == []  # nothing ran twice
    assert [f.result().result for f in once + twice] == ["ok"] * 4
    assert all(f.result().attempts == 1 and f.result().ip == "10.0.0.1" for f in once + twice)
    assert old.info is None and core.workers["local/10.0.0.1"].pid == new.ready.pid
    later = core.submit(spec())
    new.reply(new.jobs()[0])
    assert later.result().ok and later.result().worker_id == "local/10.0.0.1"


async def test_a_new_process_for_a_ready_slot_drains_the_old_one_instead_of_losing_its_jobs(
    env: tuple[HubCore, MemoryTransport, ManualClock],
) -> None:
    core, transport, _ = env
    old = MemoryWorker(core, transport, "10.0.0.1").register()
    fut = core.submit(spec(idempotent=False))
    (job,) = old.jobs()
    MemoryWorker(core, transport, "10.0.0.1").register()
    assert old.drained()  # told to finish and leave: one process per slot
    old.reply(job)
    assert fut.result().ok


async def test_the_old_process_dying_settles_only_its_own_jobs(
    env: tuple[HubCore, MemoryTransport, ManualClock],
) -> None:
    core, transport, clock = env
    old = MemoryWorker(core, transport, "10.0.0.1", capacity=1).register()
    lost = core.submit(spec(idempotent=False))
    old.jobs()
    core.retire("local/10.0.0.1")
    new = MemoryWorker(core, transport, "10.0.0.1", capacity=1).register()
    kept = core.submit(spec(idempotent=False))
    (new_job,) = new.jobs()

    core.lost("local/10.0.0.1", "process exited with -9", pid=old.ready.pid)  # the supervisor saw the old pid exit
    assert lost.result().result == "worker_lost"
    assert not kept.done() and "local/10.0.0.1" in core.workers
    run_for(core, clock, 1.0, new)
    new.reply(new_job)
    assert kept.result().ok


async def test_an_old_process_gone_silent_is_declared_dead_without_touching_the_new_one(
    env: tuple[HubCore, MemoryTransport, ManualClock],
) -> None:
    core, transport, clock = env
    old = MemoryWorker(core, transport, "10.0.0.1", capacity=1).register()
    fut = core.submit(spec(timeout=30.0))
    old.jobs()
    new = MemoryWorker(core, transport, "10.0.0.1", capacity=1).register()
    run_for(core, clock, 3 * HB + 0.5, new)  # only the new one beats
    assert old.info is None and core.workers["local/10.0.0.1"].pid == new.ready.pid
    core.pump()
    (again,) = new.jobs()  # the idempotent job, re-dispatched once its first process was dead
    new.reply(again)
    assert fut.result().ok and fut.result().attempts == 2


async def test_the_same_process_repeating_itself_loses_nothing_and_a_reconnect_is_a_new_connection(
    env: tuple[HubCore, MemoryTransport, ManualClock],
) -> None:
    core, transport, _ = env
    w = MemoryWorker(core, transport, "10.0.0.1").register()
    fut = core.submit(spec(idempotent=False))
    (job,) = w.jobs()
    w.register()  # a repeated Ready on the same connection
    w.reply(job)
    assert fut.result().ok

    lost = core.submit(spec(idempotent=False))
    w.jobs()
    w.reconnect()  # the same process on a fresh socket: what it had in flight it dropped
    assert lost.result().result == "worker_lost"
    assert len(core.connections) == 1 and core.workers["local/10.0.0.1"].routing_id == w.peer[1]


# --- 16.5: worker ids belong to the key that registered them ------------------------------


async def test_a_remote_key_cannot_take_a_local_worker_id(env: tuple[HubCore, MemoryTransport, ManualClock]) -> None:
    core, transport, _ = env
    core.reserve("local/10.0.0.1")  # the supervisor reserves its slots before they boot
    impostor = MemoryWorker(core, transport, "10.0.0.1", principal=KEY_A, via=1).register()
    assert impostor.info is None and core.bad_frames["id_taken"] == 1
    local = MemoryWorker(core, transport, "10.0.0.1").register()
    impostor.register()
    futures = [core.submit(spec()) for _ in range(4)]
    assert impostor.received() == [] and len(local.jobs()) == 4
    assert core.workers["local/10.0.0.1"].pid == local.ready.pid and core.bad_frames["id_taken"] == 2
    assert not any(f.done() for f in futures)


async def test_a_local_id_registered_before_reservation_is_still_the_local_one(
    env: tuple[HubCore, MemoryTransport, ManualClock],
) -> None:
    core, transport, _ = env
    local = MemoryWorker(core, transport, "10.0.0.1").register()
    MemoryWorker(core, transport, "10.0.0.9", worker_id="local/10.0.0.1", principal=KEY_A, via=1).register()
    assert core.workers["local/10.0.0.1"].pid == local.ready.pid and len(core.connections) == 1


async def test_a_squatter_is_dropped_when_the_id_is_reserved(env: tuple[HubCore, MemoryTransport, ManualClock]) -> None:
    core, transport, _ = env
    squatter = MemoryWorker(core, transport, "10.0.0.1", worker_id="local/10.0.0.1", principal=KEY_A, via=1).register()
    fut = core.submit(spec(idempotent=False))
    assert len(squatter.jobs()) == 1
    core.reserve("local/10.0.0.1")  # scale --add of that IP
    assert squatter.info is None and fut.result().result == "worker_lost"


async def test_one_key_cannot_take_another_keys_worker_id(env: tuple[HubCore, MemoryTransport, ManualClock]) -> None:
    core, transport, clock = env
    a = MemoryWorker(core, transport, "10.1.0.1", worker_id="host-a/10.1.0.1", principal=KEY_A, via=1).register()
    b = MemoryWorker(core, transport, "10.1.0.1", worker_id="host-a/10.1.0.1", principal=KEY_B, via=1).register()
    assert b.info is None and core.workers["host-a/10.1.0.1"].principal == KEY_A
    run_for(core, clock, 3 * HB + 0.5, a)  # a stays, however long b keeps trying
    b.register()
    assert a.info is not None and core.bad_frames["id_taken"] == 2


async def test_messages_are_judged_by_the_key_that_sent_them_not_by_the_route(
    env: tuple[HubCore, MemoryTransport, ManualClock],
) -> None:
    core, transport, _ = env
    a = MemoryWorker(core, transport, "10.1.0.1", worker_id="host-a/10.1.0.1", principal=KEY_A, via=1).register()
    fut = core.submit(spec())
    (job,) = a.jobs()
    hijack = MemoryWorker(core, transport, "10.1.0.1", principal=KEY_B, via=1)
    hijack.peer = a.peer  # another key on a's routing id
    hijack.reply(job, Outcome(result="ok", status=299))
    hijack.bye()
    assert not fut.done() and a.info is not None and core.bad_frames["wrong_key"] == 2
    a.reply(job)
    assert fut.result().ok and fut.result().status == 0


async def test_a_revoked_key_loses_its_workers_and_is_ignored_until_restored(
    env: tuple[HubCore, MemoryTransport, ManualClock],
) -> None:
    core, transport, _ = env
    a = MemoryWorker(core, transport, "10.1.0.1", worker_id="host-a/10.1.0.1", principal=KEY_A, via=1).register()
    fut = core.submit(spec(idempotent=False))
    (job,) = a.jobs()
    core.revoke(KEY_A, "key removed")
    assert fut.result().result == "worker_lost" and a.info is None
    assert any(isinstance(m, Drain) for m in a.received())
    a.reply(job)
    a.register()
    assert a.info is None and core.bad_frames["revoked_key"] == 2
    b = MemoryWorker(core, transport, "10.1.0.1", worker_id="host-a/10.1.0.1", principal=KEY_B, via=1).register()
    assert b.info is not None  # the revoked key's ids are free for the key that replaces it
    core.restore(KEY_A)
    a.reconnect()
    assert (
        MemoryWorker(core, transport, "10.1.0.2", worker_id="host-a/10.1.0.2", principal=KEY_A, via=1).register().info
    )


async def test_a_remote_key_registers_a_bounded_number_of_workers(
    env: tuple[HubCore, MemoryTransport, ManualClock],
) -> None:
    core, transport, _ = env
    for i in range(MAX_WORKERS_PER_KEY + 3):
        MemoryWorker(core, transport, "10.2.0.1", worker_id=f"h/{i}", principal=KEY_A, via=1).register()
    assert len(core.workers) == MAX_WORKERS_PER_KEY and core.bad_frames["too_many_workers"] == 3
    assert MemoryWorker(core, transport, "10.0.0.1").register().info is not None  # others are not affected


async def test_unknown_peers_are_asked_to_register(env: tuple[HubCore, MemoryTransport, ManualClock]) -> None:
    core, transport, _ = env
    stranger = MemoryWorker(core, transport, "10.0.0.1")
    stranger.beat()
    assert stranger.received() == [Disconnect()] and core.bad_frames["unknown_worker"] == 1
    assert core.connections == []


# --- 16.6: the hub's own stall is not its workers' silence --------------------------------


async def test_a_long_stall_of_the_hub_neither_kills_workers_nor_expires_answered_jobs(
    env: tuple[HubCore, MemoryTransport, ManualClock],
) -> None:
    core, transport, clock = env
    ws = [MemoryWorker(core, transport, f"10.0.0.{i}", capacity=1).register() for i in (1, 2)]
    run_for(core, clock, 2.0, *ws)
    futures = [core.submit(spec(timeout=1.0, idempotent=False)) for _ in ws]
    jobs = [w.jobs()[0] for w in ws]

    clock.advance(5.0)  # the hub's loop is stuck; its workers answered in time, the answers wait unread
    core.tick()  # the first tick after the stall comes before the socket is read
    assert len(core.workers) == 2 and not any(f.done() for f in futures)
    for w, job in zip(ws, jobs, strict=True):
        w.reply(job)
        w.beat()
    assert [f.result().result for f in futures] == ["ok", "ok"]
    assert core.lag_total >= 5.0 - HB / 4


async def test_after_a_stall_real_silence_and_unanswered_jobs_are_still_caught(
    env: tuple[HubCore, MemoryTransport, ManualClock],
) -> None:
    core, transport, clock = env
    alive = MemoryWorker(core, transport, "10.0.0.1", capacity=1).register()
    mute = MemoryWorker(core, transport, "10.0.0.2", capacity=1).register()  # heartbeats, never answers
    dead = MemoryWorker(core, transport, "10.0.0.3", capacity=1).register()  # silent
    held = core.submit(spec(require_ip="10.0.0.2", timeout=1.0))
    mute.jobs()
    clock.advance(5.0)
    core.tick()
    run_for(core, clock, 3 * HB + 0.5, alive, mute)
    assert dead.info is None and alive.info is not None and mute.info is not None
    assert held.result().result == "expired" and "no result by the deadline" in held.result().error


async def test_a_dispatch_too_large_for_the_wire_ends_its_job(
    env: tuple[HubCore, MemoryTransport, ManualClock],
) -> None:
    core, transport, _ = env
    w = MemoryWorker(core, transport, "10.0.0.1").register()
    fut = core.submit(spec())
    (job,) = w.jobs()
    core.too_large(w.peer, job, "9000000 bytes, over the 8388608-byte frame limit")
    assert fut.result().result == "rejected" and "too large" in fut.result().error
    assert w.info is not None and not w.info.inflight  # its credit is back


# --- jobs the queue starved ----------------------------------------------------------------


async def test_jobs_left_too_little_time_expire_at_once_instead_of_standing_before_a_fresh_one() -> None:
    """At the head of the queue (the soonest deadline first), starved jobs held to their deadlines
    filled the hub's scan and the pacing slot they passed up went unused."""
    clock, transport = ManualClock(), MemoryTransport()
    core = HubCore(FarmPolicy(known_rates={"u": 1.0}), transport, clock=clock, heartbeat_interval=HB)
    w = MemoryWorker(core, transport, "10.0.0.1", capacity=256).register()
    old = [core.submit(spec(timeout=4.0)) for _ in range(70)]
    fresh = core.submit(spec(timeout=100.0))
    core.pump()
    (first,) = w.jobs()  # the pace: one a second
    w.reply(first)
    clock.advance(3.1)  # the old ones have 0.9 s of their 4 s left: sent now, they would time out upstream
    core.pump()
    (sent,) = w.jobs()
    w.reply(sent)
    core.pump()
    assert fresh.done() and fresh.result().result == "ok"  # the pace's slot went to the one that can use it
    ended = [f.result() for f in old if f.done()]
    assert len(ended) == 70 and sum(o.result == "expired" for o in ended) == 69  # one went at 0 s
    assert core.counts["expired"] == 69 and core.queued == 0


async def test_a_job_picked_just_before_its_pacing_slot_leaves_with_a_hold_that_takes_it_to_the_slot() -> None:
    """The hub wakes LEAD before a paced pair's slot; woken late (here 4 ms, more than the pace's
    catch_up), it sends the job at once with the rest of the wait as its hold. Its timeout is the
    whole budget left, hold included, and the pace's next slot is counted from this one's."""
    clock, transport = ManualClock(), MemoryTransport()
    core = HubCore(FarmPolicy(known_rates={"u": 2.0}), transport, clock=clock, heartbeat_interval=HB)
    w = MemoryWorker(core, transport, "10.0.0.1", capacity=8).register()
    futures = [core.submit(spec(timeout=5.0)) for _ in range(3)]
    start, interval = clock.now, 1 / 1.96
    wake = core.pump()
    (first,) = w.jobs()
    assert first.hold == 0.0
    assert wake == pytest.approx(start + interval - LEAD)
    clock.now = wake + 0.004
    wake = core.pump()
    (held,) = w.jobs()
    assert held.hold == pytest.approx(start + interval - clock.now)  # 6 ms: it reaches the slot
    assert held.timeout == pytest.approx(start + 5.0 - clock.now)
    assert wake == pytest.approx(start + 2 * interval - LEAD)  # the schedule is kept
    for job in (first, held):
        w.reply(job)
    assert [f.result().result for f in futures[:2]] == ["ok", "ok"]
