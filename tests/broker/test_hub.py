"""The hub against workers played by the test over real ZeroMQ sockets."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from broker.hub import Hub
from broker.jobs import HttpRequest
from broker.protocol import HEADER, Drain, Outcome
from broker.testing import LeastLoadedPolicy
from broker.types import JobSpec
from tests.broker.fakeworker import FakeWorker

HB = 0.1  # heartbeat interval: dead after 0.3 s of silence


def spec(**kw: object) -> JobSpec:
    return JobSpec(HttpRequest(url="http://127.0.0.1/"), upstream=str(kw.pop("upstream", "u")), **kw)  # type: ignore[arg-type]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Hub, str, zmq.asyncio.Context]]:
    endpoint = f"ipc://{tmp_path}/hub.sock"
    hub = Hub(LeastLoadedPolicy(), ctx=zmq.Context(), heartbeat_interval=HB)
    hub.bind(endpoint)
    await hub.start()
    actx = zmq.asyncio.Context()
    yield hub, endpoint, actx
    await hub.close(grace=0.2)
    actx.destroy(0)
    hub.ctx.destroy(0)


async def registered(
    hub: Hub, endpoint: str, actx: zmq.asyncio.Context, ip: str, capacity: int = 4, beat: bool = True
) -> FakeWorker:
    w = FakeWorker(actx, endpoint, ip, capacity)
    await w.register()
    if beat:
        w.keep_beating(HB / 2)
    for _ in range(200):
        if f"fake/{ip}" in hub.workers:
            return w
        await asyncio.sleep(0.005)
    raise AssertionError("worker did not register")


async def test_credit_is_never_exceeded(env: tuple[Hub, str, zmq.asyncio.Context]) -> None:
    hub, endpoint, actx = env
    w = await registered(hub, endpoint, actx, "10.0.0.1", capacity=2)
    futures = [hub.submit(spec()) for _ in range(7)]
    first = [await w.next_job(5)]
    first += await w.jobs_within(0.2)
    assert len(first) == 2  # the capacity it announced
    done = 0
    pending = list(first)
    while done < 7:
        if not pending:  # the refill was slower than 50 ms (a loaded machine): wait for it
            pending.append(await w.next_job(5))
        job = pending.pop(0)
        await w.reply(job)
        done += 1
        pending += await w.jobs_within(0.05)
        assert len(pending) <= 2
    assert done == 7 and not await w.jobs_within(0.1)
    outcomes = await asyncio.gather(*futures)
    assert all(o.ok and o.ip == "10.0.0.1" for o in outcomes)
    w.close()


async def test_exactly_one_outcome_even_when_a_result_repeats(env: tuple[Hub, str, zmq.asyncio.Context]) -> None:
    hub, endpoint, actx = env
    w = await registered(hub, endpoint, actx, "10.0.0.1")
    fut = hub.submit(spec())
    job = await w.next_job()
    await w.reply(job, Outcome(result="ok", status=200))
    await w.reply(job, Outcome(result="timeout"))
    out = await fut
    assert out.result == "ok" and out.status == 200
    for _ in range(100):
        if hub.late_results:
            break
        await asyncio.sleep(0.005)
    assert hub.late_results == 1
    w.close()


async def test_queued_jobs_expire_at_their_deadline(env: tuple[Hub, str, zmq.asyncio.Context]) -> None:
    hub, _, _ = env
    hub.expected_workers = 1  # a worker is on its way, so jobs wait instead of being rejected
    out = await hub.submit(spec(timeout=0.05))
    assert out.result == "expired" and "while queued" in out.error and out.attempts == 0


async def test_no_worker_at_all_is_rejected_and_a_full_queue_too(env: tuple[Hub, str, zmq.asyncio.Context]) -> None:
    hub, _, _ = env
    out = await hub.submit(spec())
    assert out.result == "rejected" and "no IP" in out.error
    hub.expected_workers = 1
    hub.max_queued = 2
    futures = [hub.submit(spec(timeout=0.2)) for _ in range(3)]
    outs = await asyncio.gather(*futures)
    assert [o.result for o in outs] == ["expired", "expired", "rejected"]


async def test_dead_worker_requeues_idempotent_jobs_and_loses_the_others(
    env: tuple[Hub, str, zmq.asyncio.Context],
) -> None:
    hub, endpoint, actx = env
    dying = await registered(hub, endpoint, actx, "10.0.0.1", capacity=2, beat=False)
    idem = hub.submit(spec(timeout=5.0))
    once = hub.submit(spec(timeout=5.0, idempotent=False))
    got = await dying.jobs_within(0.2)
    assert len(got) == 2
    healthy = await registered(hub, endpoint, actx, "10.0.0.2")

    # `dying` stays silent; `healthy` keeps beating and answers what it is given.
    async def serve() -> None:
        while True:
            for job in await healthy.jobs_within(HB / 2):
                await healthy.reply(job)

    server = asyncio.create_task(serve())
    out_idem, out_once = await asyncio.gather(idem, once)
    server.cancel()
    assert out_idem.ok and out_idem.ip == "10.0.0.2" and out_idem.attempts == 2
    assert out_once.result == "worker_lost" and out_once.ip == "10.0.0.1"
    assert "fake/10.0.0.1" not in hub.workers
    dying.close()
    healthy.close()


async def test_garbage_frames_are_counted_and_ignored(
    env: tuple[Hub, str, zmq.asyncio.Context], caplog: pytest.LogCaptureFixture
) -> None:
    hub, endpoint, actx = env
    raw = actx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(endpoint)
    await raw.send_multipart([os.urandom(33)])
    await raw.send_multipart([b"nope", b"\x00\x01"])  # two frames: not our framing
    await raw.send_multipart([HEADER + b"\x91\x92\xa3"])  # truncated msgpack
    await raw.send_multipart([HEADER + b"\x91\x81\xa4type\xa5weird"])  # unknown message type
    await raw.send_multipart([HEADER + b"\x90"])  # an empty batch
    await raw.send_multipart([HEADER + b"\x91\x81\xa4type\xa2hb"])  # a valid heartbeat from a stranger
    with caplog.at_level(logging.ERROR, logger="broker.hub"):
        for _ in range(2):  # a heartbeat from a worker of another release, twice: logged once
            await raw.send_multipart([b"GLW1\x91\x81\xa4type\xa2hb"])
        for _ in range(200):
            if sum(hub.bad_frames.values()) >= 8:
                break
            await asyncio.sleep(0.005)
    assert hub.bad_frames["other_version"] == 2
    assert [r.getMessage() for r in caplog.records].count(
        "a peer speaks protocol b'GLW1', this side b'GLW3': run one galileo release everywhere; its frames are dropped"
    ) == 1
    assert hub.bad_frames["undecodable"] == 4
    assert hub.bad_frames["framing"] == 1
    assert hub.bad_frames["unknown_worker"] == 1
    w = await registered(hub, endpoint, actx, "10.0.0.9")
    fut = hub.submit(spec())
    await w.reply(await w.next_job())
    assert (await fut).ok
    raw.close()
    w.close()


async def test_close_cancels_queued_jobs(tmp_path: Path) -> None:
    hub = Hub(LeastLoadedPolicy(), ctx=zmq.Context(), heartbeat_interval=HB)
    hub.bind(f"ipc://{tmp_path}/h.sock")
    await hub.start()
    hub.expected_workers = 1
    fut = hub.submit(spec(timeout=10))
    await hub.close(grace=0.1)
    assert (await fut).result == "cancelled"
    assert (await hub.submit(spec())).result == "cancelled"
    hub.ctx.destroy(0)


async def test_a_new_process_for_a_slot_drains_the_old_one_and_its_results_are_delivered(
    env: tuple[Hub, str, zmq.asyncio.Context],
) -> None:
    """Issue 16.4 over real sockets: two processes of one slot, each on its own routing id."""
    hub, endpoint, actx = env
    old = FakeWorker(actx, endpoint, "10.0.0.1", route=b"fake/10.0.0.1#a", incarnation="a", pid=11)
    await old.register()
    old.keep_beating(HB / 2)
    await wait_registered(hub, lambda: "fake/10.0.0.1" in hub.workers)
    futures = [hub.submit(spec(idempotent=False)), hub.submit(spec())]
    jobs = await old.jobs_within(0.2)
    assert len(jobs) == 2
    new = FakeWorker(actx, endpoint, "10.0.0.1", route=b"fake/10.0.0.1#b", incarnation="b", pid=12)
    await new.register()
    new.keep_beating(HB / 2)
    await wait_registered(
        hub, lambda: hub.workers.get("fake/10.0.0.1") is not None and hub.workers["fake/10.0.0.1"].pid == 12
    )

    async def drain_seen() -> None:  # told to finish and leave: one process per slot
        while not isinstance(await old.recv(), Drain):
            pass

    await asyncio.wait_for(drain_seen(), 5)
    for job in jobs:
        await old.reply(job)
    outs = await asyncio.gather(*futures)
    assert [(o.result, o.attempts) for o in outs] == [("ok", 1), ("ok", 1)]
    later = hub.submit(spec())
    await new.reply(await new.next_job())
    assert (await later).ok and (await later).worker_id == "fake/10.0.0.1"
    assert await old.jobs_within(0.2) == []  # nothing ran twice, nothing new went to the old one
    old.close()
    new.close()


async def wait_registered(hub: Hub, cond: Callable[[], bool]) -> None:
    for _ in range(400):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("worker did not register")
