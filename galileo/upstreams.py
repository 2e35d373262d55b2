"""Jobs for each upstream, built from the config: the one place that knows URLs and upstream keys.

A floor below the strategies and landing: both build their jobs here, and this module
imports neither of them (tests/test_import_direction.py holds it to that).

An *upstream key* names what a rate limit belongs to, so cooldowns and pacing are kept per
(IP, key): ``jupiter``, ``dflow``, ``rpc``, ``staked:<n>``, ``jito:<region>``. Secrets travel
only as :class:`~broker.jobs.SecretRef` (the name of an env var the worker reads).

Landing jobs carry a ``hash_key`` of (endpoint, what is sent): rendezvous hashing then keeps
re-sends of the same bytes on the same IP, while different bundles spread over every IP
(see :mod:`galileo.policy.allocator`).

What the round trip's legs are asked for (issue 15), the same for every aggregator:

* **slippage 0 when quoting**: a quote's minimum out is then its out; the sell leg's is set
  from the round trip's costs when its instructions are asked for (``min_out``), never from a
  fixed number;
* **accounts**: each leg may use ``leg_accounts`` accounts (``maxAccounts``, Titan's
  ``accountsLimitTotal``), half of what one transaction may lock after our own, so two legs
  merged always fit (``blind_strategy.max_accounts``, default 64, is the transaction's);
* **compute**: ``dynamicComputeUnitLimit`` (Jupiter and DFlow simulate the leg);
* **Titan**: ``closeInputTokenAccount: false`` (the sell leg still needs the account).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson

from broker.jobs import (
    DflowQuote,
    DflowSwapInstructions,
    JitoInflightStatuses,
    JitoSendBundle,
    JitoTipFloor,
    JobPayload,
    JupiterQuote,
    JupiterSwapInstructions,
    RpcGetMultipleAccounts,
    RpcGetTransaction,
    RpcLatestBlockhash,
    RpcPrioritizationFees,
    RpcSendTransaction,
    RpcSignatureStatuses,
    RpcSimulateTransaction,
    SecretRef,
    TitanConnect,
    TitanStop,
    TitanSubscribe,
    UltraOrder,
)
from broker.types import JobSpec
from galileo.config import GalileoConfig
from galileo.config.sections import RpcConfig, UpstreamConfig
from galileo.tx.slippage import min_out as min_out_of
from galileo.tx.slippage import slippage_for

__all__ = [
    "MAX_BUNDLE_IDS",
    "MAX_SIGNATURES",
    "OUR_ACCOUNTS",
    "TITAN_CONNECTION_BUDGET",
    "TITAN_STREAMS",
    "TX_ACCOUNT_LOCKS",
    "Endpoint",
    "QuoteRequest",
    "Upstreams",
    "leg_accounts",
    "with_min_out",
]

MAX_BUNDLE_IDS = 5  # getInflightBundleStatuses / getBundleStatuses take at most 5 ids
MAX_SIGNATURES = 256  # getSignatureStatuses takes at most 256
TITAN_CONNECTION_BUDGET = 24 * 3600.0  # a Titan connection job's budget: held until closed, renewed daily
TITAN_CONTROL_TIMEOUT = 6.0  # a stream job: the worker waits up to 5 s for Titan's answer
TITAN_STREAMS = "titan:streams"  # the upstream key of stream jobs (subscribe, stop)
TX_ACCOUNT_LOCKS = 64  # accounts one transaction may lock: the default budget of a round trip
OUR_ACCOUNTS = 3  # what we add to the legs' accounts: the compute budget program, a tip account, System
LEGS = 2  # a round trip: a buy leg and a sell leg


def leg_accounts(max_accounts: int | None) -> int:
    """Accounts one leg may use so that two merged legs and ours fit in ``max_accounts`` (default 64)."""
    return max(1, ((max_accounts or TX_ACCOUNT_LOCKS) - OUR_ACCOUNTS) // LEGS)


def with_min_out(quote_raw: bytes, min_out: int) -> bytes:
    """A /quote body whose route must pay at least ``min_out``: its slippage and threshold rewritten.

    Jupiter's route checks ``outAmount × (10000 − slippageBps) / 10000``; DFlow's carries
    ``minOutAmount``; both echo ``otherAmountThreshold``. The slippage is the most that still
    pays ``min_out``. Raises ValueError when the quote is below ``min_out`` or not an ExactIn quote.
    """
    try:
        quote = orjson.loads(quote_raw)
        out = int(quote["outAmount"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ValueError("the quote is not a /quote object with an outAmount") from None
    if quote.get("swapMode", "ExactIn") != "ExactIn":
        raise ValueError("only an ExactIn /quote object can be given a minimum out")
    bps = slippage_for(out, min_out)
    if bps is None:
        raise ValueError(f"the quote pays {out}, below the {min_out} it must pay")
    threshold = str(min_out_of(out, bps))
    quote["slippageBps"] = bps
    quote["otherAmountThreshold"] = threshold
    if "minOutAmount" in quote:
        quote["minOutAmount"] = threshold
    return orjson.dumps(quote)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A JSON-RPC style endpoint: a label for logs and metrics (never a secret), how to reach it."""

    label: str  # jito:frankfurt, staked:0, rpc:0
    upstream: str  # the rate-limit key
    url: str | None
    url_env: str | None = None
    secret: SecretRef | None = None


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    input_mint: str
    output_mint: str
    amount: int


