"""The IP inventory: which local addresses the farm sends from, and why not the others.

Auto mode takes every interface address and drops what cannot be a useful source address
(loopback, link-local, unspecified, multicast, broadcast, documentation ranges, addresses on
interfaces that are down, duplicates). Manual mode takes ``bot.network.manual_ips`` as given
(loopback allowed, for tests and demos). Every candidate is then bind-probed. With multiple
IPs disabled, or when nothing is usable, the farm runs one slot on the default route and the
kernel picks the source address.

The filter is pure (:func:`classify_interfaces`) so its rules are tested with fake interface
tables; :func:`scan` adds the machine: psutil's interface table and real ``bind()`` calls.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Literal

import psutil

from galileo.config.schema import NetworkConfig

__all__ = [
    "AddressRecord",
    "InterfaceAddress",
    "Inventory",
    "classify_interfaces",
    "default_route_sources",
    "probe_bind",
    "read_interfaces",
    "scan",
]

log = logging.getLogger("galileo.inventory")

Family = Literal["ipv4", "ipv6"]
Source = Literal["auto", "manual", "default"]

_DOCUMENTATION = [
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
]
# Public addresses never contacted: a UDP connect() only asks the kernel for its route.
_ROUTE_PROBES: dict[Family, str] = {"ipv4": "198.18.0.1", "ipv6": "2001:4860:4860::8888"}

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class InterfaceAddress:
    """One address as the interface table reports it."""

    interface: str
    ip: str
    netmask: str | None = None
    is_up: bool = True


@dataclass(frozen=True)
class AddressRecord:
    """One row of ``galileo ips``: an address seen, and whether the farm will send from it."""

    ip: str
    interface: str | None
    family: Family
    source: Source
    usable: bool
    reason: str | None = None
    bind: bool = True  # False only for the default-route slot: the kernel picks the source

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("bind")
        return data


@dataclass(frozen=True)
class Inventory:
    """Every address seen, in deterministic order (IPv4 first, then numeric)."""

    records: tuple[AddressRecord, ...]
    fallback: bool = False  # multi-IP was asked for but nothing was usable

    @property
    def usable(self) -> list[AddressRecord]:
        return [r for r in self.records if r.usable]


def family_of(ip: IpAddress) -> Family:
    return "ipv4" if ip.version == 4 else "ipv6"


def _sort_key(record: AddressRecord) -> tuple[int, int, int]:
    try:
        addr = ipaddress.ip_address(record.ip)
        return (addr.version, int(addr), 0 if record.usable else 1)
    except ValueError:
        return (9, 0, 0)


def _strip_scope(ip: str) -> str:
    return ip.split("%", 1)[0]


def _broadcast_of(addr: IpAddress, netmask: str | None) -> bool:
    if addr.version != 4:
        return False
    if addr == ipaddress.IPv4Address("255.255.255.255"):
        return True
    if not netmask:
        return False
    net = ipaddress.ip_network(f"{addr}/{netmask}", strict=False)
    return net.prefixlen < 31 and addr == net.broadcast_address


def rejection_reason(addr: IpAddress, netmask: str | None, default_sources: Iterable[str]) -> str | None:
    """Why an auto-discovered address cannot be a useful source address, or None."""
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_multicast:
        return "multicast"
    if _broadcast_of(addr, netmask):
        return "broadcast"
    # A documentation range is kept when the kernel already sends from it (its default route):
    # labs and sandboxes number real interfaces from TEST-NET, and that traffic demonstrably flows.
    if any(addr in net for net in _DOCUMENTATION) and str(addr) not in set(default_sources):
        return "documentation range"
    return None


def classify_interfaces(
    entries: Iterable[InterfaceAddress], default_sources: Iterable[str] = ()
) -> list[AddressRecord]:
    """Apply the auto-mode rules to an interface table. Pure: no sockets, no psutil."""
    defaults = list(default_sources)
    out: list[AddressRecord] = []
    seen: set[IpAddress] = set()
    for entry in entries:
        text = _strip_scope(entry.ip)
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue  # not an IP (a MAC address row); psutil lists those too
        reason = rejection_reason(addr, entry.netmask, defaults)
        if reason is None and not entry.is_up:
            reason = "interface down"
        if reason is None and addr in seen:
            reason = "duplicate"
        if reason is None:
            seen.add(addr)
        out.append(
            AddressRecord(
                ip=str(addr),
                interface=entry.interface,
                family=family_of(addr),
                source="auto",
                usable=reason is None,
                reason=reason,
            )
        )
    return out


def read_interfaces() -> list[InterfaceAddress]:
    """This machine's interface table (IPv4 and IPv6 rows only)."""
    stats = psutil.net_if_stats()
    rows: list[InterfaceAddress] = []
    for name, addrs in psutil.net_if_addrs().items():
        st = stats.get(name)
        # "running" is the carrier: an up bridge with nothing attached (docker0) has no carrier.
        is_up = bool(st and st.isup and ("running" in st.flags.split(",") if st.flags else True))
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                rows.append(InterfaceAddress(name, a.address, a.netmask, is_up))
    return rows


