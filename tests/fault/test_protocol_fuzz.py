"""Issue 9.5: random and mutated frames to the coordinator's worker socket, its control socket, a worker.

Frames are valid encoded batches mutated (truncated, bytes flipped, inserted or dropped, the
header changed), valid msgpack of the wrong shape, arrays claiming billions of items, nesting
deeper than any decoder's recursion, multi-frame messages and plain random bytes. Whatever
arrives, the receiver stays up, counts every bad frame exactly once (``hub.bad_frames``,
control ``bad_requests``, the worker's ``link.bad_frames`` reported in its heartbeat), and
then serves a valid request correctly.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from broker.jobs import JupiterQuote
from broker.protocol import (
    HEADER,
    Bye,
    Disconnect,
    Dispatch,
    Drain,
    Event,
    Heartbeat,
    Message,
    Outcome,
    Ready,
    Result,
    UpstreamStats,
    decode_batch,
    encode_batch,
)
from broker.results import Quote, TitanQuote
from broker.solana import AccountMeta, Instruction
from galileo.farm.control import HEADER as CONTROL_HEADER
from galileo.farm.control import control_request
from galileo.farm.coordinator import Farm
from galileo.sim import SimServer
from tests.fault.conftest import SOL, USDC, FarmFactory, SimFactory, ips, quote, running, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_QUOTE = Quote(in_amount=10**9, out_amount=150_000_000, other_amount_threshold=1, slippage_bps=0, price_impact_pct=0.0)
_IX = Instruction(SOL, (AccountMeta(USDC, True, False),), b"\x01\x02")
_JOB = JupiterQuote(base_url="http://127.0.0.1:9/jupiter/swap/v1", input_mint=SOL, output_mint=USDC, amount=1)
SEEDS: list[Message] = [
    Heartbeat(inflight=3, loop_lag_ms=1.5, rss=10**8, stats={"jupiter": UpstreamStats(counts={"ok": 4}, rate=2.0)}),
    Result(job_id=7, attempt=0, outcome=Outcome(result="ok", status=200, latency=0.01, value=_QUOTE)),
    Result(job_id=8, attempt=1, outcome=Outcome(result="rate_limited", status=429, retry_after=1.0, error="HTTP 429")),
    Event(
        job_id=9,
        name="quote",
        value=TitanQuote(
            provider="p", in_amount=1, out_amount=2, slippage_bps=0, instructions=[_IX], seq=1, stream_id=1
        ),
    ),
    Bye(reason="drained"),
    Dispatch(job_id=10, attempt=0, kind="jupiter_quote", upstream="jupiter", timeout=1.0, payload=_JOB),
    Drain(reason="retired"),
    Disconnect(),
    Ready(worker_id="w/1", ip="127.0.9.250", family="ipv4", bind=True, host="h", pid=1, capacity=4),
]
HUGE_BATCH = encode_batch([Heartbeat()] * 1025)  # one more than a frame may carry
NASTY = [
    b"",
    HEADER,
    b"GLW9" + encode_batch([Heartbeat()])[4:],  # a future protocol version
    HEADER + b"\xdd\xff\xff\xff\xff",  # an array of 4 billion messages, and nothing else
    HEADER + b"\xdf\xff\xff\xff\xff",  # a map of 4 billion pairs
    HEADER + b"\x91" * 5000 + b"\xc0",  # nesting deeper than any recursion limit
    HEADER + b"\x90",  # an empty batch
    HUGE_BATCH,
    HEADER + msgspec.msgpack.encode([{"type": "result", "job_id": "seven", "attempt": 0, "outcome": {}}]),
    HEADER + msgspec.msgpack.encode([{"type": "hb", "inflight": 2**64 - 1, "rss": -(2**63)}]),
    HEADER + b"\x91\x81\xa4type\xa1\x80",  # a string that is not UTF-8
]

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=8))
_values = st.recursive(
    _scalars | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Message]) -> bytes:
    """A valid batch of seed messages, then one mutation of its bytes."""
    batch = draw(st.lists(st.sampled_from(seeds), min_size=1, max_size=3))
    frame = bytearray(encode_batch(batch))
    how = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "header", "none"]))
    if how == "truncate":
        return bytes(frame[: draw(st.integers(0, len(frame) - 1))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(frame) - 1))
            frame[i] ^= draw(st.integers(1, 255))
    elif how == "insert":
        i = draw(st.integers(0, len(frame)))
        frame[i:i] = draw(st.binary(min_size=1, max_size=4))
    elif how == "delete":
        i = draw(st.integers(0, len(frame) - 1))
        del frame[i : i + draw(st.integers(1, 4))]
    elif how == "header":
        frame[:4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(frame)


def wrong_shapes() -> st.SearchStrategy[bytes]:
    """Valid msgpack after a valid header, of anything but a batch of messages."""
    tagged = st.fixed_dictionaries(
        {"type": st.sampled_from(["hb", "result", "event", "bye", "job", "drain", "disconnect", "ready", "x"])},
        optional={"job_id": _values, "attempt": _values, "outcome": _values, "inflight": _values, "name": _values},
    )
    return st.one_of(_values, st.lists(tagged, min_size=1, max_size=3)).map(
        lambda v: HEADER + msgspec.msgpack.encode(v)
    )


def huge_arrays() -> st.SearchStrategy[bytes]:
    """Array and map headers that claim far more items than the frame holds."""
    return st.builds(
        lambda tag, n, tail: HEADER + tag + struct.pack(">I", n) + tail,
        st.sampled_from([b"\xdd", b"\xdf"]),
        st.integers(1025, 2**32 - 1),
        st.binary(max_size=16),
    )


def one_frame(seeds: list[Message]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        mutated(seeds),
        wrong_shapes(),
        huge_arrays(),
        st.binary(max_size=64),
        st.binary(max_size=64).map(lambda b: HEADER + b),
        st.sampled_from(NASTY),
    )


def frames_of(seeds: list[Message]) -> st.SearchStrategy[list[bytes]]:
    """What a peer sends: usually one frame, sometimes a multi-frame message (never ours)."""
    return st.one_of(
        one_frame(seeds).map(lambda f: [f]),
        st.lists(one_frame(seeds), min_size=2, max_size=3),
    )


def decoded(frame: bytes) -> list[Message] | None:
    """The messages in ``frame``, or None for a frame its receiver must count as bad."""
    try:
        return decode_batch(frame)
    except Exception:  # ProtocolError, or whatever else the receiver would have to survive
        return None


# --- the coordinator's worker socket ---------------------------------------------------------


def hub_counts(frames: list[bytes]) -> int | None:
    """How many bad frames the hub must count for a message from a peer that never registered."""
    if len(frames) != 1:
        return 1  # "framing"
    msgs = decoded(frames[0])
    if msgs is None:
        return 1  # "undecodable"
    if any(isinstance(m, Ready) for m in msgs):
        return None  # a registration, not a bad frame: leave those to the hub's own tests
    return len(msgs)  # each one "unknown_worker" or "wrong_direction"


@pytest.fixture
async def fuzzed_farm(sim_factory: SimFactory, farm_factory: FarmFactory) -> AsyncIterator[tuple[Farm, SimServer]]:
    sim = await sim_factory()
    farm = await farm_factory(ips(1, start=110))
    yield farm, sim


class Peer:
    """A DEALER the test drives, with a routing id the hub has never seen."""

    def __init__(self, endpoint: str, ident: bytes) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, ident)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def drain(self) -> list[list[bytes]]:
        got = []
        while self.sock.poll(0):
            got.append(self.sock.recv_multipart())
        return got

    async def recv(self, timeout: float) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while not self.sock.poll(0):
            if time.monotonic() > deadline:
                raise AssertionError("no reply")
            await asyncio.sleep(0.001)
        return self.sock.recv_multipart()

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


SENTINEL = [HEADER + b"\xc1"]  # 0xc1 is never used by msgpack: one "undecodable" frame


@pytest.fixture
async def worker_peer(fuzzed_farm: tuple[Farm, SimServer]) -> AsyncIterator[Peer]:
    peer = Peer(fuzzed_farm[0].worker_endpoint, b"fuzz/peer")
    yield peer
    peer.close()


@pytest.mark.fault
@FUZZ
@given(frames=frames_of(SEEDS))
@example(frames=[HUGE_BATCH])
@example(frames=[HEADER + b"\x91" * 5000 + b"\xc0"])
@example(frames=[HEADER + b"\x91\x81\xa4type\xa1\x80"])
@example(frames=[b""])
async def test_fuzzed_frames_to_the_coordinator_are_counted_and_never_crash_it(
    fuzzed_farm: tuple[Farm, SimServer], worker_peer: Peer, frames: list[bytes]
) -> None:
    farm, sim = fuzzed_farm
    expected = hub_counts(frames)
    assume(expected is not None)
    assert expected is not None
    bad = farm.hub.bad_frames
    before = sum(bad.values())
    (real,) = farm.hub.workers.values()
    worker_peer.sock.send_multipart(frames)
    worker_peer.sock.send_multipart(SENTINEL)  # processed after the frames above: same pipe, in order
    await wait_for(lambda: sum(bad.values()) >= before + expected + 1, 5, "the bad frames counted", every=0.001)
    assert sum(bad.values()) == before + expected + 1, dict(bad)
    worker_peer.drain()  # the Disconnects the hub answered an unknown peer with
    assert list(farm.hub.workers.values()) == [real] and running(real.pid)
    out = await farm.submit(quote(sim.url, timeout=5.0))
    assert out.ok and out.ip == real.ip, out


# --- the control socket ----------------------------------------------------------------------


def control_is_valid(frames: list[bytes]) -> bool:
    """A well-formed request the coordinator would act on (stats, rescan, scale of real IPs)."""
    if len(frames) != 2 or frames[0] != CONTROL_HEADER:
        return False
    try:
        req = msgspec.msgpack.decode(frames[1])
    except (ValueError, RecursionError):
        return False
    if not isinstance(req, dict):
        return False
    cmd = req.get("cmd")
    if cmd in ("stats", "rescan"):
        return True
    if cmd != "scale":
        return False
    from galileo.farm.control import _addresses

    return _addresses(req.get("add", [])) is not None and _addresses(req.get("remove", [])) is not None


def control_bodies() -> st.SearchStrategy[bytes]:
    requests = st.fixed_dictionaries(
        {"cmd": st.one_of(st.sampled_from(["stats", "scale", "rescan", "STATS", "stop", ""]), _values)},
        optional={"add": _values, "remove": _values},
    )
    return st.one_of(
        requests.map(msgspec.msgpack.encode),
        _values.map(msgspec.msgpack.encode),
        st.binary(max_size=64),
        st.just(b"\x91" * 5000 + b"\xc0"),
        st.builds(
            lambda body, cut: body[:cut],
            st.just(msgspec.msgpack.encode({"cmd": "stats"})),
            st.integers(0, 10),
        ),
    )


def control_frames() -> st.SearchStrategy[list[bytes]]:
    return st.one_of(
        control_bodies().map(lambda b: [CONTROL_HEADER, b]),
        st.tuples(st.binary(max_size=6), control_bodies()).map(list),
        st.lists(st.binary(max_size=16), min_size=1, max_size=4),
    )


@pytest.fixture
async def control_peer(fuzzed_farm: tuple[Farm, SimServer]) -> AsyncIterator[Peer]:
    peer = Peer(f"ipc://{fuzzed_farm[0].runtime_dir / 'control.sock'}", b"fuzz/control")
    yield peer
    peer.close()


@pytest.mark.fault
@FUZZ
@given(frames=control_frames())
@example(frames=[CONTROL_HEADER, b"\x91" * 5000 + b"\xc0"])
@example(frames=[CONTROL_HEADER, b"\x81\xa3cmd\xa1\x80"])
@example(frames=[CONTROL_HEADER, msgspec.msgpack.encode({"cmd": "scale", "add": "127.0.9.111"})])
@example(frames=[CONTROL_HEADER, msgspec.msgpack.encode({"cmd": "scale", "remove": [7]})])
async def test_fuzzed_control_requests_are_answered_or_counted_and_never_crash_it(
    fuzzed_farm: tuple[Farm, SimServer], control_peer: Peer, frames: list[bytes]
) -> None:
    farm, _ = fuzzed_farm
    assume(not control_is_valid(frames))
    server = farm._control
    before = server.bad_requests
    control_peer.sock.send_multipart(frames)
    if len(frames) == 2 and frames[0] == CONTROL_HEADER:
        reply = msgspec.msgpack.decode((await control_peer.recv(5))[-1])
        assert isinstance(reply, dict) and "error" in reply, reply
        assert server.bad_requests == before + 1
    else:  # not even a request: no answer, only the count
        control_peer.sock.send_multipart([b"sentinel"])
        await wait_for(lambda: server.bad_requests >= before + 2, 5, "the bad request counted", every=0.001)
        assert server.bad_requests == before + 2
    snap = await asyncio.to_thread(control_request, farm.runtime_dir / "control.sock", {"cmd": "stats"}, 5.0)
    assert [w["ip"] for w in snap["workers"]] == [ips(1, start=110)[0]]
    assert snap["workers"][0]["state"] == "ready"


# --- a worker's DEALER -------------------------------------------------------------------------


def worker_counts(frames: list[bytes]) -> int | None:
    """How many bad frames a worker must count for a message from its coordinator."""
    if len(frames) != 1:
        return 1
    msgs = decoded(frames[0])
    if msgs is None:
        return 1
    if any(isinstance(m, Dispatch | Drain) for m in msgs):
        return None  # a job to run or an order to leave: valid, not the worker's to count
    return sum(1 for m in msgs if not isinstance(m, Heartbeat | Disconnect))  # the rest go the other way


class FakeCoordinator:
    """A ROUTER the test owns, with one real worker process connected to it."""

    def __init__(self, tmp_path: Path, ip: str) -> None:
        self.endpoint = f"ipc://{tmp_path / 'fuzz.sock'}"
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(self.endpoint)
        self.ip = ip
        self.route = b""
        self.heard: list[Message] = []
        self.stderr = tmp_path / "worker.err"
        self.proc: asyncio.subprocess.Process | None = None

    async def start_worker(self) -> None:
        code = (
            "import sys\nfrom workers.main import WorkerArgs, worker_entry\n"
            f"worker_entry(WorkerArgs(worker_id='fuzz/{self.ip}', ip='{self.ip}', bind=True, "
            f"endpoint=sys.argv[1], log_level='warning'))\n"
        )
        with self.stderr.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, self.endpoint, stdout=err, stderr=err, stdin=asyncio.subprocess.DEVNULL
            )
        ready = await self.next(lambda m: isinstance(m, Ready), 30)
        assert isinstance(ready, Ready) and ready.ip == self.ip
        self.send(encode_batch([Heartbeat()]))

    def send(self, *frames: bytes) -> None:
        self.sock.send_multipart([self.route, *frames])

    async def next(self, want: Any, timeout: float) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            while self.sock.poll(0):
                route, *frames = self.sock.recv_multipart()
                self.route = route
                for msg in decode_batch(frames[0]):
                    self.heard.append(msg)
                    if want(msg):
                        return msg
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing wanted from the worker in {timeout}s; heard {self.heard[-5:]}")
            self.send(encode_batch([Heartbeat()]))  # we are alive: the worker must not give up on us
            await asyncio.sleep(0.05)

    def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture
async def fake_coordinator(tmp_path: Path) -> AsyncIterator[FakeCoordinator]:
    fake = FakeCoordinator(tmp_path, ips(1, start=120)[0])
    await fake.start_worker()
    yield fake
    fake.close()
    if fake.proc is not None:
        await fake.proc.wait()


@pytest.mark.fault
async def test_fuzzed_frames_to_a_worker_are_counted_and_it_still_runs_jobs(
    fake_coordinator: FakeCoordinator, sim_factory: SimFactory
) -> None:
    fake = fake_coordinator
    sim = await sim_factory()
    expected = 0
    alive = encode_batch([Heartbeat()])

    # Hypothesis drives the feed; the worker is another process, so sending needs no event loop.
    @settings(max_examples=400, deadline=None, database=None)
    @given(frames=frames_of(SEEDS))
    @example(frames=[HUGE_BATCH])
    @example(frames=[HEADER + b"\xdd\xff\xff\xff\xff"])
    @example(frames=[HEADER + b"\x91\x81\xa4type\xa1\x80"])
    @example(frames=[b""])
    def feed(frames: list[bytes]) -> None:
        nonlocal expected
        counted = worker_counts(frames)
        assume(counted is not None)
        assert counted is not None
        fake.send(*frames)
        fake.send(alive)  # a valid frame after each bad one, so the worker keeps hearing its coordinator
        expected += counted

    feed()
    assert expected > 100
    report = await fake.next(lambda m: isinstance(m, Heartbeat) and m.bad_frames >= expected, 10)
    assert isinstance(report, Heartbeat) and report.bad_frames == expected

    # A valid job after all that: answered, correctly.
    job = Dispatch(
        job_id=4242,
        attempt=0,
        kind="jupiter_quote",
        upstream="jupiter",
        timeout=5.0,
        payload=quote(sim.url).payload,
    )
    fake.send(encode_batch([job]))
    result = await fake.next(lambda m: isinstance(m, Result) and m.job_id == 4242, 10)
    assert isinstance(result, Result) and result.outcome.result == "ok", result
    assert isinstance(result.outcome.value, Quote) and result.outcome.value.in_amount == 10**9
    assert fake.proc is not None and fake.proc.returncode is None

    # And it still leaves cleanly when told to.
    fake.send(encode_batch([Drain(reason="fuzz over")]))
    await fake.next(lambda m: isinstance(m, Bye), 10)
    assert await asyncio.wait_for(fake.proc.wait(), 15) == 0
    stderr = fake.stderr.read_text(errors="replace")
    assert "Traceback" not in stderr and "never retrieved" not in stderr, stderr[-2000:]
