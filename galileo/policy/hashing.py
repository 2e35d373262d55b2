"""Rendezvous (highest random weight) hashing of keys onto IPs.

Every (key, IP) pair gets a score; a key's IPs ranked by score give both its owner (the
first) and its fallback order (the rest, used while the owner cools down). When an IP leaves,
only the keys it owned move; when one joins, it takes about 1/(N+1) of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["hrw_rank", "hrw_score"]


def hrw_score(key: str, ip: str) -> int:
    digest = hashlib.blake2b(f"{key}\x00{ip}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def hrw_rank(key: str, ips: Iterable[str]) -> list[str]:
    """``ips`` ordered by their score for ``key``, best first (ties broken by the address)."""
    return sorted(ips, key=lambda ip: (-hrw_score(key, ip), ip))
