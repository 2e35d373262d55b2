"""``galileo config check | init | schema``."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import orjson
import typer

from galileo.cli._common import err_console, fail, print_config_error
from galileo.config import ConfigError, ConfigIssue, GalileoConfig, json_schema, load_config
from galileo.config.template import TEMPLATE
from galileo.upstreams import Upstreams

__all__ = ["Wallet", "app", "check_wallet", "summary", "wallet_or_exit"]

app = typer.Typer(rich_markup_mode=None, help="Check, create and describe galileo.yaml.", no_args_is_help=True)


@dataclass(frozen=True)
class Wallet:
    """The keypair file ``wallet.keypair_path`` names, as read: its public key and file mode."""

    path: str
    pubkey: str
    mode: int


def check_wallet(cfg: GalileoConfig) -> Wallet | ConfigIssue | None:
    """Read the keypair ``wallet.keypair_path`` names, as ``farm start`` will: None when unset.

    Returns the issue (at ``wallet.keypair_path``) when the file is missing, unreadable, not a
    regular file or not a keypair. Only the public key leaves this function.
    """
    if not cfg.wallet.keypair_path:
        return None
    from galileo.tx import WalletError, load_keypair

    path = Path(cfg.wallet.keypair_path).expanduser()
    try:
        keypair = load_keypair(path)
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except WalletError as exc:
        return ConfigIssue("wallet.keypair_path", f"{exc.path}: {exc.problem}")
    except OSError as exc:  # replaced between the read and the stat
        return ConfigIssue("wallet.keypair_path", f"{path}: {exc.strerror or exc}")
    return Wallet(str(path), str(keypair.pubkey()), mode)


def wallet_or_exit(cfg: GalileoConfig, source: str) -> Wallet | None:
    """:func:`check_wallet`, or exit 2 naming ``wallet.keypair_path`` (bad config, as ``config check`` says)."""
    wallet = check_wallet(cfg)
    if isinstance(wallet, ConfigIssue):
        print_config_error(ConfigError(source, [wallet]))
        raise typer.Exit(2)
    return wallet


def _network(cfg: GalileoConfig) -> str:
    net = cfg.bot.network
    if not net.enable_multiple_ip:
        if net.manual_ips:
            return f"multiple IPs: off (one worker on {net.manual_ips[0]}, the first of manual_ips)"
        return "multiple IPs: off (one worker on the default route)"
    if net.manual_ips:
        return f"multiple IPs: on, manual list of {len(net.manual_ips)}: {', '.join(net.manual_ips)}"
    return "multiple IPs: on, auto-detected (see `galileo ips`)"


def _strategies(cfg: GalileoConfig) -> list[str]:
    out = []
    mints = ", ".join(m.mint for m in cfg.blind_strategy.base_mints) or "none"
    if cfg.blind_strategy.enable:
        out.append(f"blind (quotes from {cfg.blind_strategy.quote_provider}; base mints: {mints})")
    if cfg.multi_leg.enable:
        legs = f"buy legs {', '.join(cfg.multi_leg.buy_legs)}; sell legs {', '.join(cfg.multi_leg.sell_legs)}"
        out.append(f"multi_leg ({legs}; base mints: {mints})")
    return out


def _used_upstreams(cfg: GalileoConfig) -> list[str]:
    """The upstreams the enabled strategies talk to, in a stable order."""
    used: set[str] = set()
    if cfg.blind_strategy.enable:
        used.add(cfg.blind_strategy.quote_provider)
    if cfg.multi_leg.enable:
        used.update(cfg.multi_leg.buy_legs, cfg.multi_leg.sell_legs)
    if used:
        used.add("rpc")  # blockhashes and lookup tables
        used.update(cfg.blind_strategy.enable_landers)
    order = ("jupiter", "dflow", "ultra", "titan", "jito", "staked", "rpc")
    return [u for u in order if u in used]


def _key_of(cfg: GalileoConfig, upstream: str) -> list[str]:
    """The env var names that hold the upstream's key (an RPC URL with its key in it counts)."""
    ups = cfg.upstreams
    if upstream in ("jupiter", "dflow", "ultra"):
        env = getattr(ups, upstream).api_key_env
        return [env] if env else []
    if upstream == "titan":
        return ups.titan.tokens()
    if upstream == "jito":
        return [ups.jito.uuid_env] if ups.jito.uuid_env else []
    return list(ups.staked.url_envs if upstream == "staked" else ups.rpc.url_envs)


def _titan_line(cfg: GalileoConfig) -> str:
    """Titan limits the token, not the IP: one connection per token, on one IP each."""
    envs = cfg.upstreams.titan.tokens()
    if not envs:
        return "titan: no token (upstreams.titan.token_env or token_envs): Titan refuses the connection"
    state = ", ".join(f"{e} {'set' if os.environ.get(e) else 'NOT set'} here" for e in envs)
    streams = "streams multiplexed on it up to the server's concurrentStreams"
    if len(envs) == 1:
        return (
            f"titan: per token ({state}): 1 token = 1 connection on 1 IP, {streams}; more IPs do not raise "
            "it, more tokens (upstreams.titan.token_envs) do"
        )
    return f"titan: per token ({state}): {len(envs)} tokens = {len(envs)} connections on {len(envs)} IPs, {streams}"


