"""The coordinator <-> worker protocol: typed messages, msgpack, two frames.

Every ZeroMQ message is one frame: ``b"GLW3"`` (the version, so a peer from another version
or random bytes are recognised and counted, never guessed at; another version is logged once)
followed by a msgpack array of messages, each a tagged union. Messages to the same peer within
one event-loop iteration travel together (see :mod:`broker.outbox`): a ZeroMQ send costs tens of
microseconds on a small machine, encoding one more message in a batch costs well under one.
Encoders and decoders are built once per process and reused.

Worker -> coordinator: :class:`Ready`, :class:`Heartbeat`, :class:`Result`, :class:`Bye`,
:class:`Event`. Coordinator -> worker: :class:`Dispatch`, :class:`Heartbeat`,
:class:`Drain`, :class:`Disconnect`. Any message counts as a heartbeat; explicit heartbeats
are sent only by a side that has sent nothing else for one interval.

Jobs carry a time *budget* (``timeout``), never a deadline: clocks differ across hosts, and
the coordinator keeps the deadline itself.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from broker.jobs import JobPayload
from broker.results import ResultValue

__all__ = [
    "HEADER",
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_LIVENESS",
    "RESULTS",
    "Bye",
    "Disconnect",
    "Dispatch",
    "Drain",
    "Event",
    "Heartbeat",
    "Message",
    "Outcome",
    "ProtocolError",
    "Ready",
    "Result",
    "ResultName",
    "UpstreamStats",
    "VersionError",
    "decode",
    "decode_batch",
    "encode",
    "encode_batch",
]

# GLW1 until round 25: its workers know no Dispatch.hold, and would send a held job up to 10 ms early.
HEADER: Final = b"GLW3"
HEARTBEAT_INTERVAL: Final = 1.0  # seconds, from each side's event loop
HEARTBEAT_LIVENESS: Final = 3  # intervals without a message before a peer is dead

ResultName = Literal[
    "ok",
    "rate_limited",
    "timeout",
    "http_error",
    "network_error",
    "bind_error",
    "decode_error",
    "protocol_error",
    "expired",
    "worker_lost",
    "rejected",
    "cancelled",
]
RESULTS: Final[tuple[ResultName, ...]] = (
    "ok",
    "rate_limited",
    "timeout",
    "http_error",
    "network_error",
    "bind_error",
    "decode_error",
    "protocol_error",
    "expired",
    "worker_lost",
    "rejected",
    "cancelled",
)


class Outcome(msgspec.Struct, kw_only=True, omit_defaults=True):
    """How one attempt of a job ended. Terminal results are listed in :data:`RESULTS`."""

    result: ResultName
    status: int = 0  # HTTP status when there was a response
    latency: float = 0.0  # seconds the upstream took, as measured by the worker
    retry_after: float | None = None  # seconds, from Retry-After or the upstream's body
    error: str = ""  # one line a person can act on; never a secret
    value: ResultValue | None = None  # the decoded answer when result == "ok"
    waited: float = 0.0  # seconds its worker held it for a slot under its cap (Dispatch.cap) before sending it
    # When its worker sent it, on that worker's monotonic clock (0: not sent, or not said). Only ever
    # compared with the same worker's other sends: its answer came ``latency`` after.
    sent: float = 0.0


# Sizes no real worker comes near, so what the hub keeps of a worker stays small whatever a peer sends.
Name = Annotated[str, msgspec.Meta(max_length=256)]
_Counts = Annotated[dict[Annotated[str, msgspec.Meta(max_length=32)], int], msgspec.Meta(max_length=32)]


class UpstreamStats(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """A worker's rolling view of one upstream over the last 60 s."""

    counts: _Counts = msgspec.field(default_factory=dict)
    rate: float = 0.0  # jobs/s over the window
    p50_ms: float = 0.0
    p99_ms: float = 0.0


# --- worker -> coordinator -------------------------------------------------------------


class Ready(msgspec.Struct, tag="ready", kw_only=True):
    """A worker is up (or back): who it is and how many jobs it takes at once (its credit).

    ``worker_id`` names the slot (``local/10.0.0.7``, ``host-b/10.1.0.3``); ``incarnation``
    names the process in it, random per process. The same incarnation registering again is
    the same process reconnecting; another one is a new process for the slot, which never
    takes the results of the one before.
    """

    worker_id: Name
    ip: Annotated[str, msgspec.Meta(max_length=64)]
    family: Literal["ipv4", "ipv6"]
    bind: bool  # False: the default-route slot, the kernel picks the source
    host: Name
    pid: int
    capacity: int
    version: Name = ""
    incarnation: Name = ""


