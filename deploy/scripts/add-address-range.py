#!/usr/bin/env python3
"""Add a block of IP addresses to a network interface, for a galileo farm to send from.

    add-address-range.py eth0 203.0.113.0/24                 # print the `ip addr add` commands
    add-address-range.py eth0 203.0.113.0/24 --apply         # run them (as root)
    add-address-range.py eth0 203.0.113.10-203.0.113.50 --prefix-len 24
    add-address-range.py eth0 2001:db8:5::/120 --netplan     # the lines for a netplan `addresses:` list
    add-address-range.py eth0 203.0.113.0/24 --delete        # the commands that undo it

A CIDR adds its host addresses (IPv4 drops the network and broadcast addresses) with the
CIDR's prefix length, unless --prefix-len says otherwise. A FIRST-LAST range adds every
address from FIRST to LAST, as /32 (IPv4) or /128 (IPv6) unless --prefix-len is given.
--skip-first (the default) leaves out the subnet's first host address, .1 of a /24 or ::1 of
a /64, which is usually the gateway; --no-skip-first keeps it. More than 4096 addresses need
--force, and more than 65536 are refused. Addresses added with `ip` are gone after a reboot:
make them permanent with netplan (deploy/netplan/60-galileo-addresses.yaml) or your
distribution's network config.

Exit codes: 0 ok, 1 an `ip` command failed, 2 bad arguments. Standard library only.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LIMIT = 4096
HARD_LIMIT = 65536  # even with --force: more on one interface is a typo (a /64), not a plan
_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")  # Linux IFNAMSIZ is 16 with the NUL


class Usage(Exception):
    """A problem with the arguments: exit 2 with this message."""


def parse_interface(name: str) -> str:
    if not _IFNAME.match(name) or name in (".", ".."):
        raise Usage(f"{name!r} is not an interface name (1-15 of letters, digits, '_', '.', '-', '@'; see `ip link`)")
    return name


def _address(text: str, what: str) -> Address:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise Usage(f"{what} {text!r} is not an IP address") from None


def _max_prefix(addr: Address | Network) -> int:
    return 32 if addr.version == 4 else 128


def _gateway(net: Network) -> Address | None:
    """The first host address of ``net``, when it has hosts besides it."""
    if net.prefixlen >= _max_prefix(net) - 1:
        return None  # /31, /32, /127, /128: every address is a host, none is a gateway
    return net.network_address + 1


def _unusable(net: Network) -> set[Address]:
    """Addresses of ``net`` a host cannot take: its network address, and the IPv4 broadcast address."""
    if net.prefixlen >= _max_prefix(net) - 1:
        return set()
    out: set[Address] = {net.network_address}
    if net.version == 4:
        out.add(net.broadcast_address)
    return out


def plan(spec: str, prefix_len: int | None, skip_first: bool, force: bool) -> tuple[list[Address], int]:
    """The addresses ``spec`` (CIDR or FIRST-LAST) stands for, and the prefix length to add them with."""
    spec = spec.strip()
    if "/" in spec and "-" not in spec:
        try:
            net: Network = ipaddress.ip_network(spec, strict=True)
        except ValueError as exc:
            if "has host bits set" in str(exc):
                base = ipaddress.ip_network(spec, strict=False)
                raise Usage(f"{spec} has host bits set: the block is {base} (or give a FIRST-LAST range)") from None
            raise Usage(f"{spec!r} is not a CIDR block such as 203.0.113.0/24 or 2001:db8::/120") from None
        length = net.prefixlen if prefix_len is None else prefix_len
        _check_prefix(length, net)
        first, last = net.network_address, net.broadcast_address
        subnet: Network | None = net  # the CIDR's own hosts, whatever prefix length they are added with
    elif "-" in spec:
        left, _, right = spec.partition("-")
        first, last = _address(left, "FIRST"), _address(right, "LAST")
        if first.version != last.version:
            raise Usage(f"{spec}: FIRST is IPv{first.version} but LAST is IPv{last.version}")
        if int(last) < int(first):
            raise Usage(f"{spec}: LAST comes before FIRST")
        length = _max_prefix(first) if prefix_len is None else prefix_len
        _check_prefix(length, first)
        subnet = None
        if length < _max_prefix(first):  # the addresses share one subnet: it must hold the whole range
            subnet = ipaddress.ip_network(f"{first}/{length}", strict=False)
            if last not in subnet:
                raise Usage(f"{spec}: {last} is outside {subnet}, the /{length} subnet of {first}; split the range")
            for bad in sorted(_unusable(subnet)):
                if int(first) <= int(bad) <= int(last):
                    kind = "network" if bad == subnet.network_address else "broadcast"
                    raise Usage(f"{spec}: {bad} is the {kind} address of {subnet}, not a host; shorten the range")
    else:
        raise Usage(f"{spec!r} is neither a CIDR block (203.0.113.0/24) nor a range (203.0.113.2-203.0.113.254)")

    lo, hi = int(first), int(last)
    excluded = {int(a) for a in _unusable(subnet)} if subnet is not None else set()
    gateway = _gateway(subnet) if subnet is not None else None
    if gateway is not None and skip_first:
        excluded.add(int(gateway))
    count = hi - lo + 1 - sum(1 for n in excluded if lo <= n <= hi)
    if count <= 0:
        raise Usage(f"{spec}: no address left to add (try --no-skip-first)")
    if count > HARD_LIMIT:
        raise Usage(f"{spec} is {count} addresses; at most {HARD_LIMIT} can be added at once, even with --force")
    if count > LIMIT and not force:
        raise Usage(f"{spec} is {count} addresses, more than {LIMIT}; check the range, or add --force")
    cls = type(first)
    return [cls(n) for n in range(lo, hi + 1) if n not in excluded], length


def _check_prefix(length: int, addr: Address | Network) -> None:
    top = _max_prefix(addr)
    if not 0 < length <= top:
        raise Usage(f"--prefix-len {length} is not a prefix length for IPv{addr.version} (1..{top})")


def commands(interface: str, addresses: Sequence[Address], length: int, delete: bool) -> list[list[str]]:
    verb = "del" if delete else "add"
    return [["ip", "addr", verb, f"{a}/{length}", "dev", interface] for a in addresses]


def apply(cmds: Sequence[list[str]]) -> int:
    """Run the commands; an address already there (or already gone) is not an error."""
    if shutil.which("ip") is None:
        print("error: the `ip` command (iproute2) is not installed", file=sys.stderr)
        return 1
    failed = done = skipped = 0
    for cmd in cmds:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        message = proc.stderr.strip()
        if proc.returncode == 0:
            done += 1
        elif "File exists" in message or "Cannot assign requested address" in message:
            skipped += 1
        else:
            failed += 1
            print(f"error: {' '.join(cmd)}: {message or f'exit {proc.returncode}'}", file=sys.stderr)
            if "Operation not permitted" in message:
                print("hint: run as root (or with CAP_NET_ADMIN)", file=sys.stderr)
                break
    print(f"{done} changed, {skipped} already so, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="add-address-range.py",
        description="Print (or, with --apply, run) the `ip addr add` commands that put a block of "
        "addresses on an interface, for a galileo farm to send from.",
        epilog="Without --apply nothing is changed. Exit codes: 0 ok, 1 an ip command failed, 2 bad arguments.",
    )
    parser.add_argument("interface", metavar="INTERFACE", help="the interface, e.g. eth0 (see `ip link`)")
    parser.add_argument(
        "range", metavar="CIDR|FIRST-LAST", help="203.0.113.0/24, 203.0.113.2-203.0.113.254, 2001:db8::/120, ..."
    )
    parser.add_argument(
        "--skip-first",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="leave out the subnet's first host address, usually the gateway (default: on)",
    )
    parser.add_argument(
        "--prefix-len",
        type=int,
        metavar="N",
        help="prefix length of each added address (default: the CIDR's; /32 or /128 for a range)",
    )
    parser.add_argument("--force", action="store_true", help=f"allow more than {LIMIT} addresses")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--apply", action="store_true", help="run the commands (needs root) instead of printing them")
    out.add_argument("--netplan", action="store_true", help="print `- ADDRESS/LEN` lines for netplan's addresses:")
    parser.add_argument("--delete", action="store_true", help="`ip addr del` instead of add: undo an earlier run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        interface = parse_interface(args.interface)
        addresses, length = plan(args.range, args.prefix_len, args.skip_first, args.force)
    except Usage as exc:
        parser.error(str(exc))  # exits 2
    if args.netplan:
        if args.delete:
            parser.error("--netplan lists addresses to add; remove them from the YAML file to delete them")
        print("\n".join(f'        - "{a}/{length}"' for a in addresses))
        return 0
    cmds = commands(interface, addresses, length, args.delete)
    if not args.apply:
        if not os.path.exists(f"/sys/class/net/{interface}"):
            print(f"note: this host has no interface {interface!r} (see `ip link`)", file=sys.stderr)
        print("\n".join(" ".join(c) for c in cmds))
        return 0
    if not os.path.exists(f"/sys/class/net/{interface}"):
        parser.error(f"this host has no interface {interface!r} (see `ip link`)")
    return apply(cmds)


if __name__ == "__main__":
    sys.exit(main())
