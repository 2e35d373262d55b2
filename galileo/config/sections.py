"""Config sections for the upstreams, the wallet, the blind strategy and landing.

Key names follow the original galileo where they serve users (``intermedium.mints``,
``blind_strategy.base_mints[*].trade_size_range``, ``enable_dexs``, ``enable_landers`` …).
Secrets are never in the file: ``*_env`` keys name an environment variable.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from galileo.config._validate import Check

__all__ = [
    "BaseMintConfig",
    "BlindStrategyConfig",
    "IntermediumConfig",
    "JitoConfig",
    "LanderConfig",
    "LaneConfig",
    "PriorityFeeConfig",
    "RpcConfig",
    "TipConfig",
    "TitanConfig",
    "UpstreamConfig",
    "UpstreamsConfig",
    "WalletConfig",
]

SOL_MINT = "So11111111111111111111111111111111111111112"
USDC_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
JITO_REGIONS = ("frankfurt", "amsterdam", "london", "ny", "tokyo", "slc", "dublin", "singapore", "mainnet")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _url(value: str) -> str | None:
    return None if value.startswith(("http://", "https://")) and len(value) > 8 else "is not an http(s) URL"


def _ws_url(value: str) -> str | None:
    return None if value.startswith(("ws://", "wss://")) and len(value) > 6 else "is not a ws(s) URL"


def _env_name(value: str) -> str | None:
    return None if _ENV.match(value) else "is not an environment variable name"


def _pubkey(value: str) -> str | None:
    from solders.pubkey import Pubkey

    try:
        Pubkey.from_string(value)
    except ValueError:
        return "is not a base58 public key"
    return None


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must not be negative"


def _share(value: float) -> str | None:
    return None if 0 < value <= 1 else "must be a share of the profit: greater than 0, at most 1"


def _percent(value: int) -> str | None:
    return None if 0 <= value <= 100 else "must be a percentile from 0 to 100"


Url = Annotated[str, Check(_url)]
WsUrl = Annotated[str, Check(_ws_url)]
EnvName = Annotated[str, Check(_env_name)]
Mint = Annotated[str, Check(_pubkey)]
Positive = Annotated[float, Check(_positive)]
PositiveInt = Annotated[int, Check(_positive)]
NonNegativeInt = Annotated[int, Check(_non_negative)]
NonNegative = Annotated[float, Check(_non_negative)]
Share = Annotated[float, Check(_share)]


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class UpstreamConfig(_Section):
    """An HTTP aggregator API. ``rate_limit_per_ip``: req/s per source IP if known (else learned);
    ``rate_limit_per_key``: req/s the API key allows, shared by every IP (needs ``api_key_env``)."""

    base_url: Url
    api_key_env: EnvName | None = None
    rate_limit_per_ip: Positive | None = None
    rate_limit_per_key: Positive | None = None
    timeout_ms: PositiveInt = 2000

    @staticmethod
    def __check__(raw: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
        if raw.get("rate_limit_per_key") is not None and raw.get("api_key_env") is None:
            why = "requires api_key_env in this section: it is that API key's limit, shared by every IP"
            return [(("rate_limit_per_key",), why)]
        return []


class RpcConfig(_Section):
    """Solana JSON-RPC endpoints. Put URLs that embed an API key in ``url_envs`` (env var names)."""

    urls: list[Url] = msgspec.field(default_factory=list)
    url_envs: list[EnvName] = msgspec.field(default_factory=list)
    rate_limit_per_ip: Positive | None = None
    timeout_ms: PositiveInt = 2000

    def endpoints(self) -> list[tuple[str, str | None]]:
        """(url, url_env) pairs; for an env entry the url is a placeholder naming the variable."""
        return [(u, None) for u in self.urls] + [(f"env:{e}", e) for e in self.url_envs]


class JitoConfig(_Section):
    """Jito block engines: one base URL per region (``/api/v1/bundles`` is appended)."""

    endpoints: list[Url] = msgspec.field(
        default_factory=lambda: [
            f"https://{r}.mainnet.block-engine.jito.wtf" if r != "mainnet" else "https://mainnet.block-engine.jito.wtf"
            for r in JITO_REGIONS
        ]
    )
    uuid_env: EnvName | None = None
    rate_limit_per_ip: Positive | None = 5.0  # Jito documents 5 req/s per IP per region
    timeout_ms: PositiveInt = 2000
    tip_floor_url: Url = "https://bundles.jito.wtf/api/v1/bundles/tip_floor"  # landed tips' percentiles


class TitanConfig(_Section):
    """Titan's WebSocket quote streams (multi-leg): one connection per token, streams multiplexed on it.

    Titan limits the token, not the IP: a token may hold one connection (its ``jti``), and a
    connection ``concurrentStreams`` streams (GetInfo says how many). So each token gets one
    connection, on one IP the pool leases for it (that IP keeps serving HTTP), and more tokens
    (``token_envs``) mean more connections on more IPs. ``token_env`` is the one-token form.
    """

    ws_url: WsUrl = "wss://api.titan.exchange/api/v1/ws"
    token_env: EnvName | None = "TITAN_TOKEN"
    token_envs: list[EnvName] = msgspec.field(default_factory=list)  # one connection each; replaces token_env
    stream_seconds: Positive = 60.0  # a stream is renewed (in place, without a gap) after this long
    idle_resubscribe_ms: PositiveInt = 10_000  # no update for this long: subscribe again
    titan_stream_limit: PositiveInt | None = None  # streams per connection at most (None: what GetInfo allows)
    titan_debounce_ms: NonNegativeInt = 200
    interval_ms: PositiveInt = 1000
    num_quotes: PositiveInt = 2
    providers: list[str] = msgspec.field(default_factory=list)

    @staticmethod
    def __check__(raw: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        envs = raw.get("token_envs") or []
        for i, env in enumerate(envs):
            if env in envs[:i]:
                problems.append((("token_envs", i), f"{env} is listed twice (one connection per token)"))
        if envs and raw.get("token_env") is not None:
            problems.append((("token_env",), "give token_env or token_envs, not both (token_envs lists every token)"))
        return problems

    def tokens(self) -> list[str]:
        """The env var names of the tokens: one Titan connection each."""
        if self.token_envs:
            return list(self.token_envs)
        return [self.token_env] if self.token_env else []


class UpstreamsConfig(_Section):
    jupiter: UpstreamConfig = msgspec.field(
        default_factory=lambda: UpstreamConfig(base_url="https://api.jup.ag/swap/v1", api_key_env="JUPITER_API_KEY")
    )
    dflow: UpstreamConfig = msgspec.field(
        default_factory=lambda: UpstreamConfig(base_url="https://quote-api.dflow.net", api_key_env="DFLOW_API_KEY")
    )
    ultra: UpstreamConfig = msgspec.field(
        default_factory=lambda: UpstreamConfig(base_url="https://api.jup.ag/ultra/v1", api_key_env="JUPITER_API_KEY")
    )
    rpc: RpcConfig = msgspec.field(default_factory=lambda: RpcConfig(urls=["https://api.mainnet-beta.solana.com"]))
    staked: RpcConfig = msgspec.field(default_factory=RpcConfig)
    jito: JitoConfig = msgspec.field(default_factory=JitoConfig)
    titan: TitanConfig = msgspec.field(default_factory=TitanConfig)


class WalletConfig(_Section):
    """``keypair_path``: a Solana CLI JSON keypair file (keep it mode 0600)."""

    keypair_path: str | None = None


class IntermediumConfig(_Section):
    """The mints each base mint round-trips through."""

    mints: list[Mint] = msgspec.field(default_factory=lambda: [SOL_MINT, USDC_MINT])
    disable_mints: list[Mint] = msgspec.field(default_factory=list)


class LaneConfig(_Section):
    """A range of trade sizes in the base mint's raw units."""

    min: PositiveInt
    max: PositiveInt
    count: PositiveInt = 1
    strategy: Literal["linear", "exponential", "random"] = "linear"

    @staticmethod
    def __check__(raw: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
        if raw["min"] > raw["max"]:
            return [(("min",), f"{raw['min']} is greater than max {raw['max']}")]
        return []


class BaseMintConfig(_Section):
    """One base mint: its trade sizes (a range, or several lanes) and its own profit threshold."""

    mint: Mint
    trade_size_range: (
        Annotated[
            tuple[int, int], Check(lambda r: None if 0 < r[0] <= r[1] else "must be [min, max] with 0 < min <= max")
        ]
        | None
    ) = None
    trade_range_count: PositiveInt = 1
    trade_range_strategy: Literal["linear", "exponential", "random"] = "linear"
    lanes: list[LaneConfig] = msgspec.field(default_factory=list)
    min_quote_profit: NonNegativeInt = 0

    @staticmethod
    def __check__(raw: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
        if raw.get("trade_size_range") is None and not raw.get("lanes"):
            return [(("trade_size_range",), "is required (or give lanes)")]
        return []

    def lanes_or_range(self) -> list[LaneConfig]:
        lanes = list(self.lanes)
        if self.trade_size_range is not None:
            lo, hi = self.trade_size_range
            lanes.insert(
                0, LaneConfig(min=lo, max=hi, count=self.trade_range_count, strategy=self.trade_range_strategy)
            )
        return lanes


class BlindStrategyConfig(_Section):
    """Quote every base x intermediate x size round trip; land the profitable ones."""

    enable: bool = False
    quote_provider: Literal["jupiter", "dflow"] = "jupiter"
    base_mints: list[BaseMintConfig] = msgspec.field(default_factory=list)
    enable_dexs: list[str] = msgspec.field(default_factory=list)
    exclude_dexes: list[str] = msgspec.field(default_factory=list)
    enable_landers: list[Literal["jito", "staked", "rpc"]] = msgspec.field(default_factory=lambda: ["jito"])
    only_direct_routes: bool = False
    # Accounts one round trip's transaction may lock (null: the runtime's 64); each leg gets
    # half of it after our own three, as Jupiter's maxAccounts and Titan's accountsLimitTotal.
    max_accounts: (
        Annotated[int, Check(lambda v: None if 16 <= v <= 64 else "must be in 16..64 (the runtime locks 64)")] | None
    ) = None


class MultiLegConfig(_Section):
    """Buy and sell legs from different aggregators, every buy leg x every sell leg per batch.

    Uses ``blind_strategy.base_mints`` (sizes, per-mint ``min_quote_profit``) and
    ``intermedium``. Titan is a buy leg only: its quotes come from WebSocket streams, one
    connection per token (``upstreams.titan``), the (pair, size)s the engine quotes most usefully first.
    """

    enable: bool = False
    buy_legs: list[Literal["jupiter", "dflow", "ultra", "titan"]] = msgspec.field(
        default_factory=lambda: ["ultra", "titan"]
    )
    sell_legs: list[Literal["jupiter", "dflow", "ultra"]] = msgspec.field(default_factory=lambda: ["dflow", "jupiter"])
    titan_quote_wait_ms: PositiveInt = 2000  # how long a batch waits for a stream's first quote


class TipConfig(_Section):
    """The Jito tip: a percentile of Jito's tip floor, capped at a share of the round trip's profit.

    ``percentile`` null: always ``lander.tip_lamports``. The floor is read every ``refresh_s``
    through the farm (``upstreams.jito.tip_floor_url``); until it is known, or while it cannot
    be read, ``lander.tip_lamports`` stands in. Whatever the source, the tip is at most
    ``max_profit_share`` of the round trip's profit before landing costs, and at least 1000
    (Jito's minimum): a round trip that cannot pay that and still clear ``min_quote_profit``
    is not landed.
    """

    percentile: Literal[25, 50, 75, 95, 99] | None = 50
    max_profit_share: Share = 0.5
    refresh_s: Positive = 10.0


class PriorityFeeConfig(_Section):
    """The compute-unit price of ``staked`` / ``rpc`` sends, from ``getRecentPrioritizationFees``.

    ``percentile`` of the recent slots' fees on the transaction's writable accounts (null:
    always ``lander.compute_unit_price_micro_lamports``, which also stands in until the fees
    are known). Capped at ``max_micro_lamports`` and so that the whole priority fee is at most
    ``max_profit_share`` of the round trip's profit before landing costs. A set of accounts is
    asked about at most once per ``refresh_s``.
    """

    percentile: Annotated[int, Check(_percent)] | None = 50
    max_micro_lamports: NonNegativeInt = 100_000
    max_profit_share: Share = 0.5
    refresh_s: Positive = 10.0


class LanderConfig(_Section):
    """How opportunities are landed. ``mode: dry_run`` (the default) builds and signs, sends nothing.

    ``max_quote_age_slots``: a round trip whose quotes are older than this many slots (their
    ``contextSlot`` against the chain's, or this many 400 ms slots since they arrived, or past
    Titan's ``expiresAfterSlot``) is not landed. ``rebroadcast_s``: a ``staked`` / ``rpc``
    transaction not yet on chain is sent again, the same bytes, this often until it lands or its
    blockhash expires (0: never).
    """

    mode: Literal["dry_run", "live"] = "dry_run"
    tip_lamports: Annotated[int, Check(lambda v: None if v >= 1000 else "must be at least 1000 (Jito's minimum)")] = (
        10_000
    )
    tip: TipConfig = msgspec.field(default_factory=TipConfig)
    compute_unit_price_micro_lamports: NonNegativeInt = 0
    priority_fee: PriorityFeeConfig = msgspec.field(default_factory=PriorityFeeConfig)
    # The compute unit limit is the merged transaction's simulated units times this margin.
    cu_limit_multiplier: Annotated[
        float, Check(lambda v: None if 1.0 <= v <= 2.0 else "must be in 1.0..2.0 (below 1 runs out of compute)")
    ] = 1.1
    max_quote_age_slots: PositiveInt = 4
    rebroadcast_s: NonNegative = 2.0
    follow_timeout_s: Positive = 90.0
