"""The IP inventory's rules, fed with fake interface tables (no sockets), then against this machine."""

from __future__ import annotations

import pytest

from galileo.config.schema import NetworkConfig
from galileo.inventory import InterfaceAddress, classify_interfaces, probe_bind, scan

TABLE = [
    InterfaceAddress("lo", "127.0.0.1", "255.0.0.0"),
    InterfaceAddress("lo", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    InterfaceAddress("eth0", "203.0.113.7", "255.255.255.0"),  # documentation
    InterfaceAddress("eth0", "45.1.2.3", "255.255.255.0"),
    InterfaceAddress("eth0", "45.1.2.255", "255.255.255.0"),  # the /24's broadcast address
    InterfaceAddress("eth0", "fe80::1%eth0", "ffff:ffff:ffff:ffff::"),
    InterfaceAddress("eth0", "2a01:4f8::5", "ffff:ffff:ffff:ffff::"),
    InterfaceAddress("eth0", "169.254.3.4", "255.255.0.0"),
    InterfaceAddress("eth0", "0.0.0.0", None),
    InterfaceAddress("eth0", "224.0.0.5", None),
    InterfaceAddress("eth0", "2001:db8::9", "ffff:ffff:ffff:ffff::"),  # documentation (v6)
    InterfaceAddress("eth1", "45.1.2.3", "255.255.255.0"),  # the same address twice
    InterfaceAddress("docker0", "172.17.0.1", "255.255.0.0", is_up=False),
    InterfaceAddress("eth0", "02:fc:00:00:00:01", None),  # a MAC row, not an address
]


def reasons(default_sources: tuple[str, ...] = ()) -> dict[tuple[str, str], str | None]:
    return {(r.interface or "", r.ip): r.reason for r in classify_interfaces(TABLE, default_sources)}


def test_every_auto_rule() -> None:
    got = reasons()
    assert got[("lo", "127.0.0.1")] == "loopback"
    assert got[("lo", "::1")] == "loopback"
    assert got[("eth0", "203.0.113.7")] == "documentation range"
    assert got[("eth0", "2001:db8::9")] == "documentation range"
    assert got[("eth0", "45.1.2.255")] == "broadcast"
    assert got[("eth0", "fe80::1")] == "link-local"
    assert got[("eth0", "169.254.3.4")] == "link-local"
    assert got[("eth0", "0.0.0.0")] == "unspecified"
    assert got[("eth0", "224.0.0.5")] == "multicast"
    assert got[("docker0", "172.17.0.1")] == "interface down"
    assert got[("eth1", "45.1.2.3")] == "duplicate"
    assert got[("eth0", "45.1.2.3")] is None
    assert got[("eth0", "2a01:4f8::5")] is None
    assert ("eth0", "02:fc:00:00:00:01") not in got


def test_families_are_kept_with_their_family() -> None:
    fam = {r.ip: r.family for r in classify_interfaces(TABLE)}
    assert fam["45.1.2.3"] == "ipv4" and fam["2a01:4f8::5"] == "ipv6"


def test_documentation_address_carrying_the_default_route_is_kept() -> None:
    assert reasons(("203.0.113.7",))[("eth0", "203.0.113.7")] is None


def fake_scan(network: NetworkConfig, refuse: set[str] = frozenset()):  # type: ignore[no-untyped-def]
    return scan(
        network,
        interfaces=lambda: TABLE,
        prober=lambda ip: "cannot bind: Cannot assign requested address (EADDRNOTAVAIL)" if ip in refuse else None,
        route_sources=lambda: {"ipv4": "45.1.2.3"},
    )


def test_multi_ip_auto_order_is_ipv4_first_then_numeric() -> None:
    inv = fake_scan(NetworkConfig(enable_multiple_ip=True))
    assert [r.ip for r in inv.usable] == ["45.1.2.3", "2a01:4f8::5"]
    assert not inv.fallback


def test_unbindable_candidate_is_excluded_with_the_errno() -> None:
    inv = fake_scan(NetworkConfig(enable_multiple_ip=True), refuse={"2a01:4f8::5"})
    row = next(r for r in inv.records if r.ip == "2a01:4f8::5")
    assert not row.usable and "EADDRNOTAVAIL" in (row.reason or "")
    assert [r.ip for r in inv.usable] == ["45.1.2.3"]


def test_nothing_usable_falls_back_to_the_default_route(caplog: pytest.LogCaptureFixture) -> None:
    inv = fake_scan(NetworkConfig(enable_multiple_ip=True), refuse={"45.1.2.3", "2a01:4f8::5"})
    assert inv.fallback
    (slot,) = inv.usable
    assert slot.source == "default" and slot.bind is False and slot.ip == "45.1.2.3"
    assert any("falling back" in m for m in caplog.messages)


def test_single_ip_mode_is_one_default_route_slot() -> None:
    inv = fake_scan(NetworkConfig(enable_multiple_ip=False))
    (slot,) = inv.usable
    assert slot.source == "default" and not slot.bind and slot.interface == "eth0"
    other = next(r for r in inv.records if r.ip == "2a01:4f8::5")
    assert "enable_multiple_ip is false" in (other.reason or "")


def test_manual_list_wins_and_allows_loopback() -> None:
    inv = fake_scan(NetworkConfig(enable_multiple_ip=True, manual_ips=["127.0.0.3", "127.0.0.2"]))
    assert [(r.ip, r.source, r.interface) for r in inv.usable] == [
        ("127.0.0.2", "manual", "lo"),
        ("127.0.0.3", "manual", "lo"),
    ]
    assert {r.ip for r in inv.records} == {"127.0.0.2", "127.0.0.3"}


def test_manual_list_with_multi_ip_off_uses_its_first_usable_entry() -> None:
    inv = fake_scan(
        NetworkConfig(enable_multiple_ip=False, manual_ips=["127.0.0.2", "127.0.0.3"]), refuse={"127.0.0.2"}
    )
    assert [r.ip for r in inv.usable] == ["127.0.0.3"]


def test_real_bind_probe() -> None:
    assert probe_bind("127.0.0.2") is None
    failure = probe_bind("192.0.2.254")  # a documentation address no interface here holds
    assert failure is not None and "EADDRNOTAVAIL" in failure


def test_real_scan_with_manual_list() -> None:
    inv = scan(NetworkConfig(enable_multiple_ip=True, manual_ips=["127.0.0.2", "192.0.2.254"]))
    by_ip = {r.ip: r for r in inv.records}
    assert by_ip["127.0.0.2"].usable
    assert not by_ip["192.0.2.254"].usable and "cannot bind" in (by_ip["192.0.2.254"].reason or "")
