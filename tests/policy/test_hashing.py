"""Rendezvous hashing: only the leaving IP's keys move, and a joining IP takes its share."""

from __future__ import annotations

from galileo.policy.hashing import hrw_rank

IPS = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(48)]
KEYS = [f"endpoint-{i}" for i in range(3000)]


def owners(ips: list[str]) -> dict[str, str]:
    return {k: hrw_rank(k, ips)[0] for k in KEYS}


def test_removing_an_ip_moves_only_its_keys() -> None:
    before = owners(IPS)
    gone = IPS[10]
    after = owners([ip for ip in IPS if ip != gone])
    moved = [k for k in KEYS if before[k] != after[k]]
    assert moved and all(before[k] == gone for k in moved)
    assert len(moved) == sum(1 for k in KEYS if before[k] == gone)


def test_adding_an_ip_takes_about_one_share() -> None:
    before = owners(IPS)
    after = owners([*IPS, "10.9.9.9"])
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == "10.9.9.9" for k in moved)
    assert 0.5 / 49 < len(moved) / len(KEYS) < 2 / 49


def test_balance() -> None:
    counts: dict[str, int] = {}
    for ip in owners(IPS).values():
        counts[ip] = counts.get(ip, 0) + 1
    mean = len(KEYS) / len(IPS)
    assert max(counts.values()) < 1.6 * mean and min(counts.values()) > 0.4 * mean


def test_ranking_is_a_fallback_order_and_deterministic() -> None:
    r1 = hrw_rank("jito:frankfurt", IPS)
    assert sorted(r1) == sorted(IPS)
    assert hrw_rank("jito:frankfurt", list(reversed(IPS))) == r1
    assert hrw_rank("jito:frankfurt", r1[1:]) == r1[1:]  # without the owner, the runner-up leads
