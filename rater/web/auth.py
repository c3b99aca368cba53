"""Bearer-token authentication and authorization for the HTTP API (SPEC §7, §10).

Pure logic, no HTTP framework: the web layer calls `TokenVerifier.authenticate`
with the raw `Authorization` header, gets a `Principal` (or an `ApiError`
carrying the HTTP status, error code and a detail safe to send back), then asks
the principal for a scope (`require_scope`) or for a role on the billing account
of the subscription it is about to touch (`require_role`).

Security choices:

* Only the configured algorithm is accepted (`algorithms=[that one]`), so
  `alg: none` and RS256/HS256 key confusion are rejected before any signature
  check.
* `exp`, `iss`, `aud` and `sub` are required; issuer and audience must match.
* The verification key is parsed when the verifier is built (`rater.jwt_key`, the
  same check `Settings.validate` makes).
* A verified token is remembered, keyed by the exact token text, until its own
  `exp` (plus leeway): an authorizer sends the same token on every call, and
  PyJWT's checks were the largest single cost of `POST /v1/authorize`. Only a
  caller holding that very token gets its principal back, so nothing leaks from one
  caller to another; a failed verification is never remembered.
* Error details are fixed strings: they never echo the token or its claims.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Protocol

import jwt
from jwt import exceptions as jwt_errors
from jwt.types import Options

from rater.jwt_key import VerificationKey, load_verification_key
from rater.web.errors import ApiError

OWNER: Final = "owner"
CONTRIBUTOR: Final = "contributor"
READER: Final = "reader"
ALL_ROLES: Final[frozenset[str]] = frozenset((OWNER, CONTRIBUTOR, READER))
READ_ROLES: Final[tuple[str, ...]] = (OWNER, CONTRIBUTOR, READER)
WRITE_ROLES: Final[tuple[str, ...]] = (OWNER, CONTRIBUTOR)

CALL_AUTHORIZER: Final = "call_authorizer"

SUPPORTED_ALGORITHMS: Final[tuple[str, ...]] = ("RS256", "HS256")
DEFAULT_LEEWAY_S: Final = 30.0
# A bearer token larger than this is refused before any parsing (cheap DoS guard).
MAX_TOKEN_CHARS: Final = 8192
REQUIRED_CLAIMS: Final[tuple[str, ...]] = ("exp", "iss", "aud", "sub")
VERIFIED_TOKENS_KEPT: Final = 10_000


class JwtSettings(Protocol):
    """The JWT part of `rater.config.Settings` (structural, so this module stays standalone)."""

    @property
    def jwt_algorithm(self) -> str: ...
    @property
    def jwt_key(self) -> str | None: ...
    @property
    def jwt_issuer(self) -> str | None: ...
    @property
    def jwt_audience(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller: its `sub`, its roles per billing account, its scopes."""

    subject: str
    roles: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    scopes: frozenset[str] = frozenset()
    expires_at: int | None = None  # the token's `exp` (epoch s): a console session ends then

    def role_on(self, billing_account_id: str) -> str | None:
        """The caller's role on that billing account, or None."""
        return self.roles.get(billing_account_id)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def require_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            raise ApiError.forbidden(f"token lacks the required scope {scope!r}")

    def require_role(self, billing_account_id: str, allowed: Collection[str]) -> str:
        """Return the caller's role on the account if it is one of `allowed`, else 403."""
        role = self.roles.get(billing_account_id)
        if role is None:
            raise ApiError.forbidden("token grants no role on this billing account")
        if role not in allowed:
            raise ApiError.forbidden(
                f"role {role!r} may not do this; requires one of: {', '.join(sorted(allowed))}"
            )
        return role