def probe_bind(ip: str) -> str | None:
    """Try ``bind((ip, 0))``. None when the address is bindable, else a reason naming the errno."""
    addr = ipaddress.ip_address(ip)
    fam = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    try:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.bind((ip, 0))
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "?")
        return f"cannot bind: {exc.strerror} ({name})"
    return None


def default_route_sources() -> dict[Family, str]:
    """The source address the kernel picks for its default route, per family (no packet is sent)."""
    out: dict[Family, str] = {}
    for fam_name, target in _ROUTE_PROBES.items():
        fam = socket.AF_INET if fam_name == "ipv4" else socket.AF_INET6
        try:
            with socket.socket(fam, socket.SOCK_DGRAM) as s:
                s.connect((target, 53))
                out[fam_name] = _strip_scope(s.getsockname()[0])
        except OSError:
            continue
    return out


def _interface_for(addr: IpAddress, entries: Sequence[InterfaceAddress]) -> str | None:
    best: tuple[int, str] | None = None
    for e in entries:
        try:
            net = ipaddress.ip_network(f"{_strip_scope(e.ip)}/{e.netmask}", strict=False)
        except ValueError:
            continue
        if addr in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, e.interface)
    return best[1] if best else None


def _default_slot(sources: dict[Family, str], entries: Sequence[InterfaceAddress], note: str) -> AddressRecord:
    ip = sources.get("ipv4") or sources.get("ipv6") or "0.0.0.0"
    addr = ipaddress.ip_address(ip)
    return AddressRecord(
        ip=ip,
        interface=_interface_for(addr, entries),
        family=family_of(addr),
        source="default",
        usable=True,
        reason=note,
        bind=False,
    )


def scan(
    network: NetworkConfig,
    *,
    interfaces: Callable[[], list[InterfaceAddress]] = read_interfaces,
    prober: Callable[[str], str | None] = probe_bind,
    route_sources: Callable[[], dict[Family, str]] = default_route_sources,
) -> Inventory:
    """Detect the addresses the farm will use, per ``bot.network``. Never raises for a bad address."""
    entries = interfaces()
    sources = route_sources()
    if network.manual_ips:
        candidates = []
        for text in network.manual_ips:
            addr = ipaddress.ip_address(text)
            candidates.append(AddressRecord(str(addr), _interface_for(addr, entries), family_of(addr), "manual", True))
    else:
        candidates = classify_interfaces(entries, sources.values())

    probed = [r if not r.usable else _with_probe(r, prober(r.ip)) for r in candidates]
    probed.sort(key=_sort_key)

    if not network.enable_multiple_ip:
        return _single_slot(probed, sources, entries)

    usable = [r for r in probed if r.usable]
    if usable:
        log.info(
            "ip inventory: %d usable address(es): %s",
            len(usable),
            " ".join(r.ip for r in usable),
            extra={"event": "inventory"},
        )
        return Inventory(tuple(probed))
    slot = _default_slot(sources, entries, "fallback: no listed or detected address is usable")
    log.warning(
        "ip inventory: multiple IPs enabled but NO address is usable; falling back to one slot on the "
        "default route (%s). Run `galileo ips` to see why each address was excluded.",
        slot.ip,
        extra={"event": "inventory_fallback"},
    )
    return Inventory((*probed, slot), fallback=True)


def _with_probe(record: AddressRecord, failure: str | None) -> AddressRecord:
    if failure is None:
        return record
    log.warning("ip inventory: excluding %s: %s", record.ip, failure, extra={"event": "bind_probe"})
    return replace(record, usable=False, reason=failure)


def _single_slot(
    probed: list[AddressRecord], sources: dict[Family, str], entries: Sequence[InterfaceAddress]
) -> Inventory:
    """``enable_multiple_ip: false``: one slot. A manual list contributes its first usable entry."""
    manual = [r for r in probed if r.source == "manual" and r.usable]
    chosen = manual[0] if manual else None
    off = "not used: bot.network.enable_multiple_ip is false"
    rows: list[AddressRecord] = []
    for r in probed:
        if r is chosen or not r.usable:
            rows.append(r)
        else:
            rows.append(replace(r, usable=False, reason=off))
    if chosen is None:
        slot = _default_slot(sources, entries, "default route: the kernel picks the source address")
        rows = [r for r in rows if r.ip != slot.ip] + [slot]
        rows.sort(key=_sort_key)
    usable = [r.ip for r in rows if r.usable]
    log.info("ip inventory: multiple IPs disabled; one slot: %s", usable[0], extra={"event": "inventory"})
    return Inventory(tuple(rows))