def _secret(header: str, env: str | None, prefix: str = "") -> SecretRef | None:
    return SecretRef(header, env, prefix) if env else None


def _region(url: str) -> str:
    host = urlsplit(url).hostname or url
    first = host.split(".", 1)[0]
    return first if first not in ("127", "localhost") else url.rstrip("/").rsplit("/", 1)[-1]


def _rpc_endpoints(kind: str, cfg: RpcConfig) -> list[Endpoint]:
    out = []
    for i, (url, env) in enumerate(cfg.endpoints()):
        out.append(
            Endpoint(
                label=f"{kind}:{i}", upstream=kind if i == 0 else f"{kind}:{i}", url=None if env else url, url_env=env
            )
        )
    return out


class Upstreams:
    """Job factories for every upstream the strategies use."""

    def __init__(self, cfg: GalileoConfig) -> None:
        self.cfg = cfg
        up = cfg.upstreams
        self.rpc = _rpc_endpoints("rpc", up.rpc)
        self.staked = _rpc_endpoints("staked", up.staked)
        jito_secret = _secret("x-jito-auth", up.jito.uuid_env)
        self.jito = [
            Endpoint(label=f"jito:{_region(u)}", upstream=f"jito:{_region(u)}", url=u.rstrip("/"), secret=jito_secret)
            for u in up.jito.endpoints
        ]
        blind = cfg.blind_strategy
        self.quote_provider = blind.quote_provider
        self._dexes = list(blind.enable_dexs)
        self._exclude = list(blind.exclude_dexes)
        self.accounts_per_leg = leg_accounts(blind.max_accounts)

    def known_rates(self) -> dict[str, float]:
        """Per-IP limits the operator told us, keyed like the jobs' upstreams."""
        up = self.cfg.upstreams
        rates: dict[str, float] = {}
        for name, section in (("jupiter", up.jupiter), ("dflow", up.dflow), ("ultra", up.ultra)):
            if section.rate_limit_per_ip:
                rates[name] = section.rate_limit_per_ip
        for kind, rpc in (("rpc", up.rpc), ("staked", up.staked)):
            if rpc.rate_limit_per_ip:
                rates[kind] = rpc.rate_limit_per_ip
                for ep in self.rpc if kind == "rpc" else self.staked:
                    rates[ep.upstream] = rpc.rate_limit_per_ip
        if up.jito.rate_limit_per_ip:
            rates["jito"] = up.jito.rate_limit_per_ip
        return rates

    def known_key_rates(self) -> dict[str, float]:
        """Per-key limits the operator told us (``rate_limit_per_key``), where the key is sent (its env var set)."""
        keyed = self.keyed()
        up = self.cfg.upstreams
        return {
            name: section.rate_limit_per_key
            for name, section in (("jupiter", up.jupiter), ("dflow", up.dflow), ("ultra", up.ultra))
            if section.rate_limit_per_key and name in keyed
        }

    def keyed(self) -> set[str]:
        """Upstreams that send an API key (its env var set): their limits are the key's, shared by every IP."""
        up = self.cfg.upstreams
        out = {
            name
            for name, section in (("jupiter", up.jupiter), ("dflow", up.dflow), ("ultra", up.ultra))
            if section.api_key_env and os.environ.get(section.api_key_env)
        }
        if up.jito.uuid_env and os.environ.get(up.jito.uuid_env):
            out.add("jito")
        return out

    def _aggregator(self, provider: str) -> UpstreamConfig:
        section: UpstreamConfig = getattr(self.cfg.upstreams, provider)
        return section

    # --- quotes ---------------------------------------------------------------------

    def quote(self, req: QuoteRequest, *, prefer_ip: str | None, task: str, provider: str | None = None) -> JobSpec:
        provider = provider or self.quote_provider
        up = self._aggregator(provider)
        blind = self.cfg.blind_strategy
        payload: JobPayload
        if provider == "jupiter":
            payload = JupiterQuote(
                base_url=up.base_url,
                input_mint=req.input_mint,
                output_mint=req.output_mint,
                amount=req.amount,
                slippage_bps=0,
                dexes=self._dexes,
                exclude_dexes=self._exclude,
                only_direct_routes=blind.only_direct_routes or None,
                max_accounts=self.accounts_per_leg,
                secret=_secret("x-api-key", up.api_key_env),
            )
        elif provider == "dflow":
            payload = DflowQuote(
                base_url=up.base_url,
                input_mint=req.input_mint,
                output_mint=req.output_mint,
                amount=req.amount,
                slippage_bps=0,
                dexes=self._dexes,
                exclude_dexes=self._exclude,
                only_direct_routes=blind.only_direct_routes or None,
                secret=_secret("x-api-key", up.api_key_env),
            )
        else:
            raise ValueError(f"{provider!r} is not a quote provider for the blind strategy")
        return JobSpec(payload, upstream=provider, timeout=up.timeout_ms / 1000, prefer_ip=prefer_ip, task=task)

    def swap_instructions(
        self,
        quote_raw: bytes,
        user: str,
        *,
        prefer_ip: str | None,
        provider: str | None = None,
        cu_price: int | None = None,
        min_out: int | None = None,
    ) -> JobSpec:
        """The leg's instructions for ``quote_raw``; with ``min_out``, a route that pays at least that
        (see :func:`with_min_out`; ValueError when the quote pays less)."""
        provider = provider or self.quote_provider
        up = self._aggregator(provider)
        if min_out is not None:
            quote_raw = with_min_out(quote_raw, min_out)
        payload: JobPayload
        if provider == "jupiter":
            payload = JupiterSwapInstructions(
                base_url=up.base_url,
                user_public_key=user,
                quote=quote_raw,
                wrap_and_unwrap_sol=True,
                dynamic_compute_unit_limit=True,
                compute_unit_price_micro_lamports=cu_price,
                secret=_secret("x-api-key", up.api_key_env),
            )
        elif provider == "dflow":
            payload = DflowSwapInstructions(
                base_url=up.base_url,
                user_public_key=user,
                quote=quote_raw,
                wrap_and_unwrap_sol=True,
                dynamic_compute_unit_limit=True,
                compute_unit_price_micro_lamports=cu_price,
                secret=_secret("x-api-key", up.api_key_env),
            )
        else:
            raise ValueError(f"{provider!r} has no swap-instructions endpoint")
        return JobSpec(
            payload, upstream=provider, timeout=up.timeout_ms / 1000, prefer_ip=prefer_ip, task="swap_instructions"
        )

    def ultra_order(
        self, req: QuoteRequest, taker: str, *, prefer_ip: str | None, task: str, slippage_bps: int = 0
    ) -> JobSpec:
        """An order (Ultra's quote and whole transaction); ``slippageBps`` is the web app's parameter."""
        up = self.cfg.upstreams.ultra
        payload = UltraOrder(
            base_url=up.base_url,
            input_mint=req.input_mint,
            output_mint=req.output_mint,
            amount=req.amount,
            taker=taker,
            slippage_bps=slippage_bps,
            exclude_dexes=self._exclude,
            secret=_secret("x-api-key", up.api_key_env),
        )
        return JobSpec(payload, upstream="ultra", timeout=up.timeout_ms / 1000, prefer_ip=prefer_ip, task=task)

    def titan_connect(self, token_env: str, lease: str, *, prefer_ip: str | None) -> JobSpec:
        """One Titan connection for the token in ``token_env``: a long-lived job holding one credit
        of its worker, so the IP keeps serving HTTP. Never re-dispatched by the farm: the caller
        reconnects (on the same IP when it is healthy, another when not)."""
        t = self.cfg.upstreams.titan
        return JobSpec(
            TitanConnect(url=t.ws_url, lease=lease, secret=_secret("Authorization", token_env, "Bearer ")),
            upstream="titan",
            timeout=TITAN_CONNECTION_BUDGET,
            prefer_ip=prefer_ip,
            idempotent=False,
            task="titan_connect",
        )

    def titan_subscribe(
        self, lease: str, req: QuoteRequest, user: str, *, ip: str, replace: int | None = None
    ) -> JobSpec:
        """A quote stream on the connection ``lease`` (on ``ip``), replacing stream ``replace`` if given."""
        t = self.cfg.upstreams.titan
        payload = TitanSubscribe(
            lease=lease,
            input_mint=req.input_mint,
            output_mint=req.output_mint,
            amount=req.amount,
            user_public_key=user,
            replace=replace,
            swap_mode="ExactIn",
            slippage_bps=0,
            accounts_limit_total=self.accounts_per_leg,
            close_input_token_account=False,
            dexes=self._dexes or None,
            exclude_dexes=self._exclude or None,
            providers=t.providers or None,
            interval_ms=t.interval_ms,
            num_quotes=t.num_quotes,
        )
        return self._titan_control(payload, ip, "titan_subscribe")

    def titan_stop(self, lease: str, stream_id: int | None, *, ip: str) -> JobSpec:
        """StopStream ``stream_id`` on the connection ``lease``; None closes the connection."""
        return self._titan_control(TitanStop(lease=lease, stream_id=stream_id), ip, "titan_stop")

    @staticmethod
    def _titan_control(payload: JobPayload, ip: str, task: str) -> JobSpec:
        # On the connection's worker or nowhere; a key of their own, so the connection's pacing
        # and cooldowns (of the "titan" handshakes) never hold a stream back.
        return JobSpec(
            payload, upstream=TITAN_STREAMS, timeout=TITAN_CONTROL_TIMEOUT, require_ip=ip, idempotent=False, task=task
        )

    # --- chain state ----------------------------------------------------------------

    def _rpc_timeout(self) -> float:
        return self.cfg.upstreams.rpc.timeout_ms / 1000

    def latest_blockhash(self) -> JobSpec:
        ep = self.rpc[0]
        return JobSpec(
            RpcLatestBlockhash(url=ep.url, url_env=ep.url_env, commitment="confirmed"),
            upstream=ep.upstream,
            timeout=self._rpc_timeout(),
            task="rpc",
        )

    def accounts(self, addresses: list[str]) -> JobSpec:
        ep = self.rpc[0]
        return JobSpec(
            RpcGetMultipleAccounts(url=ep.url, url_env=ep.url_env, addresses=addresses),
            upstream=ep.upstream,
            timeout=self._rpc_timeout(),
            task="rpc",
        )

    def simulate(self, transaction: bytes) -> JobSpec:
        """``simulateTransaction`` of a built transaction (no signature check): its units and any error."""
        ep = self.rpc[0]
        return JobSpec(
            RpcSimulateTransaction(url=ep.url, url_env=ep.url_env, transaction=transaction),
            upstream=ep.upstream,
            timeout=self._rpc_timeout(),
            task="rpc",
        )

    def signature_statuses(self, signatures: list[str]) -> JobSpec:
        """``getSignatureStatuses`` for at most 256 signatures (one call follows every pending send)."""
        assert 0 < len(signatures) <= MAX_SIGNATURES
        ep = self.rpc[0]
        return JobSpec(
            RpcSignatureStatuses(url=ep.url, url_env=ep.url_env, signatures=signatures),
            upstream=ep.upstream,
            timeout=self._rpc_timeout(),
            task="follow",
        )

    def prioritization_fees(self, accounts: list[str]) -> JobSpec:
        """``getRecentPrioritizationFees`` over at most 128 writable ``accounts``."""
        ep = self.rpc[0]
        return JobSpec(
            RpcPrioritizationFees(url=ep.url, url_env=ep.url_env, accounts=accounts),
            upstream=ep.upstream,
            timeout=self._rpc_timeout(),
            task="fees",
        )

    def get_transaction(self, signature: str) -> JobSpec:
        """``getTransaction`` at ``confirmed``: what a landed transaction did to the wallet's balances."""
        ep = self.rpc[0]
        return JobSpec(
            RpcGetTransaction(url=ep.url, url_env=ep.url_env, signature=signature, commitment="confirmed"),
            upstream=ep.upstream,
            timeout=self._rpc_timeout(),
            task="follow",
        )

    def tip_floor(self) -> JobSpec:
        """Jito's tip floor (``upstreams.jito.tip_floor_url``): a rate-limit key of its own."""
        jito = self.cfg.upstreams.jito
        return JobSpec(
            JitoTipFloor(url=jito.tip_floor_url), upstream="jito_tip_floor", timeout=jito.timeout_ms / 1000, task="fees"
        )

    # --- landing --------------------------------------------------------------------

    def send_bundle(self, ep: Endpoint, transactions: list[bytes], bundle_id: str) -> JobSpec:
        """Re-broadcasting the same signed bytes is safe, so the job is idempotent.

        Hashed on (region, bundle): a re-send of this bundle to this region ranks the IPs the
        same way, while other bundles spread over every IP's budget for the region.
        """
        assert ep.url is not None
        return JobSpec(
            JitoSendBundle(base_url=ep.url, transactions=transactions, secret=ep.secret),
            upstream=ep.upstream,
            timeout=self.cfg.upstreams.jito.timeout_ms / 1000,
            hash_key=f"{ep.label}|{bundle_id}",
            task="lander",
        )

    def inflight_bundle_statuses(self, ep: Endpoint, bundle_ids: list[str]) -> JobSpec:
        """``getInflightBundleStatuses`` for at most 5 ids: Pending, Landed, Failed, or Invalid (dropped)."""
        assert ep.url is not None and 0 < len(bundle_ids) <= MAX_BUNDLE_IDS
        return JobSpec(
            JitoInflightStatuses(base_url=ep.url, bundle_ids=bundle_ids, secret=ep.secret),
            upstream=ep.upstream,
            timeout=self.cfg.upstreams.jito.timeout_ms / 1000,
            hash_key=f"{ep.label}|{bundle_ids[0]}",
            task="follow",
        )

    def send_transaction(self, ep: Endpoint, transaction: bytes, signature: str) -> JobSpec:
        """Hashed on (endpoint, signature), like bundles: re-sends stay on one IP, sends spread."""
        return JobSpec(
            RpcSendTransaction(
                transaction=transaction, url=ep.url, url_env=ep.url_env, skip_preflight=True, max_retries=0
            ),
            upstream=ep.upstream,
            timeout=self._rpc_timeout(),
            hash_key=f"{ep.label}|{signature}",
            task="lander",
        )
