"""The config file, as msgspec Structs. Field names are the YAML keys.

Secrets are never written in the file: a key ending in ``_env`` names an environment
variable that holds the secret (``api_key_env: JUPITER_API_KEY``), and a key ending in
``_path`` names a file (``keypair_path: ~/.config/solana/id.json``).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

import msgspec

from galileo.config._validate import Check
from galileo.config.sections import (
    BlindStrategyConfig,
    IntermediumConfig,
    LanderConfig,
    MultiLegConfig,
    UpstreamsConfig,
    WalletConfig,
)

__all__ = [
    "BotConfig",
    "FarmConfig",
    "GalileoConfig",
    "NetworkConfig",
    "PrometheusConfig",
]


def _is_ip(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "is not an IP address"
    return None


def _unique(values: list[Any]) -> str | None:
    seen: set[Any] = set()
    for v in values:
        key = str(ipaddress.ip_address(v)) if isinstance(v, str) and _is_ip(v) is None else v
        if key in seen:
            return f"lists {v!r} twice"
        seen.add(key)
    return None


def _host_port(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return "is not HOST:PORT (for example 127.0.0.1:9898)"
    return None


def _zmq_endpoint(value: str) -> str | None:
    if value.startswith("tcp://") and _host_port(value[6:]) is None:
        return None
    return "is not a tcp://HOST:PORT endpoint"


IpText = Annotated[str, Check(_is_ip)]
HostPort = Annotated[str, Check(_host_port)]


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=False):
    pass


class NetworkConfig(_Section):
    """``bot.network``: which local addresses the farm sends from. Nothing else is configurable."""

    enable_multiple_ip: bool = False
    manual_ips: Annotated[list[IpText], Check(_unique)] = msgspec.field(default_factory=list)


class PrometheusConfig(_Section):
    """``bot.prometheus``: the coordinator's metrics endpoint."""

    enable: bool = True
    listen: HostPort = "127.0.0.1:9898"


class BotConfig(_Section):
    network: NetworkConfig = msgspec.field(default_factory=NetworkConfig)
    prometheus: PrometheusConfig = msgspec.field(default_factory=PrometheusConfig)


def _ips_per_process(value: int | str) -> str | None:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return None
    return "must be a whole number of at least 1, or auto"


class FarmConfig(_Section):
    """``farm``: how workers reach the coordinator, and how many IPs each worker process serves.

    Local workers always use an ipc socket in ``runtime_dir``. ``listen`` opens a tcp
    endpoint for workers on other hosts; it requires CURVE keys (``galileo keys gen``).
    ``ips_per_process`` lets one local worker process serve several IPs, each still its own
    worker: ``auto`` (the default) keeps a process per IP up to 4 per CPU, then groups them so
    that there are about 4 processes per CPU; a number sets it, 1 is a process per IP always.
    """

    runtime_dir: str = ""
    ips_per_process: Annotated[int | str, Check(_ips_per_process)] = "auto"
    listen: Annotated[str, Check(_zmq_endpoint)] | None = None
    server_secret_key_path: str | None = None
    authorized_keys_dir: str | None = None

    @staticmethod
    def __check__(raw: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
        """tcp is CURVE-only: workers on other hosts are authenticated and encrypted, always."""
        if raw.get("listen") and not (raw.get("server_secret_key_path") and raw.get("authorized_keys_dir")):
            return [
                (
                    ("listen",),
                    f"{raw['listen']!r} needs CURVE: set farm.server_secret_key_path and "
                    "farm.authorized_keys_dir (create keys with `galileo keys gen`)",
                )
            ]
        return []


class GalileoConfig(_Section):
    """The whole ``galileo.yaml``."""

    bot: BotConfig = msgspec.field(default_factory=BotConfig)
    farm: FarmConfig = msgspec.field(default_factory=FarmConfig)
    upstreams: UpstreamsConfig = msgspec.field(default_factory=UpstreamsConfig)
    wallet: WalletConfig = msgspec.field(default_factory=WalletConfig)
    intermedium: IntermediumConfig = msgspec.field(default_factory=IntermediumConfig)
    blind_strategy: BlindStrategyConfig = msgspec.field(default_factory=BlindStrategyConfig)
    multi_leg: MultiLegConfig = msgspec.field(default_factory=MultiLegConfig)
    lander: LanderConfig = msgspec.field(default_factory=LanderConfig)

    @staticmethod
    def __check__(raw: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
        """Rules that span sections: an enabled strategy needs what it uses."""
        issues: list[tuple[tuple[str, ...], str]] = []
        blind = raw.get("blind_strategy") or {}
        multi = raw.get("multi_leg") or {}
        if not blind.get("enable") and not multi.get("enable"):
            return issues
        if not blind.get("base_mints"):
            issues.append((("blind_strategy", "base_mints"), "is empty: the strategies have nothing to quote"))
        ups = raw.get("upstreams") or {}
        landers = blind.get("enable_landers", ["jito"])
        if "staked" in landers:
            staked = ups.get("staked") or {}
            if not staked.get("urls") and not staked.get("url_envs"):
                issues.append((("upstreams", "staked"), "has no urls or url_envs, but enable_landers lists staked"))
        if "jito" in landers and (ups.get("jito") or {}).get("endpoints") == []:
            issues.append((("upstreams", "jito", "endpoints"), "is empty, but enable_landers lists jito"))
        rpc = ups.get("rpc")
        if rpc is not None and not rpc.get("urls") and not rpc.get("url_envs"):
            issues.append((("upstreams", "rpc"), "has no urls or url_envs: blockhashes and lookup tables come from it"))
        lander = raw.get("lander") or {}
        if lander.get("mode") == "live" and not (raw.get("wallet") or {}).get("keypair_path"):
            issues.append((("wallet", "keypair_path"), "is required when lander.mode is live"))
        return issues
