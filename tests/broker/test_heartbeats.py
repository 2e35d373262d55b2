"""Heartbeats both ways every interval, in rounds: the hub beats all workers at once, and real
worker links answer at once, so an idle coordinator wakes a few times per interval, not once
per worker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import zmq

from broker.core import Peer
from broker.hub import Hub
from broker.link import WorkerLink
from broker.protocol import Heartbeat, Message, Ready
from broker.testing import LeastLoadedPolicy
from broker.types import WorkerInfo

HB = 0.2
WORKERS = 6
SECONDS = 2.4


async def test_workers_answer_each_round_of_heartbeats(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/hub.sock"
    hub = Hub(LeastLoadedPolicy(), ctx=zmq.Context(), heartbeat_interval=HB)
    hub.bind(endpoint)
    rounds: list[float] = []
    beats: dict[str, list[float]] = {}
    sent, received = hub._send, hub._on_message

    def send(worker: WorkerInfo, msg: Message, now: float) -> None:
        if isinstance(msg, Heartbeat) and (not rounds or now - rounds[-1] > HB / 4):
            rounds.append(now)
        sent(worker, msg, now)

    def on_message(peer: Peer, principal: bytes, msg: Message, now: float) -> None:
        worker = next((w for w in hub.connections if (w.via, w.routing_id) == peer), None)
        if isinstance(msg, Heartbeat) and worker is not None:
            beats.setdefault(worker.worker_id, []).append(now)
        received(peer, principal, msg, now)

    hub._send = send  # type: ignore[method-assign]
    hub._on_message = on_message  # type: ignore[method-assign]
    await hub.start()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    links = [
        WorkerLink(
            endpoint,
            Ready(worker_id=f"w{i}", ip=f"10.0.0.{i}", family="ipv4", bind=True, host="t", pid=1, capacity=1),
            on_job=lambda d: None,
            on_drain=lambda r: None,
            heartbeat=Heartbeat,
            ctx=ctx,
            heartbeat_interval=HB,
        )
        for i in range(WORKERS)
    ]
    tasks = []
    try:
        for link in links:  # each with its own phase, as workers started one by one would have
            tasks.append(asyncio.create_task(link.run()))
            await asyncio.sleep(HB / WORKERS * 1.3)
        await asyncio.sleep(SECONDS)
    finally:
        for link in links:
            link.stop()
        await asyncio.gather(*tasks)
        await hub.close(grace=0.1)
        ctx.destroy(0)
        hub.ctx.destroy(0)

    expected = SECONDS / HB
    assert len(rounds) >= expected * 0.7, rounds
    assert sorted(beats) == [f"w{i}" for i in range(WORKERS)]
    for worker_id, times in beats.items():
        # Every interval from each worker: the coordinator needs them to keep it alive.
        assert expected * 0.6 <= len(times) <= expected * 1.3, (worker_id, len(times))
    # And they answer the hub's rounds: most arrive soon after one. At each worker's own phase, a
    # quarter would by chance; a loaded machine delays a round's answers now and then, hence 70 %.
    after_round = [t for times in beats.values() for t in times if any(0 <= t - r < HB / 4 for r in rounds)]
    total = sum(len(times) for times in beats.values())
    assert len(after_round) >= 0.7 * total, (len(after_round), total)


async def test_a_stall_of_the_loop_both_ends_run_on_is_nobodys_silence(tmp_path: Path) -> None:
    """Issue 16.6: the hub and a worker link both discount their own loop's stall (here, the same loop's)."""
    endpoint = f"ipc://{tmp_path}/hub.sock"
    hub = Hub(LeastLoadedPolicy(), ctx=zmq.Context(), heartbeat_interval=HB)
    hub.bind(endpoint)
    await hub.start()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    link = WorkerLink(
        endpoint,
        Ready(worker_id="w", ip="10.0.0.1", family="ipv4", bind=True, host="t", pid=1, capacity=1),
        on_job=lambda d: None,
        on_drain=lambda r: None,
        heartbeat=Heartbeat,
        reconnect=True,
        ctx=ctx,
        heartbeat_interval=HB,
        peer_alive=lambda: False,  # no proof of life: only the discount of our own stall can keep it
    )
    task = asyncio.create_task(link.run())
    try:
        for _ in range(200):
            if "w" in hub.workers:
                break
            await asyncio.sleep(0.01)
        registered = hub.workers["w"]
        end = time.monotonic() + HB * 3 * 4  # four times the liveness limit, holding the loop
        while time.monotonic() < end:
            pass
        await asyncio.sleep(HB * 3 * 2)  # both ends keep talking afterwards
        assert hub.workers.get("w") is registered and link.registrations == 1 and not task.done()
    finally:
        link.stop()
        await asyncio.gather(task)
        await hub.close(grace=0.1)
        ctx.destroy(0)
        hub.ctx.destroy(0)
