"""The session endpoints' logic (rater.web.sessions) with a fake session service: the order
of the checks, the refusals' statuses and codes, the answer document, the counting."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from rater import metrics
from rater.config import Settings
from rater.rating.sessions import SessionAnswer, SessionOutcome, refusal
from rater.records import SessionInitial, SessionTerminate, SessionUpdate
from rater.service.sessions import SessionReply
from rater.web.auth import TokenVerifier
from rater.web.errors import ApiError
from rater.web.sessions import SessionsApi
from rater.web.tokens import issue_token

SECRET = "unit-test-secret-unit-test-secret-0123456789"
ISSUER, AUDIENCE = "https://idp.unit.test/", "rater-api"
SETTINGS = Settings(jwt_algorithm="HS256", jwt_key=SECRET, jwt_issuer=ISSUER,
                    jwt_audience=AUDIENCE, session_quota_s=120)
PERMIT = SessionAnswer("permit", 120, False, 240, "included", 1_795_000_240_000)
INITIAL = (b'{"session_id": "c1", "subscription_id": "sub-1", "user_id": "u",'
           b' "direction": "outbound", "zone": "domestic"}')


def bearer(scope: str | None = "call_authorizer") -> str:
    return "Bearer " + issue_token(SECRET, subject="sbc", scope=scope, algorithm="HS256",
                                   issuer=ISSUER, audience=AUDIENCE)


@dataclass
class FakeSessions:
    outcome: SessionOutcome = field(default_factory=lambda: SessionOutcome(PERMIT))
    seen: list[Any] = field(default_factory=list)

    async def initial(self, request: SessionInitial) -> SessionReply:
        self.seen.append(request)
        return SessionReply(request.subscription_id, self.outcome)

    async def update(self, session_id: str, request: SessionUpdate) -> SessionReply:
        self.seen.append((session_id, request))
        return SessionReply("sub-1", self.outcome)

    async def terminate(self, session_id: str, request: SessionTerminate) -> SessionReply:
        self.seen.append((session_id, request))
        return SessionReply("sub-1", self.outcome)


def make(outcome: SessionOutcome | None = None) -> tuple[SessionsApi, FakeSessions]:
    fake = FakeSessions() if outcome is None else FakeSessions(outcome)
    return SessionsApi(SETTINGS, fake, TokenVerifier.from_settings(SETTINGS)), fake


def body(raw: bytes) -> Any:
    async def read() -> bytes:
        return raw

    return read


def never_read() -> Any:
    async def read() -> bytes:
        raise AssertionError("the body must not be read before authorization")

    return read


def count(request: str, result: str, reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "rater_session_requests_total", {"request": request, "result": result, "reason": reason})
    return value or 0.0


def test_an_initial_request_with_the_quota_as_default() -> None:
    api, fake = make()
    before = count("initial", "permit", "included")
    doc = asyncio.run(api.initial(bearer(), body(INITIAL)))
    assert doc == {"session_id": "c1", "subscription_id": "sub-1", "decision": "permit",
                   "granted_s": 120, "final": False, "validity_s": 240,
                   "reason": "included", "expires_at": "2026-11-18T11:10:40Z"}
    assert fake.seen[0].requested_s == 120  # RATER_SESSION_QUOTA_S
    assert count("initial", "permit", "included") == before + 1


@pytest.mark.parametrize(("authorization", "status"), [
    (None, 401), ("Bearer nope", 401), (bearer(scope=None), 403)])
def test_the_token_and_scope_come_before_the_body(authorization: str | None,
                                                  status: int) -> None:
    api, fake = make()
    for call in (lambda: api.initial(authorization, never_read()),
                 lambda: api.update(authorization, "c1", never_read()),
                 lambda: api.terminate(authorization, "c1", never_read())):
        with pytest.raises(ApiError) as refused:
            asyncio.run(call())
        assert refused.value.status == status
    assert fake.seen == []


@pytest.mark.parametrize("raw", [b"", b"[]", b'{"used_s": "1"}', b'{"used_s": 1, "x": 2}'])
def test_bad_bodies_are_422_and_reach_no_service(raw: bytes) -> None:
    api, fake = make()
    before = count("update", "error", "invalid_request")
    with pytest.raises(ApiError) as refused:
        asyncio.run(api.update(bearer(), "c1", body(raw)))
    assert (refused.value.status, refused.value.error) == (422, "invalid_request")
    assert fake.seen == []
    assert count("update", "error", "invalid_request") == before + 1


def test_refusals_keep_their_status_and_code() -> None:
    for code, status in (("unknown_session", 404), ("out_of_order", 409),
                         ("used_decreased", 422)):
        api, _ = make(SessionOutcome(refusal=refusal(code, "c1", 3, 5)))  # type: ignore[arg-type]
        with pytest.raises(ApiError) as refused:
            asyncio.run(api.terminate(bearer(), "c1", body(b'{"used_s": 1}')))
        assert (refused.value.status, refused.value.error) == (status, code)
        assert "c1" in refused.value.detail


def test_a_path_id_no_session_can_have_is_unknown() -> None:
    api, fake = make()
    with pytest.raises(ApiError) as refused:
        asyncio.run(api.update(bearer(), "x" * 129, body(b'{"used_s": 1}')))
    assert (refused.value.status, refused.value.error) == (404, "unknown_session")
    assert fake.seen == []
