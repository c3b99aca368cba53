"""Who may call what (SPEC §7), against a real `rater worker` with an RS256 key.

Every endpoint x every kind of caller answers exactly the status of §7:
401 for a missing, malformed, expired, badly signed, wrong-issuer,
wrong-audience or `alg: none` token; 403 for a valid token without the role on
that subscription's billing account (or without the scope); 404 for an unknown
subscription, but only once the token is valid; 200 otherwise. A second worker
started without `RATER_JWT_KEY` answers 503 `auth_not_configured` on every
protected endpoint and still decides on the stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.builders import attempt_doc, subscription_doc
from tests.integration.api_support import ApiDeployment, Reply, http, safe_anchor_day, unique

pytestmark = pytest.mark.integration

ACCOUNT = unique("ba-matrix")
OTHER_ACCOUNT = unique("ba-other")
SUB = unique("sub-matrix")
OTHER_SUB = unique("sub-other")  # on OTHER_ACCOUNT


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiDeployment]:
    deployment = ApiDeployment(tmp_path_factory.mktemp("matrix")).start()
    try:
        deployment.load_subscriptions([
            subscription_doc(subscription_id=SUB, billing_account_id=ACCOUNT,
                             anchor_day=safe_anchor_day()),
            subscription_doc(subscription_id=OTHER_SUB, billing_account_id=OTHER_ACCOUNT,
                             anchor_day=safe_anchor_day()),
        ])
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="module")
def keyless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiDeployment]:
    """A second worker (own topics) started without RATER_JWT_KEY."""
    deployment = ApiDeployment(tmp_path_factory.mktemp("keyless"), jwt=False).start()
    try:
        yield deployment
    finally:
        deployment.stop()


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: Callable[[str], str]  # subscription id -> path
    body: Callable[[str], Any] | None

    def call(self, base_url: str, subscription_id: str, token: str | None,
             header: str | None = None) -> Reply:
        body = self.body(subscription_id) if self.body else None
        headers = {"Authorization": header} if header is not None else None
        return http(self.method, base_url + self.path(subscription_id), token=token, body=body,
                    headers=headers)


AUTHORIZE = Endpoint("authorize", "POST", lambda sub: "/v1/authorize",
                     lambda sub: attempt_doc(attempt_id=unique("att"), subscription_id=sub))
USAGE = Endpoint("usage", "GET", lambda sub: f"/v1/subscriptions/{sub}/usage", None)
USERS = Endpoint("users", "GET", lambda sub: f"/v1/subscriptions/{sub}/usage/users", None)
PAYG = Endpoint("payg", "PUT", lambda sub: f"/v1/subscriptions/{sub}/payg",
                lambda sub: {"enabled": False})
ENDPOINTS = [AUTHORIZE, USAGE, USERS, PAYG]

CALLERS = ["no token", "expired", "wrong signature", "wrong audience", "wrong issuer",
           "alg none", "hs256 with the public key", "reader", "contributor", "owner",
           "owner of another account", "call_authorizer scope", "all roles but no scope"]

UNAUTHENTICATED = {"no token", "expired", "wrong signature", "wrong audience", "wrong issuer",
                   "alg none", "hs256 with the public key"}

EXPECTED: dict[str, dict[str, int]] = {
    "authorize": {"reader": 403, "contributor": 403, "owner": 403,
                  "owner of another account": 403, "call_authorizer scope": 200,
                  "all roles but no scope": 403},
    "usage": {"reader": 200, "contributor": 200, "owner": 200, "owner of another account": 403,
              "call_authorizer scope": 403, "all roles but no scope": 200},
    "users": {"reader": 200, "contributor": 200, "owner": 200, "owner of another account": 403,
              "call_authorizer scope": 403, "all roles but no scope": 200},
    "payg": {"reader": 403, "contributor": 200, "owner": 200, "owner of another account": 403,
             "call_authorizer scope": 403, "all roles but no scope": 200},
}


def token_for(api: ApiDeployment, caller: str) -> str | None:
    tokens = api.tokens
    makers: dict[str, Callable[[], str | None]] = {
        "no token": lambda: None,
        "expired": lambda: tokens.expired(ACCOUNT),
        "wrong signature": lambda: tokens.wrong_signature(ACCOUNT),
        "wrong audience": lambda: tokens.wrong_audience(ACCOUNT),
        "wrong issuer": lambda: tokens.wrong_issuer(ACCOUNT),
        "alg none": lambda: tokens.alg_none(ACCOUNT),
        "hs256 with the public key": lambda: tokens.hs256_with_public_key(ACCOUNT,
                                                                         api.public_pem),
        "reader": lambda: tokens.reader(ACCOUNT),
        "contributor": lambda: tokens.contributor(ACCOUNT),
        "owner": lambda: tokens.owner(ACCOUNT),
        "owner of another account": lambda: tokens.owner(OTHER_ACCOUNT),
        "call_authorizer scope": lambda: tokens.authorizer(),
        # owner of ACCOUNT plus reader elsewhere, but no scope: not a call authorizer
        "all roles but no scope": lambda: tokens.mint(
            "multi@example.test", roles={ACCOUNT: "owner", OTHER_ACCOUNT: "reader"}),
    }
    return makers[caller]()


def expected_status(endpoint: Endpoint, caller: str) -> int:
    return 401 if caller in UNAUTHENTICATED else EXPECTED[endpoint.name][caller]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_matrix(api: ApiDeployment, endpoint: Endpoint, caller: str) -> None:
    reply = endpoint.call(api.url, SUB, token_for(api, caller))
    want = expected_status(endpoint, caller)
    assert reply.status == want, f"{endpoint.name} as {caller}: {reply.status} {reply.raw!r}"
    if want == 200:
        assert isinstance(reply.json, dict)
        return
    body = reply.error_body()
    assert body["error"] == {401: "unauthorized", 403: "forbidden"}[want]
    if want == 401:
        assert reply.headers.get("WWW-Authenticate", "").startswith("Bearer")


@pytest.mark.parametrize("header", [
    "Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-jwt", "Bearer a.b.c", "Bearer a.b",
    "bearer " + "x" * 8000,  # aiohttp refuses header lines over 8190 bytes with 400
])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_malformed_authorization_headers_are_401(
    api: ApiDeployment, endpoint: Endpoint, header: str
) -> None:
    reply = endpoint.call(api.url, SUB, None, header=header)
    assert reply.status == 401, (header[:40], reply.status, reply.raw)
    assert reply.error_body()["error"] == "unauthorized"


@pytest.mark.parametrize("endpoint", [USAGE, USERS, PAYG], ids=lambda e: e.name)
def test_unknown_subscription_is_404_only_for_a_valid_token(
    api: ApiDeployment, endpoint: Endpoint
) -> None:
    unknown = unique("sub-unknown")
    # valid token, any role anywhere (even none on the unknown subscription): 404
    for token in (api.tokens.owner(ACCOUNT), api.tokens.reader(OTHER_ACCOUNT),
                  api.tokens.authorizer()):
        reply = endpoint.call(api.url, unknown, token)
        assert reply.status == 404, reply.raw
        assert reply.error_body()["error"] == "not_found"
    # an invalid token learns nothing about which subscriptions exist
    bad_tokens: tuple[str | None, ...] = (None, api.tokens.expired(ACCOUNT),
                                          api.tokens.alg_none(ACCOUNT))
    for bad in bad_tokens:
        reply = endpoint.call(api.url, unknown, bad)
        assert reply.status == 401, reply.raw
        reply.error_body()


def test_role_is_checked_on_the_subscriptions_own_account(api: ApiDeployment) -> None:
    """Owner of ACCOUNT is a stranger to OTHER_SUB, and the other way round."""
    owner, other_owner = api.tokens.owner(ACCOUNT), api.tokens.owner(OTHER_ACCOUNT)
    for endpoint in (USAGE, USERS, PAYG):
        assert endpoint.call(api.url, OTHER_SUB, owner).status == 403
        assert endpoint.call(api.url, OTHER_SUB, other_owner).status == 200
        assert endpoint.call(api.url, SUB, other_owner).status == 403


def test_refused_payg_switch_changes_nothing(api: ApiDeployment) -> None:
    before = api.redis_state(SUB)
    for token in (api.tokens.reader(ACCOUNT), api.tokens.owner(OTHER_ACCOUNT),
                  api.tokens.authorizer(), api.tokens.expired(ACCOUNT)):
        reply = http("PUT", f"{api.url}/v1/subscriptions/{SUB}/payg", token=token,
                     body={"enabled": True})
        assert reply.status in (401, 403)
    assert api.redis_state(SUB) == before
    usage = http("GET", f"{api.url}/v1/subscriptions/{SUB}/usage",
                 token=api.tokens.reader(ACCOUNT)).json
    assert usage["payg_enabled"] is False


def test_unknown_routes_and_methods_answer_json(api: ApiDeployment) -> None:
    owner = api.tokens.owner(ACCOUNT)
    reply = http("GET", f"{api.url}/v1/nothing-here", token=owner)
    assert reply.status == 404
    reply.error_body()
    reply = http("DELETE", f"{api.url}/v1/subscriptions/{SUB}/payg", token=owner)
    assert reply.status == 405
    reply.error_body()
    reply = http("GET", f"{api.url}/v1/authorize", token=owner)
    assert reply.status == 405
    reply.error_body()


# ------------------------------------------------------ no JWT key at all ---


@pytest.mark.parametrize("with_token", [False, True], ids=["no token", "some token"])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_without_a_jwt_key_protected_endpoints_answer_503(
    keyless: ApiDeployment, endpoint: Endpoint, with_token: bool
) -> None:
    token = keyless.tokens.owner(ACCOUNT) if with_token else None
    reply = endpoint.call(keyless.url, SUB, token)
    assert reply.status == 503, reply.raw
    assert reply.error_body()["error"] == "auth_not_configured"


def test_without_a_jwt_key_the_worker_still_decides_on_the_stream(
    keyless: ApiDeployment,
) -> None:
    assert http("GET", f"{keyless.url}/readyz").status == 200
    assert http("GET", f"{keyless.url}/healthz").status == 200
    doc = attempt_doc(attempt_id=unique("att"), subscription_id=unique("sub-none"))
    topics = keyless.settings.topics
    keyless.produce(topics.attempts, [doc])
    records = keyless.read(topics.decisions,
                           lambda rs: any(r["attempt_id"] == doc["attempt_id"] for r in rs))
    decision = next(r for r in records if r["attempt_id"] == doc["attempt_id"])
    assert (decision["decision"], decision["reason"]) == ("block", "unknown_subscription")
    log = keyless.worker.tail(400) if keyless.worker else ""
    assert "auth_not_configured" in log or "RATER_JWT_KEY is not set" in log, log[-2000:]
