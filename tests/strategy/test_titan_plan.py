"""Stream scheduling and connection placement, pure: the clock is an argument."""

from __future__ import annotations

import math

from broker.results import TitanConnectionSummary
from broker.types import JobOutcome
from galileo.strategy.titan_plan import (
    PENDING,
    Backoff,
    BoardRules,
    Drop,
    Open,
    Replace,
    Room,
    StreamBoard,
    choose_ip,
    end_reason,
    ip_at_fault,
)

K = [("SOL", "USDC", n) for n in (1, 2, 3, 4, 5)]
RULES = BoardRules(forget_after=30.0, hysteresis_bps=5.0, min_hold=10.0)


def board(n: int = 5) -> StreamBoard:
    return StreamBoard(K[:n], RULES)


def test_free_slots_go_to_the_most_useful_keys_spread_over_connections() -> None:
    b = board()
    for k, margin in zip(K, (-9.0, -1.0, -5.0, -3.0, -2.0), strict=True):
        b.observed(k, margin, now=0.0)
    moves = b.plan([Room("a", 2), Room("b", 1)], now=1.0)
    assert moves == [Open(K[1], "a"), Open(K[4], "b"), Open(K[3], "a")]  # -1, -2, -3 bps: the three best


def test_a_clearly_better_key_takes_the_worst_stream_only_after_min_hold() -> None:
    b = board(3)
    for k, margin in zip(K[:3], (-20.0, -40.0, 0.0), strict=True):
        b.observed(k, margin, now=0.0)
    room = Room("a", 0, {K[0]: 0.0, K[1]: 0.0})
    assert b.plan([room], now=9.9) == []  # held 9.9 s < min_hold
    assert b.plan([room], now=10.0) == [Replace(K[1], K[2], "a")]  # the least useful (-40) gives way


def test_a_small_edge_does_not_move_a_stream() -> None:
    b = board(3)
    for k, margin in zip(K[:3], (-20.0, -4.0, 0.0), strict=True):
        b.observed(k, margin, now=0.0)
    assert b.plan([Room("a", 0, {K[0]: 0.0, K[1]: 0.0})], now=20.0) == [Replace(K[0], K[2], "a")]
    b.observed(K[0], 0.0, now=20.0)  # EWMA: -20 + 0.2 * 20 = -16
    assert b.margin(K[0]) == -16.0
    assert b.plan([Room("a", 0, {K[1]: 0.0, K[2]: 0.0})], now=21.0) == []  # -16 vs -4: no


def test_keys_nobody_asks_for_lose_their_streams_to_keys_that_are_asked() -> None:
    b = board(3)
    b.asked(K[2], now=0.0)
    room = Room("a", 0, {K[0]: 0.0, K[1]: 0.0})
    assert b.plan([room], now=10.0) == [Replace(K[1], K[2], "a")]  # both idle; K[1] is later in the config
    b.asked(K[0], now=10.0)
    b.asked(K[1], now=10.0)
    assert b.plan([room], now=11.0) == []  # all asked, no margins to tell them apart: incumbents stay


def test_at_the_server_limit_rank_decides_at_once() -> None:
    b = board(3)
    for k, margin in zip(K[:3], (0.0, -3.0, -2.0), strict=True):
        b.observed(k, margin, now=0.0)
    room = Room("a", 0, {K[0]: 0.0, K[1]: 0.0})
    assert b.plan([room], now=1.0) == []  # 1 bp better, held 1 s: no
    b.pressing(K[2], now=1.0)  # the server refused K[2]: it was at its limit
    assert b.plan([room], now=1.0) == [Replace(K[1], K[2], "a")]
    b.pressing(K[1], now=2.0)
    assert b.plan([Room("a", 0, {K[0]: 0.0, K[2]: 1.0})], now=2.0) == []  # refused, and the least useful
    assert b.plan([room], now=7.0) == []  # pressing lasts 5 s


def test_a_connection_over_its_limit_drops_its_least_useful_stream() -> None:
    b = board(3)
    for k, margin in zip(K[:3], (0.0, -3.0, -2.0), strict=True):
        b.observed(k, margin, now=0.0)
    room = Room("a", -1, {K[0]: 0.0, K[1]: 0.0, K[2]: 0.0})
    assert b.plan([room], now=1.0) == [Drop(K[1], "a")]


def test_pending_streams_are_never_replaced_or_dropped() -> None:
    b = board(3)
    b.observed(K[2], 50.0, now=0.0)
    assert b.plan([Room("a", 0, {K[0]: PENDING, K[1]: PENDING})], now=100.0) == []
    assert b.plan([Room("a", -1, {K[0]: PENDING, K[1]: PENDING})], now=100.0) == []


def test_a_failed_key_waits_doubling_and_success_forgets() -> None:
    b = board(2)
    assert b.failed(K[0], now=0.0) == 1.0
    assert b.plan([Room("a", 2)], now=0.5) == [Open(K[1], "a")]
    assert b.plan([Room("a", 2)], now=1.0) == [Open(K[0], "a"), Open(K[1], "a")]
    assert b.failed(K[0], now=1.0) == 3.0 and b.failed(K[0], now=3.0) == 7.0
    for _ in range(10):
        b.failed(K[0], now=0.0)
    assert b.failed(K[0], now=0.0) == 30.0  # capped
    b.succeeded(K[0])
    assert b.failed(K[0], now=0.0) == 1.0


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    backoff = Backoff(start=0.25, cap=2.0)
    assert [backoff.next() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    backoff.reset()
    assert backoff.next() == 0.25


def test_a_token_keeps_its_healthy_ip_and_leaves_a_faulty_one() -> None:
    ips = ["a", "b", "c", "d"]
    first = choose_ip("TITAN_A", ips, [], None, True)
    assert first in ips
    assert choose_ip("TITAN_A", ips, [], first, True) == first
    moved = choose_ip("TITAN_A", ips, [], first, False)
    assert moved in ips and moved != first
    assert choose_ip("TITAN_A", [i for i in ips if i != first], [], first, True) not in (first, None)


def test_tokens_spread_over_ips_and_share_only_when_they_must() -> None:
    ips = [f"10.0.0.{i}" for i in range(1, 9)]
    taken: list[str] = []
    for token in ("A", "B", "C"):
        ip = choose_ip(token, ips, taken, None, True)
        assert ip is not None and ip not in taken
        taken.append(ip)
    assert choose_ip("D", ["x"], ["x"], None, True) == "x"  # one IP for everything: shared
    assert choose_ip("D", [], [], None, True) is None


def out(result: str, status: int = 0, error: str = "") -> JobOutcome:
    return JobOutcome(job_id=1, result=result, task="titan_connect", upstream="titan", status=status, error=error)  # type: ignore[arg-type]


def test_end_reasons_and_who_is_at_fault() -> None:
    server = TitanConnectionSummary(ended_by="server", close_code=1008, close_reason="token expired")
    assert end_reason(out("network_error"), server) == "token_expired"
    assert not ip_at_fault(out("network_error"), server)
    assert end_reason(out("http_error", 409), None) == "token_in_use"
    assert end_reason(out("http_error", 401), None) == "unauthorized"
    refused = out("decode_error", error="refused: env var X ...")
    assert end_reason(refused, None) == "secret_refused" and ip_at_fault(refused, None)
    assert end_reason(out("worker_lost"), None) == "worker_lost" and ip_at_fault(out("worker_lost"), None)
    assert end_reason(out("rate_limited", 429), None) == "rate_limited"
    assert not ip_at_fault(out("http_error", 409), None)
    assert math.isinf(PENDING)
