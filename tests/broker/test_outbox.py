"""Frames never exceed the receiver's ZMQ_MAXMSGSIZE: batches are split, a message that cannot travel is reported."""

from __future__ import annotations

from broker.outbox import Outbox
from broker.protocol import Message, Outcome, Result, decode_batch
from broker.results import HttpResponse


class RecordingPump:
    closed = False

    def __init__(self) -> None:
        self.frames: list[list[bytes]] = []

    def send(self, frames: list[bytes]) -> None:
        self.frames.append(frames)


def result(job_id: int, body: bytes = b"", status: int = 200) -> Result:
    value = HttpResponse(status=status, body=body)
    return Result(job_id=job_id, attempt=0, outcome=Outcome(result="ok", status=status, value=value))


async def test_a_batch_over_the_frame_limit_is_split_in_order_and_a_message_too_large_is_reported() -> None:
    pump = RecordingPump()
    unsendable: list[tuple[Message, str]] = []
    box = Outbox(
        pump, lambda r, why: None, on_unsendable=lambda r, m, why: unsendable.append((m, why)), max_frame=10_000
    )  # type: ignore[arg-type]
    sent = [result(i, b"x" * 3000) for i in range(7)]
    huge = result(99, b"y" * 20_000)
    for msg in [*sent[:3], huge, *sent[3:]]:
        box.put(b"peer", msg)
    box.flush()
    assert all(len(frames[1]) <= 10_000 and frames[0] == b"peer" for frames in pump.frames)
    assert len(pump.frames) >= 3
    got = [m for frames in pump.frames for m in decode_batch(frames[1])]
    assert got == sent  # every other message, in order
    assert [m for m, _ in unsendable] == [huge] and "over the 10000-byte frame limit" in unsendable[0][1]
    assert box.messages_sent == 7


async def test_a_value_msgpack_cannot_carry_is_reported_and_the_rest_of_the_batch_still_goes() -> None:
    pump = RecordingPump()
    unsendable: list[Message] = []
    box = Outbox(pump, lambda r, why: None, on_unsendable=lambda r, m, why: unsendable.append(m))  # type: ignore[arg-type]
    bad = result(2, status=2**70)
    for msg in (result(1), bad, result(3)):
        box.put(None, msg)
    box.flush()
    assert [m.job_id for frames in pump.frames for m in decode_batch(frames[0])] == [1, 3]  # type: ignore[union-attr]
    assert unsendable == [bad]
