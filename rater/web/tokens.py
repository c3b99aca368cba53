"""Mint bearer tokens for tests and local operation (`rater token ...`).

Not used by the worker itself: a production deployment receives tokens from
its identity provider. This helper signs tokens that the worker's
`TokenVerifier` (rater.web.auth) accepts, with the same claim shapes (SPEC §7).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rater.web.auth import ALL_ROLES, SUPPORTED_ALGORITHMS, JwtSettings


def generate_rsa_keypair(bits: int = 2048) -> tuple[str, str]:
    """A fresh RSA key pair as PEM text: (PKCS#8 private key, SubjectPublicKeyInfo public key)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = private.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        private.public_key()
        .public_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        .decode("ascii")
    )
    return private_pem, public_pem


def issue_token(
    settings_or_key: JwtSettings | str | bytes,
    *,
    subject: str,
    roles: Mapping[str, str] | None = None,
    scope: str | Iterable[str] | None = None,
    expires_in: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
    algorithm: str | None = None,
    private_key: str | bytes | None = None,
    extra_headers: Mapping[str, Any] | None = None,
    not_before_in: int | None = None,
    extra_claims: Mapping[str, Any] | None = None,
    now: int | None = None,
) -> str:
    """Sign a JWT with `sub`, `iss`, `aud`, `iat`, `exp` (+ `roles`, `scope`, `nbf`).

    `settings_or_key` is either the worker's Settings (algorithm, issuer,
    audience and, for HS256, the secret come from it; RS256 needs
    `private_key`) or the signing key itself (HS256 secret or RS256 private
    PEM), in which case `algorithm`, `issuer` and `audience` are required.
    Explicit keyword arguments win over Settings. A negative `expires_in`
    mints an already-expired token. `extra_claims` are merged last and may
    override anything (tests use it to craft malformed claims).
    """
    signing_key: str | bytes | None
    if isinstance(settings_or_key, (str, bytes)):
        signing_key = settings_or_key
    else:
        settings = settings_or_key
        algorithm = algorithm or settings.jwt_algorithm
        issuer = issuer or settings.jwt_issuer
        audience = audience or settings.jwt_audience
        signing_key = settings.jwt_key if algorithm == "HS256" else None
    if private_key is not None:
        signing_key = private_key
    if algorithm is None:
        raise ValueError("algorithm is required")
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
    if signing_key is None:
        raise ValueError(f"{algorithm} needs a signing key (private_key= for RS256)")
    if not issuer or not audience:
        raise ValueError("issuer and audience are required")
    if not subject:
        raise ValueError("subject must not be empty")

    issued_at = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "sub": subject,
        "iss": issuer,
        "aud": audience,
        "iat": issued_at,
        "exp": issued_at + expires_in,
    }
    if not_before_in is not None:
        claims["nbf"] = issued_at + not_before_in
    if roles:
        for account, role in roles.items():
            if role not in ALL_ROLES:
                raise ValueError(f"role for {account!r} must be one of {sorted(ALL_ROLES)}")
        claims["roles"] = dict(roles)
    if scope is not None:
        claims["scope"] = scope if isinstance(scope, str) else " ".join(scope)
    if extra_claims:
        claims.update(extra_claims)

    return jwt.encode(
        claims,
        signing_key,
        algorithm=algorithm,
        headers=dict(extra_headers) if extra_headers else None,
    )
