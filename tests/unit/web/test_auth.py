"""Bearer-token authentication and authorization (SPEC §7, §10): rater.web.auth."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
import pytest

from rater.config import Settings
from rater.web.auth import (
    CALL_AUTHORIZER,
    READ_ROLES,
    WRITE_ROLES,
    Principal,
    TokenVerifier,
)
from rater.web.errors import ApiError
from rater.web.tokens import generate_rsa_keypair, issue_token

ISSUER = "https://idp.example.test/"
AUDIENCE = "rater-api"
HS_SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret-0123456789"
OTHER_HS_SECRET = "another-secret-another-secret-another-secret!!"
ACCOUNT_A = "ba-aaaa"
ACCOUNT_B = "ba-bbbb"

_RSA = generate_rsa_keypair()
_OTHER_RSA = generate_rsa_keypair()


@dataclass
class Setup:
    algorithm: str
    settings: Settings
    verifier: TokenVerifier
    signing_key: str
    other_signing_key: str

    def mint(self, **kw: Any) -> str:
        kw.setdefault("subject", "alice@example.test")
        kw.setdefault("issuer", ISSUER)
        kw.setdefault("audience", AUDIENCE)
        kw.setdefault("algorithm", self.algorithm)
        key = kw.pop("key", self.signing_key)
        return issue_token(key, **kw)

    def sign_claims(self, claims: dict[str, Any]) -> str:
        """Sign arbitrary claims, bypassing issue_token's own checks."""
        return jwt.encode(claims, self.signing_key, algorithm=self.algorithm)

    def auth(self, token: str) -> Principal:
        return self.verifier.authenticate(f"Bearer {token}")


@pytest.fixture(params=["HS256", "RS256"])
def setup(request: pytest.FixtureRequest) -> Setup:
    if request.param == "HS256":
        key, signing, other = HS_SECRET, HS_SECRET, OTHER_HS_SECRET
    else:
        key, signing, other = _RSA[1], _RSA[0], _OTHER_RSA[0]
    settings = Settings(
        jwt_algorithm=request.param, jwt_key=key, jwt_issuer=ISSUER, jwt_audience=AUDIENCE
    )
    settings.validate()
    return Setup(request.param, settings, TokenVerifier.from_settings(settings), signing, other)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "mallory",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "roles": {ACCOUNT_A: "owner"},
        "scope": CALL_AUTHORIZER,
    }
    claims.update(extra)
    return claims


def _assert_401(exc: pytest.ExceptionInfo[ApiError], detail: str | None = None) -> None:
    assert exc.value.status == 401
    assert exc.value.error == "unauthorized"
    if detail is not None:
        assert exc.value.detail == detail


# --- valid tokens ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "contributor", "reader"])
def test_valid_token_yields_principal_with_role(setup: Setup, role: str) -> None:
    principal = setup.auth(setup.mint(subject="bob", roles={ACCOUNT_A: role}))
    assert principal.subject == "bob"
    assert principal.role_on(ACCOUNT_A) == role
    assert principal.role_on(ACCOUNT_B) is None
    assert principal.require_role(ACCOUNT_A, READ_ROLES) == role
    assert principal.scopes == frozenset()


@pytest.mark.parametrize("role", ["owner", "contributor"])
def test_owner_and_contributor_may_write(setup: Setup, role: str) -> None:
    principal = setup.auth(setup.mint(roles={ACCOUNT_A: role}))
    assert principal.require_role(ACCOUNT_A, WRITE_ROLES) == role


def test_token_minted_from_settings_is_accepted(setup: Setup) -> None:
    private = None if setup.algorithm == "HS256" else setup.signing_key
    token = issue_token(
        setup.settings, subject="ops", roles={ACCOUNT_A: "reader"}, private_key=private
    )
    assert setup.auth(token).role_on(ACCOUNT_A) == "reader"


def test_scheme_is_case_insensitive_and_whitespace_tolerant(setup: Setup) -> None:
    token = setup.mint(scope=CALL_AUTHORIZER)
    assert setup.verifier.authenticate(f"  bearer   {token}  ").subject == "alice@example.test"


