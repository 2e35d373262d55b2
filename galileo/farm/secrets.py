"""The secrets a config gives its workers: each ``*_env`` of ``upstreams`` and where it may go.

Local workers get this policy from the coordinator's config when they are forked; workers
joined from another host get it from that host's config. A job cannot widen it (see
:mod:`workers.secrets`).
"""

from __future__ import annotations

from galileo.config import GalileoConfig
from workers.secrets import SecretPolicy, origin

__all__ = ["worker_secrets"]


def worker_secrets(cfg: GalileoConfig) -> SecretPolicy:
    """Env var -> origins of the upstreams configured with it; RPC URL env vars."""
    up = cfg.upstreams
    pairs: list[tuple[str | None, list[str]]] = [
        (up.jupiter.api_key_env, [up.jupiter.base_url]),
        (up.dflow.api_key_env, [up.dflow.base_url]),
        (up.ultra.api_key_env, [up.ultra.base_url]),
        (up.jito.uuid_env, list(up.jito.endpoints)),
        *((env, [up.titan.ws_url]) for env in up.titan.tokens()),
    ]
    headers: dict[str, list[str]] = {}
    for env, urls in pairs:
        if not env:
            continue
        allowed = headers.setdefault(env, [])
        for url in urls:
            o = origin(url)
            if o is not None and o not in allowed:
                allowed.append(o)
    url_envs = sorted({*up.rpc.url_envs, *up.staked.url_envs})
    return SecretPolicy(headers={k: sorted(v) for k, v in sorted(headers.items())}, url_envs=url_envs)
