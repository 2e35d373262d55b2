"""Titan's tokens in the simulator: which connections one token may hold, and until when.

Titan's API takes a JWT (``Authorization: Bearer`` or ``?auth=``) with the claims ``iss, sub,
aud, exp, iat`` and optionally ``jti``; the server may allow one connection per ``jti``
(reference §4.2). The simulator reads the claims without checking the signature (it is not
an identity provider): a token that is a JWT gives its ``jti`` (the whole token when it has
none) and its ``exp``; any other token stands for itself and never expires.

:func:`mint_token` makes such a token for tests, benchmarks and people (an unsigned JWT).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass

import orjson

__all__ = ["TokenClaims", "claims_of", "fingerprint", "mint_token"]


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What the simulator reads of a token: whose connections it counts, and when it expires."""

    jti: str
    exp: float | None  # unix seconds; None: never


def fingerprint(value: str) -> str:
    """A short, stable name for a token or jti that cannot be turned back into it."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims_of(token: str) -> TokenClaims:
    """The jti and exp of ``token`` (a JWT's claims, or the token itself)."""
    parts = token.split(".")
    if len(parts) == 3:
        try:
            claims = orjson.loads(_unb64url(parts[1]))
        except (ValueError, binascii.Error):
            claims = None
        if isinstance(claims, dict):
            jti = claims.get("jti")
            exp = claims.get("exp")
            return TokenClaims(
                jti=str(jti) if isinstance(jti, str | int) and jti != "" else token,
                exp=float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None,
            )
    return TokenClaims(jti=token, exp=None)


def mint_token(jti: str, ttl: float | None = None, *, sub: str = "galileo-sim", now: float | None = None) -> str:
    """An unsigned JWT with ``jti`` that expires ``ttl`` seconds from now (never when None)."""
    issued = time.time() if now is None else now
    claims: dict[str, object] = {
        "iss": "galileo-sim",
        "sub": sub,
        "aud": "api.titan.ag",
        "iat": int(issued),
        "jti": jti,
    }
    if ttl is not None:
        claims["exp"] = issued + ttl  # a fraction of a second is kept: tests expire tokens in 0.5 s
    header = _b64url(orjson.dumps({"alg": "none", "typ": "JWT"}))
    return f"{header}.{_b64url(orjson.dumps(claims))}."
