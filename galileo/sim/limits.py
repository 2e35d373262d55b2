"""Which limiter and which latency answer each service bucket, and whose budget a request spends.

A request to bucket ``jito:ny`` takes the first target set among ``jito:ny``, ``jito`` and
``all`` (then the ``rate_limit`` / ``latency_ms`` shorthands). One limiter (or one stack of
them, ``A & B``) serves one (target, service) pair, so ``all`` still gives every service a budget
of its own and ``jito`` serves every region that has no target of its own. Reconfiguring keeps every limiter whose spec
did not change, with its state.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

from aiohttp import web

from galileo.sim.config import ALL, NO_LIMIT, SimConfig
from galileo.sim.latency import LatencyModel, LatencySpec, parse_latency
from galileo.sim.limiter import Limiter, build
from galileo.sim.limitspec import LimiterSpec, default_scope, parse_limiters

__all__ = ["Route", "ServiceLimits", "api_key_of", "budget_key"]

SHORTHAND = "rate_limit"  # the target name of the --rate-limit / --latency-ms shorthands
_MAX_ROUTES = 4096  # regions come from the URL: bound the cache


class Route:
    """What one bucket resolves to: its service and region, its limiters (every one must admit a
    request, in order; none: unlimited) and latency (or None)."""

    __slots__ = ("label", "latency", "limiters", "region", "service")

    def __init__(
        self, service: str, region: str, label: str, limiters: tuple[Limiter, ...], latency: LatencyModel | None
    ) -> None:
        self.service = service
        self.region = region
        self.label = label
        self.limiters = limiters
        self.latency = latency


def api_key_of(request: web.BaseRequest, service: str) -> str:
    """The API key a request carries in ``service``'s documented place ("" without one)."""
    headers, query = request.headers, request.query
    if service == "jito":
        return headers.get("x-jito-auth") or query.get("uuid", "")
    if service in ("rpc", "staked"):
        return headers.get("x-api-key") or query.get("api-key", "")
    if service == "titan":
        auth = headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else query.get("auth", "")
    return headers.get("x-api-key", "")


def budget_key(limiter: Limiter, route: Route, ip: str, request: web.BaseRequest) -> Hashable:
    """Whose budget this request spends under the limiter's scope.

    ``key`` scope: the API key, shared by every IP; a request without one spends its IP's
    budget (the keyless tier).
    """
    scope = limiter.spec.scope
    if scope == "ip":
        return ip
    if scope == "ip+region":
        return (ip, route.region)
    if scope == "global":
        return ""
    key = api_key_of(request, route.service)
    return ("key", key) if key else ("ip", ip)


def _specs(stack: tuple[Limiter, ...]) -> tuple[LimiterSpec, ...]:
    return tuple(lim.spec for lim in stack)


def _label(target: str, service: str) -> str:
    return service if target in (ALL, SHORTHAND) else target


class ServiceLimits:
    """The limiters and latency models of one simulator, resolved per bucket and cached."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._wall_offset = time.time() - time.monotonic()
        self._limiters: dict[tuple[str, str], tuple[Limiter, ...]] = {}
        self._latency: dict[tuple[str, str], LatencyModel] = {}
        self._routes: dict[str, Route] = {}

    def now(self) -> float:
        """The limiters' clock: monotonic, but set to wall-clock time at start, so fixed windows
        reset on whole wall-clock seconds and minutes, as /sim/stats counts them."""
        return time.monotonic() + self._wall_offset

    def configure(self, config: SimConfig) -> None:
        """Apply ``config``: limiters and latency streams whose spec is unchanged live on."""
        self.config = config
        self._routes.clear()
        self._limiters = {
            k: v
            for k, v in self._limiters.items()
            if self._wins(config.limiters, *k) and self._limiter_specs(*k) == _specs(v)
        }
        self._latency = {
            k: v
            for k, v in self._latency.items()
            if self._wins(config.latency, *k) and self._latency_spec(*k) == v.spec
        }

    @staticmethod
    def _wins(table: dict[str, str], target: str, service: str) -> bool:
        """Whether ``target`` still serves ``service`` (no more specific target took over)."""
        if target == SHORTHAND:
            return service not in table and ALL not in table
        return target != ALL or service not in table

    def reset(self) -> None:
        """Forget every limiter's state: every caller starts with a fresh budget."""
        self._limiters.clear()
        self._routes.clear()

    def route(self, bucket: str) -> Route:
        """The Route of ``bucket`` (``jupiter``, ``jito:ny``, ``tip_floor`` ...)."""
        route = self._routes.get(bucket)
        if route is None:
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()
            route = self._routes[bucket] = self._resolve(bucket)
        return route

    def _target(self, table: dict[str, str], bucket: str, service: str) -> str | None:
        for target in (bucket, service, ALL):
            if target in table:
                return target
        return None

    def _limiter_specs(self, target: str, service: str) -> tuple[LimiterSpec, ...]:
        if target == SHORTHAND:
            rate = self.config.rate_limit
            if rate is None:
                return ()
            return (LimiterSpec("bucket", rate, 1.0, self.config.burst_seconds, scope=default_scope(service)),)
        text = self.config.limiters.get(target)
        if text is None or text.strip() == NO_LIMIT:
            return ()
        return parse_limiters(text, target if target != ALL else service)

    def _latency_spec(self, target: str, service: str) -> LatencySpec | None:
        if target == SHORTHAND:
            return LatencySpec(self.config.latency_ms) if self.config.latency_ms > 0 else None
        text = self.config.latency.get(target)
        return parse_latency(text) if text is not None else None

    def _resolve(self, bucket: str) -> Route:
        service, _, region = bucket.partition(":")
        target = self._target(self.config.limiters, bucket, service) or SHORTHAND
        limiters = self._limiters.get((target, service), ())
        specs = self._limiter_specs(target, service)
        if _specs(limiters) != specs:
            limiters = self._limiters[(target, service)] = tuple(build(spec) for spec in specs)
        lat_target = self._target(self.config.latency, bucket, service) or SHORTHAND
        latency = self._latency.get((lat_target, service))
        lat_spec = self._latency_spec(lat_target, service)
        if lat_spec is None:
            latency = None
        elif latency is None or latency.spec != lat_spec:
            stream = f"{lat_target}/{service}"
            latency = self._latency[(lat_target, service)] = LatencyModel(lat_spec, self.config.seed, stream)
        return Route(service, region, _label(target, service), limiters, latency)

    def describe(self) -> dict[str, Any]:
        """The limiters holding state now: spec (a stack's joined with &), keys held, keys evicted (for
        /sim/stats; a stack's summed over its limits)."""
        return {
            _label(target, service): {
                "spec": " & ".join(str(lim.spec) for lim in stack),
                "keys": sum(len(lim) for lim in stack),
                "evicted": sum(lim.evicted for lim in stack),
            }
            for (target, service), stack in sorted(self._limiters.items())
            if stack
        }