def test_audience_list_containing_ours_is_accepted(setup: Setup) -> None:
    token = setup.mint(audience=["other-api", AUDIENCE])
    assert setup.auth(token).subject == "alice@example.test"


def test_expired_within_leeway_is_accepted(setup: Setup) -> None:
    assert setup.auth(setup.mint(expires_in=-5)).subject == "alice@example.test"


def test_principal_roles_are_read_only(setup: Setup) -> None:
    principal = setup.auth(setup.mint(roles={ACCOUNT_A: "reader"}))
    with pytest.raises(TypeError):
        principal.roles[ACCOUNT_A] = "owner"  # type: ignore[index]


# --- 401: token problems ----------------------------------------------------------------


def test_expired_token_is_401(setup: Setup) -> None:
    with pytest.raises(ApiError) as exc:
        setup.auth(setup.mint(expires_in=-120))
    _assert_401(exc, "token expired")


def test_not_yet_valid_token_is_401(setup: Setup) -> None:
    with pytest.raises(ApiError) as exc:
        setup.auth(setup.mint(not_before_in=300))
    _assert_401(exc, "token not yet valid")


def test_nbf_within_leeway_is_accepted(setup: Setup) -> None:
    assert setup.auth(setup.mint(not_before_in=10)).subject == "alice@example.test"


def test_wrong_signature_is_401(setup: Setup) -> None:
    with pytest.raises(ApiError) as exc:
        setup.auth(setup.mint(key=setup.other_signing_key))
    _assert_401(exc, "bad signature")


def test_tampered_payload_is_401(setup: Setup) -> None:
    header, _, signature = setup.mint(roles={ACCOUNT_A: "reader"}).split(".")
    forged = _b64(json.dumps(_claims(roles={ACCOUNT_A: "owner"})).encode())
    with pytest.raises(ApiError) as exc:
        setup.auth(f"{header}.{forged}.{signature}")
    _assert_401(exc, "bad signature")


def test_wrong_issuer_is_401(setup: Setup) -> None:
    with pytest.raises(ApiError) as exc:
        setup.auth(setup.mint(issuer="https://evil.example.test/"))
    _assert_401(exc, "wrong issuer")


def test_wrong_audience_is_401(setup: Setup) -> None:
    with pytest.raises(ApiError) as exc:
        setup.auth(setup.mint(audience="some-other-api"))
    _assert_401(exc, "wrong audience")


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "sub"])
def test_missing_required_claim_is_401(setup: Setup, claim: str) -> None:
    claims = _claims()
    del claims[claim]
    with pytest.raises(ApiError) as exc:
        setup.auth(setup.sign_claims(claims))
    _assert_401(exc, f"missing claim {claim}")


@pytest.mark.parametrize("claim", ["exp", "sub"])
def test_null_required_claim_is_401(setup: Setup, claim: str) -> None:
    with pytest.raises(ApiError) as exc:
        setup.auth(setup.sign_claims(_claims(**{claim: None})))
    _assert_401(exc, f"missing claim {claim}")


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_non_numeric_time_claim_is_401(setup: Setup, claim: str) -> None:
    with pytest.raises(ApiError) as exc:
        setup.auth(setup.sign_claims(_claims(**{claim: "soon"})))
    _assert_401(exc)


@pytest.mark.parametrize(
    "header",
    [{"alg": "none"}, {"alg": "none", "typ": "JWT"}, {"alg": "None"}, {"alg": ""}, {"typ": "JWT"}],
)
def test_alg_none_is_401(setup: Setup, header: dict[str, str]) -> None:
    token = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims()).encode())}."
    with pytest.raises(ApiError) as exc:
        setup.auth(token)
    _assert_401(exc, "token algorithm not accepted")


def test_hs256_signed_with_rs_public_key_is_401_on_rs256_verifier() -> None:
    """Algorithm confusion: the attacker knows the public PEM and uses it as an HMAC secret."""
    public_pem = _RSA[1]
    verifier = TokenVerifier("RS256", public_pem, issuer=ISSUER, audience=AUDIENCE)
    signing_input = (
        f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}."
        f"{_b64(json.dumps(_claims()).encode())}"
    )
    for secret in (public_pem, public_pem.strip()):
        mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
        with pytest.raises(ApiError) as exc:
            verifier.authenticate(f"Bearer {signing_input}.{_b64(mac)}")
        _assert_401(exc, "token algorithm not accepted")


