"""Jobs for each upstream, built from the config: the one place that knows URLs and upstream keys.

A floor below the strategies and landing: both build their jobs here, and this module
imports neither of them (tests/test_import_direction.py holds it to that).

An *upstream key* names what a rate limit belongs to, so cooldowns and pacing are kept per
(IP, key): ``jupiter``, ``dflow``, ``rpc``, ``staked:<n>``, ``jito:<region>``. Secrets travel
only as :class:`~broker.jobs.SecretRef` (the name of an env var the worker reads).

Landing jobs carry a ``hash_key`` of (endpoint, what is sent): rendezvous hashing then keeps
re-sends of the same bytes on the same IP, while different bundles spread over every IP
(see :mod:`galileo.policy.allocator`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from broker.jobs import (
    DflowQuote,
    DflowSwapInstructions,
    JitoInflightStatuses,
    JitoSendBundle,
    JobPayload,
    JupiterQuote,
    JupiterSwapInstructions,
    RpcGetMultipleAccounts,
    RpcLatestBlockhash,
    RpcSendTransaction,
    RpcSignatureStatuses,
    SecretRef,
    TitanStream,
    UltraOrder,
)
from broker.types import JobSpec
from galileo.config import GalileoConfig
from galileo.config.sections import RpcConfig, UpstreamConfig

__all__ = ["MAX_BUNDLE_IDS", "MAX_SIGNATURES", "Endpoint", "QuoteRequest", "Upstreams"]

MAX_BUNDLE_IDS = 5  # getInflightBundleStatuses / getBundleStatuses take at most 5 ids
MAX_SIGNATURES = 256  # getSignatureStatuses takes at most 256


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
                slippage_bps=blind.slippage_bps,
                dexes=self._dexes,
                exclude_dexes=self._exclude,
                only_direct_routes=blind.only_direct_routes or None,
                max_accounts=blind.max_accounts,
                secret=_secret("x-api-key", up.api_key_env),
            )
        elif provider == "dflow":
            payload = DflowQuote(
                base_url=up.base_url,
                input_mint=req.input_mint,
                output_mint=req.output_mint,
                amount=req.amount,
                slippage_bps=blind.slippage_bps,
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
    ) -> JobSpec:
        provider = provider or self.quote_provider
        up = self._aggregator(provider)
        payload: JobPayload
        if provider == "jupiter":
            payload = JupiterSwapInstructions(
                base_url=up.base_url,
                user_public_key=user,
                quote=quote_raw,
                wrap_and_unwrap_sol=True,
                compute_unit_price_micro_lamports=cu_price,
                secret=_secret("x-api-key", up.api_key_env),
            )
        elif provider == "dflow":
            payload = DflowSwapInstructions(
                base_url=up.base_url,
                user_public_key=user,
                quote=quote_raw,
                wrap_and_unwrap_sol=True,
                compute_unit_price_micro_lamports=cu_price,
                secret=_secret("x-api-key", up.api_key_env),
            )
        else:
            raise ValueError(f"{provider!r} has no swap-instructions endpoint")
        return JobSpec(
            payload, upstream=provider, timeout=up.timeout_ms / 1000, prefer_ip=prefer_ip, task="swap_instructions"
        )

    def ultra_order(self, req: QuoteRequest, taker: str, *, prefer_ip: str | None, task: str) -> JobSpec:
        up = self.cfg.upstreams.ultra
        payload = UltraOrder(
            base_url=up.base_url,
            input_mint=req.input_mint,
            output_mint=req.output_mint,
            amount=req.amount,
            taker=taker,
            slippage_bps=self.cfg.blind_strategy.slippage_bps,
            exclude_dexes=self._exclude,
            secret=_secret("x-api-key", up.api_key_env),
        )
        return JobSpec(payload, upstream="ultra", timeout=up.timeout_ms / 1000, prefer_ip=prefer_ip, task=task)

    def titan_stream(self, req: QuoteRequest, user: str, *, prefer_ip: str | None) -> JobSpec:
        """A long-lived stream job. It holds one credit of its worker, so the IP keeps serving HTTP."""
        t = self.cfg.upstreams.titan
        payload = TitanStream(
            url=t.ws_url,
            input_mint=req.input_mint,
            output_mint=req.output_mint,
            amount=req.amount,
            user_public_key=user,
            duration=t.stream_seconds,
            idle_timeout=t.idle_resubscribe_ms / 1000,
            swap_mode="ExactIn",
            slippage_bps=self.cfg.blind_strategy.slippage_bps,
            dexes=self._dexes or None,
            exclude_dexes=self._exclude or None,
            providers=t.providers or None,
            interval_ms=t.interval_ms,
            num_quotes=t.num_quotes,
            secret=_secret("Authorization", t.token_env, "Bearer "),
        )
        return JobSpec(
            payload,
            upstream="titan",
            timeout=t.stream_seconds + 5.0,
            prefer_ip=prefer_ip,
            idempotent=False,
            task="titan_stream",
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