class TokenVerifier:
    """Verifies `Authorization: Bearer <jwt>` headers against one configured key."""

    __slots__ = ("_algorithm", "_audience", "_clock", "_decoder", "_issuer", "_key", "_leeway",
                 "_options", "_verified")

    def __init__(
        self,
        algorithm: str = "RS256",
        key: str | bytes | None = None,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: float = DEFAULT_LEEWAY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
        self._algorithm = algorithm
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._clock = clock
        # token -> (principal, usable from, usable until): PyJWT's own time rules, kept
        self._verified: dict[str, tuple[Principal, float, float]] = {}
        self._key: VerificationKey | None = None
        if key is not None:
            if not issuer or not audience:
                raise ValueError("a JWT issuer and audience are required when a key is set")
            self._key = load_verification_key(algorithm, key)
        self._decoder = jwt.PyJWT()
        self._options: Options = {
            "verify_signature": True,
            "require": list(REQUIRED_CLAIMS),
            "verify_exp": True,
            "verify_nbf": True,
            "verify_iat": True,
            "verify_iss": True,
            "verify_aud": True,
            "verify_sub": True,
            "verify_jti": True,
            "strict_aud": False,
        }

    @classmethod
    def from_settings(
        cls, settings: JwtSettings, *, leeway_s: float = DEFAULT_LEEWAY_S
    ) -> TokenVerifier:
        return cls(
            settings.jwt_algorithm,
            settings.jwt_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_s=leeway_s,
        )

    @property
    def configured(self) -> bool:
        return self._key is not None

    @property
    def algorithm(self) -> str:
        return self._algorithm

    def authenticate(self, authorization_header: str | None) -> Principal:
        """The principal of a valid bearer token; ApiError 401/503 otherwise."""
        key = self._key
        if key is None:
            raise ApiError.not_configured()
        token = _bearer_token(authorization_header)
        now = self._clock()
        known = self._verified.get(token)
        if known is not None:
            principal, usable_from, usable_until = known
            if usable_from <= now < usable_until:
                return principal
            del self._verified[token]
        claims = self._decode(token, key)
        principal = _principal_from_claims(claims)
        self._remember(token, principal, claims)
        return principal

    def _remember(self, token: str, principal: Principal, claims: Mapping[str, Any]) -> None:
        """As PyJWT decides: expired once `exp <= now - leeway`; immature while `nbf` or
        `iat` > now + leeway (all three already checked to be integers)."""
        leeway = self._leeway
        usable_until = int(claims["exp"]) + leeway
        usable_from = max((int(claims[name]) for name in ("nbf", "iat") if name in claims),
                          default=float("-inf")) - leeway
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = (principal, usable_from, usable_until)

    def _decode(self, token: str, key: VerificationKey) -> dict[str, Any]:
        try:
            return self._decoder.decode(
                token,
                key,
                algorithms=[self._algorithm],
                options=self._options,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
            )
        except jwt_errors.ExpiredSignatureError:
            raise ApiError.unauthorized("token expired") from None
        except jwt_errors.ImmatureSignatureError:
            raise ApiError.unauthorized("token not yet valid") from None
        except jwt_errors.InvalidSignatureError:
            raise ApiError.unauthorized("bad signature") from None
        except jwt_errors.InvalidAlgorithmError:
            raise ApiError.unauthorized("token algorithm not accepted") from None
        except jwt_errors.InvalidIssuerError:
            raise ApiError.unauthorized("wrong issuer") from None
        except jwt_errors.InvalidAudienceError:
            raise ApiError.unauthorized("wrong audience") from None
        except jwt_errors.MissingRequiredClaimError as exc:
            # exc.claim is one of REQUIRED_CLAIMS, never caller-controlled text.
            raise ApiError.unauthorized(f"missing claim {exc.claim}") from None
        except (
            jwt_errors.InvalidSubjectError,
            jwt_errors.InvalidIssuedAtError,
            jwt_errors.InvalidJTIError,
        ):
            raise ApiError.unauthorized("malformed claims") from None
        except jwt_errors.DecodeError:
            raise ApiError.unauthorized("malformed token") from None
        except jwt_errors.PyJWTError:
            raise ApiError.unauthorized("invalid token") from None
        except (ValueError, TypeError, OverflowError, RecursionError):
            raise ApiError.unauthorized("malformed token") from None


def _bearer_token(header: str | None) -> str:
    if header is None or not header.strip():
        raise ApiError.unauthorized("missing bearer token")
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise ApiError.unauthorized("authorization scheme must be Bearer")
    token = rest.strip()
    if not token:
        raise ApiError.unauthorized("missing bearer token")
    if len(token) > MAX_TOKEN_CHARS:
        raise ApiError.unauthorized("token too large")
    if any(c.isspace() for c in token) or token.count(".") != 2:
        raise ApiError.unauthorized("malformed token")
    return token


def _principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise ApiError.unauthorized("malformed claims")

    raw_roles = claims.get("roles")
    roles: dict[str, str] = {}
    if raw_roles is not None:
        if not isinstance(raw_roles, dict):
            raise ApiError.unauthorized("malformed claims")
        for account, role in raw_roles.items():
            if not isinstance(account, str) or not account:
                raise ApiError.unauthorized("malformed claims")
            if not isinstance(role, str) or role not in ALL_ROLES:
                raise ApiError.unauthorized("malformed claims")
            roles[account] = role

    raw_scope = claims.get("scope")
    scopes: frozenset[str] = frozenset()
    if raw_scope is not None:
        if not isinstance(raw_scope, str):
            raise ApiError.unauthorized("malformed claims")
        scopes = frozenset(raw_scope.split())

    return Principal(subject=subject, roles=MappingProxyType(roles), scopes=scopes,
                     expires_at=int(claims["exp"]))