def test_rs256_token_on_hs256_verifier_is_401() -> None:
    verifier = TokenVerifier("HS256", HS_SECRET, issuer=ISSUER, audience=AUDIENCE)
    token = issue_token(_RSA[0], subject="x", issuer=ISSUER, audience=AUDIENCE, algorithm="RS256")
    with pytest.raises(ApiError) as exc:
        verifier.authenticate(f"Bearer {token}")
    _assert_401(exc, "token algorithm not accepted")


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("   ", "missing bearer token"),
        ("Bearer", "missing bearer token"),
        ("Bearer    ", "missing bearer token"),
        ("Basic YWxpY2U6cGFzc3dvcmQ=", "authorization scheme must be Bearer"),
        ("Token abc.def.ghi", "authorization scheme must be Bearer"),
        ("Bearer garbage", "malformed token"),
        ("Bearer a.b", "malformed token"),
        ("Bearer a.b.c.d", "malformed token"),
        ("Bearer a.b.c", "malformed token"),
        ("Bearer !!!.???.***", "malformed token"),
        ("Bearer aaa.bbb ccc.ddd", "malformed token"),
        ("Bearer " + "a" * 9000 + ".b.c", "token too large"),
    ],
)
def test_bad_authorization_header_is_401(setup: Setup, header: str | None, detail: str) -> None:
    with pytest.raises(ApiError) as exc:
        setup.verifier.authenticate(header)
    _assert_401(exc, detail)


def test_non_json_payload_is_401(setup: Setup) -> None:
    header, _, _ = setup.mint().split(".")
    with pytest.raises(ApiError) as exc:
        setup.auth(f"{header}.{_b64(b'not json')}.{_b64(b'sig')}")
    _assert_401(exc)


@pytest.mark.parametrize(
    "extra",
    [
        {"roles": ["owner"]},
        {"roles": "owner"},
        {"roles": {ACCOUNT_A: "admin"}},
        {"roles": {ACCOUNT_A: ["owner"]}},
        {"roles": {ACCOUNT_A: None}},
        {"roles": {"": "owner"}},
        {"scope": ["call_authorizer"]},
        {"scope": 42},
        {"sub": 42},
        {"sub": ""},
    ],
)
def test_malformed_claims_are_401(setup: Setup, extra: dict[str, Any]) -> None:
    token = setup.mint(extra_claims=extra)
    with pytest.raises(ApiError) as exc:
        setup.auth(token)
    _assert_401(exc, "malformed claims")


def test_detail_never_echoes_the_token(setup: Setup) -> None:
    token = setup.mint(issuer="https://evil.example.test/", subject="secret-subject")
    with pytest.raises(ApiError) as exc:
        setup.auth(token)
    assert exc.value.status == 401
    assert exc.value.error == "unauthorized"
    for text in (exc.value.detail, str(exc.value)):
        assert token not in text
        assert "evil" not in text
        assert "secret-subject" not in text


# --- 403: valid token, not allowed ------------------------------------------------------


def test_roles_on_one_account_give_nothing_on_another(setup: Setup) -> None:
    principal = setup.auth(setup.mint(roles={ACCOUNT_A: "owner"}))
    for allowed in (READ_ROLES, WRITE_ROLES):
        with pytest.raises(ApiError) as exc:
            principal.require_role(ACCOUNT_B, allowed)
        assert exc.value.status == 403
        assert exc.value.error == "forbidden"


def test_reader_cannot_write(setup: Setup) -> None:
    principal = setup.auth(setup.mint(roles={ACCOUNT_A: "reader"}))
    assert principal.require_role(ACCOUNT_A, READ_ROLES) == "reader"
    with pytest.raises(ApiError) as exc:
        principal.require_role(ACCOUNT_A, WRITE_ROLES)
    assert exc.value.status == 403
    assert exc.value.error == "forbidden"