def _pace(cfg: GalileoConfig, upstream: str, keyed: bool) -> str:
    """How the farm paces ``upstream``: the told rates, or learnt from its 429s (and which key tells it)."""
    section = getattr(cfg.upstreams, upstream)
    per_ip: float | None = getattr(section, "rate_limit_per_ip", None)
    per_key: float | None = getattr(section, "rate_limit_per_key", None)
    where = "per (IP, region)" if upstream == "jito" else "per IP"
    told = [f"{per_ip:g} req/s {where} (rate_limit_per_ip)"] if per_ip else []
    if per_key:
        told.insert(0, f"{per_key:g} req/s for the key, shared by every IP (rate_limit_per_key)")
    if told:
        return "paced at " + " and ".join(told)
    if keyed:
        return "the key's budget learnt from its 429s, paced as one over every IP" + (
            " (rate_limit_per_key tells it)" if hasattr(section, "rate_limit_per_key") else ""
        )
    return f"learnt {where} from its 429s (rate_limit_per_ip tells it)"


def _upstream_line(cfg: GalileoConfig, upstream: str, keyed: set[str]) -> str:
    if upstream == "titan":
        return _titan_line(cfg)
    envs = _key_of(cfg, upstream)
    if envs:
        state = ", ".join(f"{e} {'set' if os.environ.get(e) else 'NOT set'} here" for e in envs)
        line = f"{upstream}: keyed ({state}): the provider limits the key, so more IPs do not raise it"
    elif upstream == "jito":
        n = len(cfg.upstreams.jito.endpoints)
        line = f"{upstream}: per IP per region ({n} region(s)): each address adds its own limit"
    else:
        line = f"{upstream}: per IP: each address adds its own limit"
    return f"{line}; {_pace(cfg, upstream, upstream in keyed)}"


def _wallet(cfg: GalileoConfig, wallet: Wallet | None) -> str:
    if wallet is None:
        if cfg.blind_strategy.enable or cfg.multi_leg.enable:
            return "wallet: none; the strategies sign with a throw-away key (dry run only)"
        return "wallet: none"
    loose = f": group or others may read it, run `chmod 600 {wallet.path}`" if wallet.mode & 0o077 else ""
    return f"wallet: {wallet.path} (public key {wallet.pubkey}, mode {wallet.mode:04o}{loose})"


def _tip(cfg: GalileoConfig) -> str:
    tip = cfg.lander.tip
    if tip.percentile is None:
        return f"tip {cfg.lander.tip_lamports} lamports"
    return (
        f"tip: the tip floor's {tip.percentile}th percentile, at most {tip.max_profit_share:.0%} of the profit, "
        f"{cfg.lander.tip_lamports} lamports until the floor is known"
    )


def summary(cfg: GalileoConfig, wallet: Wallet | None = None) -> list[str]:
    """Lines saying what the config will do: addresses, landing, strategies, wallet, upstream limits."""
    prom = cfg.bot.prometheus
    lines = [_network(cfg), f"prometheus: {'on at ' + prom.listen if prom.enable else 'off'}"]
    if cfg.farm.listen:
        lines.append(f"remote workers: {cfg.farm.listen} (CURVE)")
    if cfg.lander.mode == "live":
        landers = ", ".join(cfg.blind_strategy.enable_landers)
        lines.append(f"lander: LIVE: signed transactions are sent (landers: {landers}; {_tip(cfg)})")
    else:
        lines.append("lander: dry run: transactions are built and signed, nothing is sent (lander.mode: live sends)")
    strategies = _strategies(cfg)
    lines.append(f"strategies: {'; '.join(strategies)}" if strategies else "strategies: none enabled")
    lines.append(_wallet(cfg, wallet))
    used = _used_upstreams(cfg)
    if used:
        lines.append("upstreams the strategies use:")
        keyed = Upstreams(cfg).keyed()
        lines += [f"  {_upstream_line(cfg, u, keyed)}" for u in used]
    return lines


@app.command("check")
def check(file: Path = typer.Argument(..., help="The config file to check.")) -> None:
    """Validate FILE: exit 0 with what the config will do, or exit 2 listing every problem with its key path.

    Reads the keypair file wallet.keypair_path names (as `farm start` will), so a missing or
    broken keypair is a problem here too.
    """
    try:
        cfg = load_config(file)
    except ConfigError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None
    wallet = wallet_or_exit(cfg, str(file))
    typer.echo(f"{file}: ok")
    for line in summary(cfg, wallet):
        typer.echo(f"  {line}")


@app.command("init")
def init(
    path: Path = typer.Argument(Path("galileo.yaml"), help="Where to write the template."),
) -> None:
    """Write a commented config template to PATH (default ./galileo.yaml). Never overwrites a file."""
    if path.exists():
        raise fail(f"{path} already exists; not overwriting it (choose another PATH or remove it)", 2)
    try:
        with path.open("x", encoding="utf-8") as fh:
            fh.write(TEMPLATE)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror}", 1) from None
    err_console.print(f"wrote {path}; check it with `galileo config check {path}`", markup=False)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the config file (for editors such as yaml-language-server)."""
    typer.echo(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode())
