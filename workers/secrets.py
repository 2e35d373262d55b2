"""Which secrets a worker may read, and where it may send them: fixed when the worker starts.

A job names its secret by env var (:class:`~broker.jobs.SecretRef`, ``url_env``) and its
destination by URL. Neither is trusted: a coordinator can be impersonated (a swapped socket)
or be wrong. So a worker reads an env var only if it was given that name as a secret at start
(local workers: from the coordinator's config, at fork; joined workers: from their own host's
config), and sends a header secret only to the origins (scheme, host, port) of the upstreams
configured for it. A job asking for anything else ends ``decode_error`` before the variable is
read, with a line naming the variable and the destination.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import msgspec

__all__ = ["SecretPolicy", "origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin(url: str) -> str | None:
    """``scheme://host:port`` of ``url`` (default port filled in, lower case), or None if it has none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if not host or scheme not in _DEFAULT_PORTS:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS[scheme]}"


class SecretPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """The env vars a worker may read, and where each may go. Names and origins only: no secret.

    ``headers`` maps an env var to the origins its value may be sent to (``x-api-key`` and the
    like); ``url_envs`` are env vars that hold a whole RPC URL with its key in it.
    """

    headers: dict[str, list[str]] = msgspec.field(default_factory=dict)
    url_envs: list[str] = msgspec.field(default_factory=list)

    def refusal(self, payload: Any, environ: dict[str, str] | None = None) -> str | None:
        """Why ``payload`` must not run here (it names a secret we may not release), or None."""
        url_env = getattr(payload, "url_env", None)
        if url_env and url_env not in self.url_envs:
            return (
                f"refused: env var {url_env} is not an RPC URL this worker was given at start "
                "(upstreams.rpc/staked.url_envs of its config); it was not read"
            )
        ref = getattr(payload, "secret", None)
        if ref is None:
            return None
        allowed = self.headers.get(ref.env)
        if allowed is None:
            return (
                f"refused: env var {ref.env} is not a secret this worker was given at start "
                "(the *_env keys of its config's upstreams); it was not read"
            )
        target = getattr(payload, "url", None) or getattr(payload, "base_url", None)
        if not target and url_env:
            target = (environ if environ is not None else os.environ).get(url_env)
        dest = origin(target) if isinstance(target, str) else None
        if dest not in allowed:
            shown = dest or "a URL without a host"
            return f"refused: {ref.env} is sent only to {', '.join(allowed) or 'nowhere'}, not to {shown}"
        return None