def test_token_without_roles_has_no_access(setup: Setup) -> None:
    principal = setup.auth(setup.mint(scope=CALL_AUTHORIZER))
    assert principal.roles == {}
    with pytest.raises(ApiError) as exc:
        principal.require_role(ACCOUNT_A, READ_ROLES)
    assert exc.value.status == 403
    assert exc.value.error == "forbidden"


def test_scope_present_passes(setup: Setup) -> None:
    principal = setup.auth(setup.mint(scope=f"openid {CALL_AUTHORIZER} profile"))
    principal.require_scope(CALL_AUTHORIZER)
    assert principal.has_scope("openid")
    assert principal.scopes == frozenset({"openid", CALL_AUTHORIZER, "profile"})


@pytest.mark.parametrize("scope", [None, "", "openid profile", "call_authorizer_x"])
def test_scope_missing_is_403(setup: Setup, scope: str | None) -> None:
    principal = setup.auth(setup.mint(scope=scope, roles={ACCOUNT_A: "owner"}))
    with pytest.raises(ApiError) as exc:
        principal.require_scope(CALL_AUTHORIZER)
    assert exc.value.status == 403
    assert exc.value.error == "forbidden"


def test_owner_role_does_not_imply_scope(setup: Setup) -> None:
    principal = setup.auth(setup.mint(roles={ACCOUNT_A: "owner"}))
    with pytest.raises(ApiError) as exc:
        principal.require_scope(CALL_AUTHORIZER)
    assert exc.value.status == 403
    assert exc.value.error == "forbidden"


def test_separate_principals_do_not_share_state(setup: Setup) -> None:
    first = setup.auth(setup.mint(subject="a", roles={ACCOUNT_A: "owner"}))
    second = setup.auth(setup.mint(subject="b", roles={ACCOUNT_B: "reader"}))
    assert first.role_on(ACCOUNT_B) is None
    assert second.role_on(ACCOUNT_A) is None
    with pytest.raises(ApiError) as exc:
        second.require_role(ACCOUNT_A, READ_ROLES)
    assert (exc.value.status, exc.value.error) == (403, "forbidden")


# --- 503: not configured ----------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer abc.def.ghi", "Basic x"])
def test_not_configured_is_503(header: str | None) -> None:
    verifier = TokenVerifier.from_settings(Settings())
    assert verifier.configured is False
    with pytest.raises(ApiError) as exc:
        verifier.authenticate(header)
    assert exc.value.status == 503
    assert exc.value.error == "auth_not_configured"
    assert exc.value.to_body() == {"error": "auth_not_configured", "detail": exc.value.detail}


def test_configured_flag(setup: Setup) -> None:
    assert setup.verifier.configured is True
    assert setup.verifier.algorithm == setup.algorithm


# --- construction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "key"),
    [
        ("RS256", "not a pem"),
        ("RS256", HS_SECRET),
        ("HS256", "short"),
        ("HS256", _RSA[1]),
        ("ES256", HS_SECRET),
    ],
)
def test_unusable_key_fails_at_construction(algorithm: str, key: str) -> None:
    with pytest.raises(ValueError):
        TokenVerifier(algorithm, key, issuer=ISSUER, audience=AUDIENCE)


def test_key_without_issuer_or_audience_fails_at_construction() -> None:
    with pytest.raises(ValueError):
        TokenVerifier("HS256", HS_SECRET, issuer=None, audience=AUDIENCE)
    with pytest.raises(ValueError):
        TokenVerifier("HS256", HS_SECRET, issuer=ISSUER, audience=None)


def test_www_authenticate_hint() -> None:
    assert ApiError.unauthorized("x").www_authenticate is not None
    assert ApiError.forbidden("x").www_authenticate is not None
    assert ApiError.not_configured().www_authenticate is None


# --- tokens helper ----------------------------------------------------------------------


def test_issue_token_rejects_unknown_role() -> None:
    with pytest.raises(ValueError):
        issue_token(
            HS_SECRET,
            subject="x",
            roles={ACCOUNT_A: "admin"},
            issuer=ISSUER,
            audience=AUDIENCE,
            algorithm="HS256",
        )


