"""The wire format: round trips, and nothing but ProtocolError from any bytes at all."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.jobs import HttpRequest, SecretRef
from broker.protocol import (
    HEADER,
    Dispatch,
    Heartbeat,
    Outcome,
    ProtocolError,
    Ready,
    Result,
    UpstreamStats,
    VersionError,
    decode,
    decode_batch,
    encode,
    encode_batch,
)
from broker.results import HttpResponse

MESSAGES = [
    Ready(worker_id="w", ip="127.0.0.2", family="ipv4", bind=True, host="h", pid=3, capacity=8),
    Heartbeat(inflight=2, loop_lag_ms=0.5, stats={"jupiter": UpstreamStats(counts={"ok": 3}, rate=1.0)}),
    Dispatch(
        job_id=7,
        attempt=1,
        kind="http",
        upstream="jupiter",
        timeout=1.5,
        payload=HttpRequest(url="http://x/", secret=SecretRef("x-api-key", "JUP_KEY")),
        hold=0.004,
        gap=0.05,
        cap=4,
    ),
    Result(job_id=7, attempt=1, outcome=Outcome(result="ok", status=200, value=HttpResponse(status=200, body=b"{}"))),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: object) -> None:
    assert decode(encode(msg)) == msg  # type: ignore[arg-type]


def test_secret_refs_carry_the_env_name_never_a_value() -> None:
    frames = encode(MESSAGES[2])
    assert b"JUP_KEY" in frames[0]


@given(st.lists(st.binary(max_size=64), max_size=4))
def test_any_frames_decode_or_raise_protocol_error(frames: list[bytes]) -> None:
    try:
        decode(frames)
    except ProtocolError:
        pass


@given(st.binary(max_size=200))
def test_any_body_after_a_valid_header_decodes_or_raises_protocol_error(body: bytes) -> None:
    try:
        decode_batch(HEADER + body)
    except ProtocolError:
        pass


def test_a_batch_carries_many_messages_in_order() -> None:
    frame = encode_batch(MESSAGES)
    assert decode_batch(frame) == MESSAGES
    try:
        decode([frame])
        raise AssertionError("decode() accepted a batch of several")
    except ProtocolError:
        pass


def test_a_frame_of_another_release_says_so() -> None:
    """GLW1 workers know no ``Dispatch.hold``: they would send a held job early; GLW2 workers know no
    ``Dispatch.cap``: they would send a job sent ahead to a capped pair at once, over the cap. So they
    are refused."""
    for version in (b"GLW1", b"GLW2"):
        old = version + encode_batch(MESSAGES[:1])[len(HEADER) :]
        with pytest.raises(VersionError, match="run one galileo release everywhere"):
            decode_batch(old)
    with pytest.raises(ProtocolError) as caught:
        decode_batch(b"XYZ1" + old[4:])
    assert not isinstance(caught.value, VersionError)
