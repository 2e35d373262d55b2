"""deploy/scripts/add-address-range.py: the exact commands it prints, and exit 2 on bad input.

It is run as an operator runs it, in a fresh interpreter; --apply is never run here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "scripts" / "add-address-range.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=30, check=False)


def test_ipv4_block_skips_network_gateway_and_broadcast() -> None:
    out = run("eth0", "203.0.113.0/29")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        "ip addr add 203.0.113.2/29 dev eth0\n"
        "ip addr add 203.0.113.3/29 dev eth0\n"
        "ip addr add 203.0.113.4/29 dev eth0\n"
        "ip addr add 203.0.113.5/29 dev eth0\n"
        "ip addr add 203.0.113.6/29 dev eth0\n"
    )


def test_ipv4_options() -> None:
    out = run("eth1", "203.0.113.0/30", "--no-skip-first", "--prefix-len", "32")
    assert out.stdout == "ip addr add 203.0.113.1/32 dev eth1\nip addr add 203.0.113.2/32 dev eth1\n"
    out = run("eth1", "198.51.100.1-198.51.100.3", "--prefix-len", "24")  # .1 of the /24 is the gateway
    assert out.stdout == "ip addr add 198.51.100.2/24 dev eth1\nip addr add 198.51.100.3/24 dev eth1\n"
    out = run("eth1", "198.51.100.1-198.51.100.2")  # /32 each: no subnet, so no gateway to skip
    assert out.stdout == "ip addr add 198.51.100.1/32 dev eth1\nip addr add 198.51.100.2/32 dev eth1\n"
    out = run("eth1", "203.0.113.0/30", "--delete")
    assert out.stdout == "ip addr del 203.0.113.2/30 dev eth1\n"
    assert run("eth0", "10.0.0.0/20", "--force").stdout.count("\n") == 4093
    assert run("eth0", "203.0.113.1/32").stdout == "ip addr add 203.0.113.1/32 dev eth0\n"  # no gateway to skip


def test_ipv6_range_and_block() -> None:
    out = run("enp1s0", "2001:db8:5::ff-2001:db8:5::101", "--prefix-len", "64")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        "ip addr add 2001:db8:5::ff/64 dev enp1s0\n"
        "ip addr add 2001:db8:5::100/64 dev enp1s0\n"
        "ip addr add 2001:db8:5::101/64 dev enp1s0\n"
    )
    out = run("enp1s0", "2001:db8:5::/126")  # ::0 is the subnet-router anycast, ::1 the gateway
    assert out.stdout == "ip addr add 2001:db8:5::2/126 dev enp1s0\nip addr add 2001:db8:5::3/126 dev enp1s0\n"
    out = run("enp1s0", "2001:db8:5::/126", "--netplan")
    assert out.stdout == '        - "2001:db8:5::2/126"\n        - "2001:db8:5::3/126"\n'


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("eth0", "banana"), "neither a CIDR block"),
        (("eth0", "203.0.113.7/24"), "host bits set: the block is 203.0.113.0/24"),
        (("eth0", "203.0.113.0/33"), "not a CIDR block"),
        (("eth0", "203.0.113.9-203.0.113.5"), "LAST comes before FIRST"),
        (("eth0", "203.0.113.5-2001:db8::1"), "FIRST is IPv4 but LAST is IPv6"),
        (("eth0", "203.0.113.5-203.0.113.x"), "LAST '203.0.113.x' is not an IP address"),
        (("eth0", "203.0.113.250-203.0.114.3", "--prefix-len", "24"), "outside 203.0.113.0/24"),
        (("eth0", "203.0.113.250-203.0.113.255", "--prefix-len", "24"), "broadcast address of 203.0.113.0/24"),
        (("eth0", "203.0.113.0/24", "--prefix-len", "0"), "--prefix-len 0 is not a prefix length"),
        (("eth0", "2001:db8::/64", "--prefix-len", "129"), "--prefix-len 129"),
        (("eth0", "10.0.0.0/16"), "65533 addresses, more than 4096"),
        (("eth0", "2001:db8::/64", "--force"), "at most 65536"),
        (("eth 0", "203.0.113.0/24"), "not an interface name"),
        (("averyveryverylongifname", "203.0.113.0/24"), "not an interface name"),
        (("eth0", "203.0.113.0/24", "--apply", "--netplan"), "not allowed with argument"),
        (("eth0", "203.0.113.0/24", "--netplan", "--delete"), "--netplan lists addresses to add"),
        (("eth0",), "the following arguments are required"),
        (("eth0", "203.0.113.0/24", "--prefix-len", "x"), "invalid int value"),
    ],
)
def test_bad_input_exits_2_with_a_clear_error(args: tuple[str, ...], message: str) -> None:
    out = run(*args)
    assert out.returncode == 2, out
    assert out.stdout == ""
    assert "error:" in out.stderr and message in out.stderr, out.stderr