class Heartbeat(msgspec.Struct, tag="hb", kw_only=True, omit_defaults=True):
    """Liveness, both ways. From a worker it also carries load and rolling stats."""

    inflight: int = 0
    draining: bool = False  # the worker takes no new jobs (SIGTERM or Drain); results still come
    loop_lag_ms: float = 0.0
    rss: int = 0
    stats: dict[str, UpstreamStats] | None = None  # the hub keeps at most 256 of them
    bad_frames: int = 0  # frames from the coordinator this worker could not read, since it started


class Result(msgspec.Struct, tag="result", kw_only=True):
    """The outcome of one dispatched job attempt."""

    job_id: int
    attempt: int
    outcome: Outcome


class Bye(msgspec.Struct, tag="bye", kw_only=True):
    """The worker is leaving after draining; expect no more results from it."""

    reason: str = ""


class Event(msgspec.Struct, tag="event", kw_only=True):
    """Something a long-lived job (a Titan stream) reports while it runs."""

    job_id: int
    name: str
    value: ResultValue | None = None
    error: str = ""


# --- coordinator -> worker -------------------------------------------------------------


class Dispatch(msgspec.Struct, tag="job", kw_only=True):
    """Run this job. ``timeout`` is the whole budget left for it, in seconds, ``hold`` included:
    the seconds to wait before sending it (its pacing slot is that far off). ``gap``: the least
    time after this worker's previous send to ``upstream`` before this one goes (0: none), so that
    jobs that reached a worker together (the OS held it up) still leave it spaced. ``cap``: send it
    only while fewer than this many of the worker's requests to ``upstream`` are out (0: no cap),
    so that a job sent ahead to a capped pair takes the slot the moment the worker reads an answer
    (:mod:`workers.slots`)."""

    job_id: int
    attempt: int
    kind: str
    upstream: str
    timeout: float
    payload: JobPayload
    hold: float = 0.0
    gap: float = 0.0
    cap: int = 0


class Drain(msgspec.Struct, tag="drain", kw_only=True):
    """Finish what is in flight, send :class:`Bye`, exit. Sent to a worker being retired."""

    reason: str = ""


class Disconnect(msgspec.Struct, tag="disconnect", kw_only=True):
    """The coordinator does not know this worker (it restarted): register again with Ready."""


Message = Ready | Heartbeat | Result | Bye | Event | Dispatch | Drain | Disconnect


class ProtocolError(ValueError):
    """A frame that is not a message of this protocol version."""


class VersionError(ProtocolError):
    """A frame of another version of this protocol: a peer running another release of galileo."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Message])
MAX_BATCH = 1024  # messages per frame; a longer array is not ours


def encode_batch(msgs: list[Message]) -> bytes:
    """One frame carrying ``msgs`` (without any routing id)."""
    buf = bytearray(HEADER)
    _encoder.encode_into(msgs, buf, len(HEADER))
    return bytes(buf)


def decode_batch(frame: bytes) -> list[Message]:
    """The messages in one frame. Raises :class:`ProtocolError` for anything else."""
    if not frame.startswith(HEADER):
        if len(frame) > len(HEADER) and frame[:3] == HEADER[:3]:
            theirs = bytes(frame[:4])
            why = f"a peer speaks protocol {theirs!r}, this side {HEADER!r}: run one galileo release everywhere"
            raise VersionError(why)
        raise ProtocolError(f"bad header {frame[:8]!r}")
    try:
        msgs: list[Message] = _decoder.decode(memoryview(frame)[len(HEADER) :])
    except ValueError as exc:  # DecodeError, ValidationError, and UnicodeDecodeError for a bad UTF-8 string
        raise ProtocolError(str(exc)) from None
    if not msgs or len(msgs) > MAX_BATCH:
        raise ProtocolError(f"batch of {len(msgs)} messages")
    return msgs


def encode(msg: Message) -> list[bytes]:
    """The frames of a single message (without any routing id)."""
    return [encode_batch([msg])]


def decode(frames: list[bytes]) -> Message:
    """The single message in ``frames`` (without routing id). Raises :class:`ProtocolError`."""
    if len(frames) != 1:
        raise ProtocolError(f"expected 1 frame, got {len(frames)}")
    msgs = decode_batch(frames[0])
    if len(msgs) != 1:
        raise ProtocolError(f"expected 1 message, got {len(msgs)}")
    return msgs[0]
