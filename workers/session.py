"""The worker's one HTTP session, bound to its IP.

One ``aiohttp.ClientSession`` per worker process, its ``TCPConnector`` bound to
``(ip, 0)`` with the address family pinned to the IP's (an IPv4 bind cannot reach an IPv6
peer, and Happy Eyeballs would hide that failure), ``IP_BIND_ADDRESS_NO_PORT`` set through
``socket_factory`` so the kernel picks the source port at ``connect()`` and ports are shared
across destinations, and explicit pool limits. The default-route slot binds nothing.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from typing import Any

import aiohttp
import orjson

from workers.body import ACCEPT_ENCODING

__all__ = ["BoundSession", "family_mismatch"]

# Linux 4.2+. Not exported by Python 3.11's socket module.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def _socket_factory(addr_info: Any) -> socket.socket:
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    if family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:  # older kernels: bind-before-connect still works, ports just aren't shared
            pass
    return sock


def family_mismatch(url: str, ip: str | None) -> str | None:
    """Why a worker bound to ``ip`` can never reach ``url``'s literal address, if it cannot."""
    if ip is None:
        return None
    return _host_mismatch(_host_of(url), ip)


def _host_of(url: str) -> str:
    """The host of an absolute URL, as cheaply as possible (this runs for every job)."""
    netloc = url.partition("://")[2]
    for sep in "/?#":
        netloc = netloc.partition(sep)[0]
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.partition(":")[0]


@functools.lru_cache(maxsize=4096)
def _host_mismatch(host: str, ip: str) -> str | None:
    try:
        target = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: the pinned family decides which of its addresses are tried
    local = ipaddress.ip_address(ip)
    if target.version != local.version:
        return f"an IPv{local.version} worker ({ip}) cannot reach the IPv{target.version} address {host}"
    return None


class BoundSession:
    """An aiohttp session whose every connection leaves from ``ip`` (or the default route)."""

    def __init__(self, ip: str | None, *, limit: int = 256, keepalive: float = 30.0) -> None:
        self.ip = ip
        if ip is not None:
            family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
            connector = aiohttp.TCPConnector(
                local_addr=(ip, 0),
                family=family,
                socket_factory=_socket_factory,
                limit=limit,
                limit_per_host=0,
                ttl_dns_cache=60,
                keepalive_timeout=keepalive,
                happy_eyeballs_delay=None,  # one family only: nothing to race
            )
        else:
            connector = aiohttp.TCPConnector(
                limit=limit, limit_per_host=0, ttl_dns_cache=60, keepalive_timeout=keepalive
            )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),  # every job sets its own budget
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            raise_for_status=False,
            auto_decompress=False,  # workers.body inflates with a cap; aiohttp would inflate whole
            skip_auto_headers=("User-Agent",),
            headers={"User-Agent": "galileo-farm/0.1", "Accept-Encoding": ACCEPT_ENCODING},
        )

    async def close(self) -> None:
        await self.session.close()
