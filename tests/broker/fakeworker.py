"""A worker played by the test: a real DEALER socket, driven step by step."""

from __future__ import annotations

import asyncio

import zmq
import zmq.asyncio

from broker.protocol import Dispatch, Heartbeat, Message, Outcome, Ready, Result, decode_batch, encode


class FakeWorker:
    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        ip: str,
        capacity: int = 4,
        *,
        route: bytes | None = None,
        incarnation: str = "",
        pid: int = 1,
    ) -> None:
        self.ip = ip
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, route or f"fake/{ip}".encode())
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self._beat: asyncio.Task[None] | None = None
        self._inbox: list[Message] = []
        self.ready = Ready(
            worker_id=f"fake/{ip}",
            ip=ip,
            family="ipv4",
            bind=True,
            host="test",
            pid=pid,
            capacity=capacity,
            incarnation=incarnation,
        )

    async def register(self) -> None:
        await self.send(self.ready)

    async def send(self, msg: Message) -> None:
        await self.sock.send_multipart(encode(msg))

    async def recv(self, timeout: float = 2.0) -> Message:
        if not self._inbox:
            frames = await asyncio.wait_for(self.sock.recv_multipart(), timeout)
            self._inbox.extend(decode_batch(frames[0]))
        return self._inbox.pop(0)

    async def next_job(self, timeout: float = 2.0) -> Dispatch:
        """The next job within ``timeout`` seconds in all (heartbeats do not restart the clock)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.recv(max(0.0, deadline - loop.time()))
            if isinstance(msg, Dispatch):
                return msg

    async def jobs_within(self, seconds: float) -> list[Dispatch]:
        got: list[Dispatch] = []
        try:
            while True:
                got.append(await self.next_job(seconds))
        except TimeoutError:
            return got

    async def reply(self, job: Dispatch, outcome: Outcome | None = None) -> None:
        await self.send(Result(job_id=job.job_id, attempt=job.attempt, outcome=outcome or Outcome(result="ok")))

    async def heartbeat(self) -> None:
        await self.send(Heartbeat())

    def keep_beating(self, interval: float) -> None:
        """Heartbeat in the background, as a live worker's loop would."""

        async def beat() -> None:
            while True:
                await self.heartbeat()
                await asyncio.sleep(interval)

        self._beat = asyncio.create_task(beat())

    def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        self.sock.close(0)