def test_issue_token_rs256_from_settings_needs_private_key() -> None:
    settings = Settings(
        jwt_algorithm="RS256", jwt_key=_RSA[1], jwt_issuer=ISSUER, jwt_audience=AUDIENCE
    )
    with pytest.raises(ValueError):
        issue_token(settings, subject="x")


def test_issue_token_scope_iterable_and_headers(setup: Setup) -> None:
    token = setup.mint(scope=["a", CALL_AUTHORIZER], extra_headers={"kid": "k1"})
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["kid"] == "k1"
    assert setup.auth(token).scopes == frozenset({"a", CALL_AUTHORIZER})


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _counting_verifier(monkeypatch: pytest.MonkeyPatch, clock: FakeClock,
                       leeway_s: float = 30.0) -> tuple[TokenVerifier, list[str]]:
    """A verifier whose every PyJWT verification is recorded (the token it verified)."""
    verifier = TokenVerifier("HS256", HS_SECRET, issuer=ISSUER, audience=AUDIENCE,
                             leeway_s=leeway_s, clock=clock)
    decoded: list[str] = []
    decode = TokenVerifier._decode

    def counting(self: TokenVerifier, token: str, key: Any) -> dict[str, Any]:
        decoded.append(token)
        return decode(self, token, key)

    monkeypatch.setattr(TokenVerifier, "_decode", counting)
    return verifier, decoded


def test_a_verified_token_is_remembered_until_its_exp_plus_leeway(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    verifier, decoded = _counting_verifier(monkeypatch, clock, leeway_s=30.0)
    token = issue_token(HS_SECRET, subject="authz", scope=CALL_AUTHORIZER, issuer=ISSUER,
                        audience=AUDIENCE, algorithm="HS256", expires_in=60)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    first = verifier.authenticate(f"Bearer {token}")
    for _ in range(5):
        assert verifier.authenticate(f"Bearer {token}") == first
    assert decoded == [token]
    clock.now = exp + 30 - 0.001  # still inside PyJWT's own window
    verifier.authenticate(f"Bearer {token}")
    assert decoded == [token]
    clock.now = exp + 30  # PyJWT would call it expired now: verified afresh
    verifier.authenticate(f"Bearer {token}")
    assert decoded == [token, token]


def test_a_remembered_token_is_not_served_before_its_nbf(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    verifier, decoded = _counting_verifier(monkeypatch, clock, leeway_s=0.0)
    token = issue_token(HS_SECRET, subject="authz", issuer=ISSUER, audience=AUDIENCE,
                        algorithm="HS256")
    verifier.authenticate(f"Bearer {token}")
    clock.now -= 3600  # the clock stepped back before the token's iat
    verifier.authenticate(f"Bearer {token}")
    assert decoded == [token, token]


def test_failures_are_never_remembered_and_near_misses_are_not_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    verifier, decoded = _counting_verifier(monkeypatch, clock)
    token = issue_token(HS_SECRET, subject="authz", issuer=ISSUER, audience=AUDIENCE,
                        algorithm="HS256")
    verifier.authenticate(f"Bearer {token}")
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    for _ in range(2):
        with pytest.raises(ApiError) as exc:
            verifier.authenticate(f"Bearer {forged}")
        _assert_401(exc)
    assert decoded == [token, forged, forged]


def test_remembered_tokens_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rater.web.auth.VERIFIED_TOKENS_KEPT", 3)
    clock = FakeClock()
    verifier, decoded = _counting_verifier(monkeypatch, clock)
    tokens = [issue_token(HS_SECRET, subject=f"user-{i}", issuer=ISSUER, audience=AUDIENCE,
                          algorithm="HS256") for i in range(5)]
    for token in tokens:
        verifier.authenticate(f"Bearer {token}")
    assert len(verifier._verified) == 3
    verifier.authenticate(f"Bearer {tokens[-1]}")  # kept
    verifier.authenticate(f"Bearer {tokens[0]}")  # evicted first: verified again
    assert decoded == [*tokens, tokens[0]]
