"""The HTTP API's logic without a server (rater.web.api): bodies, order of checks, shapes.

`RaterApi` is driven with a fake store, decider and publisher (the PAYG switch and the
spend-limit change are the real `PaygSwitcher` and `SpendLimits` over them); the end-to-end
behaviour through a real worker is in tests/integration/test_api.py and
tests/integration/test_authorization_matrix.py.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from rater.config import Settings
from rater.rating.decision import Decision, decide
from rater.records import CallAttempt
from rater.service.payg import PaygSwitcher
from rater.service.spend_limits import SpendLimits
from rater.store import LimitChange, PaygSwitch, StoreUnavailable, SubscriptionSnapshot, UserUsage
from rater.web.api import RaterApi
from rater.web.auth import TokenVerifier
from rater.web.documents import (
    Cursor,
    parse_attempt,
    parse_limit,
    parse_payg_body,
    parse_spend_limit_body,
    usage_document,
    users_page,
)
from rater.web.errors import MAX_BODY_BYTES, ApiError
from rater.web.tokens import issue_token
from rater.web.views import body_reader, respond
from tests.builders import make_snapshot as snapshot

SECRET = "unit-test-secret-unit-test-secret-0123456789"
ISSUER, AUDIENCE = "https://idp.unit.test/", "rater-api"
NOW_MS = 1_795_000_000_000  # 2026-11-18T11:06:40Z
SETTINGS = Settings(jwt_algorithm="HS256", jwt_key=SECRET, jwt_issuer=ISSUER,
                    jwt_audience=AUDIENCE, topic_prefix="u.")


def token(**kw: Any) -> str:
    kw.setdefault("subject", "alice@example.test")
    return "Bearer " + issue_token(SECRET, algorithm="HS256", issuer=ISSUER, audience=AUDIENCE,
                                   **kw)


@dataclass
class FakeStore:
    subs: dict[str, SubscriptionSnapshot] = field(default_factory=dict)
    users: dict[tuple[str, str], dict[str, UserUsage]] = field(default_factory=dict)
    writes: list[tuple[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    revisions: dict[str, int] = field(default_factory=dict)
    limits: dict[tuple[str, str], int] = field(default_factory=dict)

    async def snapshot(self, subscription_id: str, at_ms: int) -> SubscriptionSnapshot | None:
        self.calls.append("snapshot")
        return self.subs.get(subscription_id)

    async def reserve_payg_revision(self, subscription_id: str) -> tuple[bool, int] | None:
        self.calls.append("reserve")
        current = self.subs.get(subscription_id)
        if current is None:
            return None
        self.revisions[subscription_id] = self.revisions.get(subscription_id, 0) + 1
        return current.payg_enabled, self.revisions[subscription_id]

    async def set_payg(
        self, subscription_id: str, enabled: bool, revision: int | None = None
    ) -> PaygSwitch | None:
        self.calls.append("set_payg")
        current = self.subs.get(subscription_id)
        if current is None:
            return None
        self.writes.append((subscription_id, enabled))
        return PaygSwitch(current.payg_enabled, revision or 0, True)

    async def reserve_spend_limit_revision(
        self, subscription_id: str, user_id: str
    ) -> tuple[int | None, int] | None:
        self.calls.append("reserve")
        if subscription_id not in self.subs:
            return None
        self.revisions[subscription_id] = self.revisions.get(subscription_id, 0) + 1
        return self.limits.get((subscription_id, user_id)), self.revisions[subscription_id]

    async def set_spend_limit(
        self, subscription_id: str, user_id: str, limit_micro: int | None,
        revision: int | None = None,
    ) -> LimitChange | None:
        self.calls.append("set_spend_limit")
        if subscription_id not in self.subs:
            return None
        previous = self.limits.pop((subscription_id, user_id), None)
        if limit_micro is not None:
            self.limits[(subscription_id, user_id)] = limit_micro
        self.writes.append((f"{subscription_id}/{user_id}", limit_micro))
        return LimitChange(previous, revision or 0, True)

    async def user_report(self, subscription_id: str, period: str) -> Mapping[str, UserUsage]:
        self.calls.append(f"users:{period}")
        return self.users.get((subscription_id, period), {})


@dataclass
class FakeDecider:
    store: FakeStore

    async def decide(self, attempt: CallAttempt) -> Decision:
        snap = await self.store.snapshot(attempt.subscription_id, NOW_MS)
        return decide(attempt, snap.pool_state(attempt.zone) if snap else None)


@dataclass
class Published:
    store: FakeStore
    records: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    fail: bool = False

    async def __call__(self, topic: str, key: bytes, value: bytes) -> None:
        self.store.calls.append("publish")
        if self.fail:
            raise RuntimeError("broker down")
        self.records.append((topic, key, value))


def make_api(
    settings: Settings = SETTINGS, subs: dict[str, SubscriptionSnapshot] | None = None
) -> tuple[RaterApi, FakeStore, Published]:
    store = FakeStore(subs=subs if subs is not None else {"sub-1": snapshot()})
    published = Published(store)
    payg = PaygSwitcher(store, published, settings.topics.subscription_events,  # type: ignore[arg-type]
                        lambda: NOW_MS)
    limits = SpendLimits(store, published, settings.topics.subscription_events,  # type: ignore[arg-type]
                         lambda: NOW_MS)
    api = RaterApi(settings, store, FakeDecider(store), payg, limits, clock=lambda: NOW_MS)
    return api, store, published


def body(raw: bytes) -> Any:
    async def read() -> bytes:
        return raw

    return read


def never_read() -> Any:
    async def read() -> bytes:
        raise AssertionError("the body must not be read before authorization")

    return read


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ------------------------------------------------------------ PUT payg body ---


@pytest.mark.parametrize("raw", [b'{"enabled": true}', b'  {"enabled":true}\n'])
def test_payg_body_true(raw: bytes) -> None:
    assert parse_payg_body(raw) is True


def test_payg_body_false() -> None:
    assert parse_payg_body(b'{"enabled": false}') is False


@pytest.mark.parametrize("raw", [
    b"", b"   ", b"enabled", b'{"enabled": tru', b"[true]", b"true", b"null",
    b'{"enabled": "true"}', b'{"enabled": 1}', b'{"enabled": 0}', b'{"enabled": null}',
    b"{}", b'{"Enabled": true}', b'{"enabled": true, "enabled_at": "now"}',
    b'{"enabled": true, "actor": "mallory"}', b'\xff\xfe{"enabled": true}',
])
def test_payg_body_refused_with_422(raw: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        parse_payg_body(raw)
    assert caught.value.status == 422
    assert set(caught.value.to_body()) == {"error", "detail"}


def test_payg_body_unknown_field_detail_names_it() -> None:
    with pytest.raises(ApiError, match="unknown field"):
        parse_payg_body(b'{"enabled": true, "foo": 1}')


def test_oversized_body_is_413_even_when_read_directly() -> None:
    with pytest.raises(ApiError) as caught:
        parse_payg_body(b" " * (MAX_BODY_BYTES + 1))
    assert caught.value.status == 413


# ------------------------------------------------------------ attempt body ---


def test_attempt_body_valid() -> None:
    attempt = parse_attempt(orjson.dumps({
        "attempt_id": "a1", "subscription_id": "sub-1", "user_id": "u", "direction": "outbound",
        "zone": "domestic", "at": "2026-11-18T10:00:00+01:00"}))
    assert attempt.at_ms == 1_794_992_400_000 and attempt.emergency is False


@pytest.mark.parametrize("doc", [
    {},
    {"attempt_id": "a", "subscription_id": "s", "user_id": "u", "direction": "outbound"},
    {"attempt_id": "a", "subscription_id": "s", "user_id": "u", "direction": "out",
     "zone": "domestic"},
    {"attempt_id": "a", "subscription_id": "s", "user_id": "u", "direction": "outbound",
     "zone": "domestic", "emergency": "no"},
    {"attempt_id": "a", "subscription_id": "s", "user_id": "u", "direction": "outbound",
     "zone": "domestic", "extra": 1},
    {"attempt_id": "", "subscription_id": "s", "user_id": "u", "direction": "outbound",
     "zone": "domestic"},
    {"attempt_id": "a", "subscription_id": "s", "user_id": "u", "direction": "outbound",
     "zone": "domestic", "at": "2026-13-45T10:00:00Z"},
    ["attempt"],
])
def test_attempt_body_refused_with_422(doc: Any) -> None:
    with pytest.raises(ApiError) as caught:
        parse_attempt(orjson.dumps(doc))
    assert caught.value.status == 422


# ------------------------------------------------------------- body reader ---


class FakeContent:
    def __init__(self, data: bytes, chunk: int = 4096) -> None:
        self.data, self.chunk, self.read_total = data, chunk, 0

    async def read(self, n: int = -1) -> bytes:
        size = min(self.chunk, n if n >= 0 else self.chunk)
        out = self.data[self.read_total:self.read_total + size]
        self.read_total += len(out)
        return out


@dataclass
class FakeRequest:
    content: FakeContent
    content_length: int | None


def test_body_reader_reads_everything_up_to_the_limit() -> None:
    data = b"x" * MAX_BODY_BYTES
    assert run(body_reader(FakeRequest(FakeContent(data), len(data)))()) == data


def test_body_reader_refuses_a_declared_length_without_reading() -> None:
    content = FakeContent(b"x" * 10)
    with pytest.raises(ApiError) as caught:
        run(body_reader(FakeRequest(content, MAX_BODY_BYTES + 1))())
    assert caught.value.status == 413 and content.read_total == 0


def test_body_reader_refuses_an_undeclared_oversized_body_early() -> None:
    content = FakeContent(b"x" * (10 * MAX_BODY_BYTES))
    with pytest.raises(ApiError) as caught:
        run(body_reader(FakeRequest(content, None))())
    assert caught.value.status == 413
    assert content.read_total <= MAX_BODY_BYTES + 1


def test_body_reader_does_not_trust_a_short_declared_length() -> None:
    content = FakeContent(b"x" * (MAX_BODY_BYTES + 100))
    with pytest.raises(ApiError):
        run(body_reader(FakeRequest(content, 10))())


# --------------------------------------------------------- cursor and limit ---


def test_cursor_round_trip_and_opaque() -> None:
    text = Cursor("2026-11-01", 200).encode()
    assert "=" not in text and "2026" not in text
    assert Cursor.decode(text) == Cursor("2026-11-01", 200)


@pytest.mark.parametrize("text", [
    "", "!!!", "x" * 300, base64.urlsafe_b64encode(b"[1,2]").decode(),
    base64.urlsafe_b64encode(b'{"p":"2026-11-01","o":-1}').decode(),
    base64.urlsafe_b64encode(b'{"p":"2026-11-01","o":true}').decode(),
    base64.urlsafe_b64encode(b'{"p":"x:*","o":1}').decode(),
    base64.urlsafe_b64encode(b'{"p":"2026-11-01","o":1,"z":0}').decode(),
])
def test_bad_cursor_is_422(text: str) -> None:
    with pytest.raises(ApiError) as caught:
        Cursor.decode(text)
    assert (caught.value.status, caught.value.error) == (422, "invalid_cursor")


@pytest.mark.parametrize(("raw", "limit"), [(None, 100), ("", 100), ("1", 1), ("1000", 1000)])
def test_limit(raw: str | None, limit: int) -> None:
    assert parse_limit(raw) == limit


@pytest.mark.parametrize("raw", ["0", "1001", "-1", "1.5", "ten", "1e3", "9" * 20])
def test_bad_limit_is_422(raw: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_limit(raw)
    assert caught.value.status == 422


# ------------------------------------------------------------ answer shapes ---


def test_usage_document_statuses_and_amounts() -> None:
    doc = usage_document(snapshot(used=120, overage_s=120, overage_micro=50_000))
    assert doc["period"] == "2026-11-01"
    assert doc["period_end"] == "2026-12-01T00:00:00Z"
    assert doc["zones"]["domestic"] == {
        "included_s": 120, "used_included_s": 120, "remaining_s": 0, "reserved_s": 0,
        "available_s": 0, "overage_s": 120, "unbilled_s": 0, "overage_amount": "0.050000",
        "status": "blocked"}
    # a zone whose pool is 0 is "pool empty" too
    assert doc["zones"]["international"]["status"] == "blocked"
    assert usage_document(snapshot(used=120, payg=True))["zones"]["domestic"]["status"] == "payg"
    assert usage_document(snapshot(used=60))["zones"]["domestic"]["status"] == "ok"
    # licences reduced below what was used: remaining never negative
    shrunk = usage_document(snapshot(used=240, minutes=2))["zones"]["domestic"]
    assert (shrunk["remaining_s"], shrunk["status"]) == (0, "blocked")
    # sessions' reservations: remaining keeps its §5.5 meaning, available subtracts them
    held = usage_document(snapshot(used=30, reserved=60))["zones"]["domestic"]
    assert (held["remaining_s"], held["reserved_s"], held["available_s"], held["status"]) == (
        90, 60, 30, "ok")
    overrun = usage_document(snapshot(used=90, reserved=60))["zones"]["domestic"]
    assert (overrun["remaining_s"], overrun["available_s"]) == (30, 0)


def test_users_page_sorting_ties_and_pagination() -> None:
    users = {
        "bob": UserUsage({"domestic": 180, "international": 0}, spent_micro=25_000),
        "alice": UserUsage({"domestic": 120, "international": 60}, limit_micro=5_000_000),
        "carol": UserUsage({"domestic": 120}),
        "zed": UserUsage({"international": 600}, 1_500_000, 700, 1_000_000),
        "idle": UserUsage({}, limit_micro=0),  # a limit, no calls: listed last
    }
    first = users_page("2026-11-01", users, 0, 2)
    assert [u["user_id"] for u in first["users"]] == ["zed", "alice"]
    assert first["users"][1] == {"user_id": "alice", "total_s": 180,
                                 "billable_s": {"domestic": 120, "international": 60},
                                 "overage_amount": "0.000000", "spend_limit": "5.000000"}
    assert (first["users"][0]["overage_amount"], first["users"][0]["spend_limit"]) == (
        "1.500000", "1.000000")
    second = users_page("2026-11-01", users, Cursor.decode(first["next"]).offset, 2)
    assert [u["user_id"] for u in second["users"]] == ["bob", "carol"]
    assert second["users"][0]["overage_amount"] == "0.025000"
    assert second["users"][1]["billable_s"] == {"domestic": 120, "international": 0}
    assert second["users"][1]["spend_limit"] is None
    third = users_page("2026-11-01", users, Cursor.decode(second["next"]).offset, 2)
    assert third["users"] == [{"user_id": "idle", "total_s": 0,
                               "billable_s": {"domestic": 0, "international": 0},
                               "overage_amount": "0.000000", "spend_limit": "0.000000"}]
    assert third["next"] is None
    assert users_page("2026-11-01", {}, 0, 100) == {"period": "2026-11-01", "users": [],
                                                    "next": None}
    assert users_page("2026-11-01", users, 10, 5)["users"] == []


@pytest.mark.parametrize(("raw", "micro"), [
    (b'{"amount": "5.00"}', 5_000_000), (b'{"amount": null}', None),
    (b'{"amount": "0"}', 0), (b'{"amount": "1000000000"}', 1_000_000_000_000_000),
    (b'{"amount": "0.000001"}', 1), (b'{"amount": "12.345678"}', 12_345_678),
])
def test_spend_limit_bodies(raw: bytes, micro: int | None) -> None:
    assert parse_spend_limit_body(raw) == micro


@pytest.mark.parametrize("raw", [
    b'{"amount": 5}', b'{"amount": "5.1234567"}', b'{"amount": "-1"}', b'{}',
    b'{"amount": "1000000000.000001"}', b'{"amount": "5", "user": "x"}', b'[]',
    b'{"amount": "1e3"}', b'{"amount": " 5"}', b'{"amount": ""}', b'nope', b'',
])
def test_bad_spend_limit_bodies_are_422(raw: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        parse_spend_limit_body(raw)
    assert (caught.value.status, caught.value.error) == (422, "invalid_request")


def test_spend_limit_change_checks_role_then_user_then_body_and_publishes_first() -> None:
    api, store, published = make_api()
    contributor = token(subject="carl", roles={"ba-1": "contributor"})
    for bad_token, status in ((token(roles={"ba-1": "reader"}), 403), ("Bearer x.y.z", 401)):
        with pytest.raises(ApiError) as caught:
            run(api.set_spend_limit(bad_token, "sub-1", "u", never_read()))
        assert caught.value.status == status
    with pytest.raises(ApiError) as caught:
        run(api.set_spend_limit(contributor, "nope", "u", never_read()))
    assert caught.value.status == 404
    with pytest.raises(ApiError) as caught:
        run(api.set_spend_limit(contributor, "sub-1", "x" * 129, never_read()))
    assert (caught.value.status, caught.value.error) == (422, "invalid_request")
    assert store.writes == [] and published.records == []

    answer = run(api.set_spend_limit(contributor, "sub-1", "u 1", body(b'{"amount": "5.5"}')))
    assert answer == {"subscription_id": "sub-1", "user_id": "u 1", "amount": "5.500000",
                      "previous": None}
    assert store.calls[-3:] == ["reserve", "publish", "set_spend_limit"]
    [(topic, key, value)] = published.records
    assert (topic, key) == ("u.subscriptions.events", b"sub-1")
    assert orjson.loads(value) == {"type": "spend_limit.changed", "subscription_id": "sub-1",
                                   "user_id": "u 1", "amount": "5.500000", "previous": None,
                                   "revision": 1, "actor": "carl", "role": "contributor",
                                   "at": "2026-11-18T11:06:40Z"}
    cleared = run(api.set_spend_limit(contributor, "sub-1", "u 1", body(b'{"amount": null}')))
    assert (cleared["amount"], cleared["previous"]) == (None, "5.500000")
    assert store.limits == {}

    published.fail = True
    with pytest.raises(ApiError) as caught:
        run(api.set_spend_limit(contributor, "sub-1", "u 1", body(b'{"amount": "1"}')))
    assert (caught.value.status, caught.value.error) == (503, "event_not_recorded")
    assert store.limits == {}


# --------------------------------------------------- order of checks, roles ---


def test_unconfigured_key_answers_503_before_anything_else() -> None:
    api, store, _ = make_api(Settings(topic_prefix="u."))
    for call in (
        api.authorize(None, never_read()),
        api.usage(token(roles={"ba-1": "owner"}), "sub-1"),
        api.usage_users(None, "sub-1", {}),
        api.set_payg(None, "nope", never_read()),
    ):
        with pytest.raises(ApiError) as caught:
            run(call)
        assert (caught.value.status, caught.value.error) == (503, "auth_not_configured")
    assert store.calls == []


def test_401_comes_before_the_subscription_lookup() -> None:
    api, store, _ = make_api()
    with pytest.raises(ApiError) as caught:
        run(api.set_payg("Bearer a.b.c", "unknown", never_read()))
    assert caught.value.status == 401 and store.calls == []


def test_404_comes_before_the_role_check_and_the_body() -> None:
    api, _, _ = make_api()
    with pytest.raises(ApiError) as caught:
        run(api.set_payg(token(roles={"ba-other": "reader"}), "unknown", never_read()))
    assert caught.value.status == 404


@pytest.mark.parametrize(("roles", "scope"), [
    ({"ba-1": "reader"}, None), ({"ba-2": "owner"}, None), ({}, "call_authorizer"),
])
def test_403_comes_before_the_body_and_writes_nothing(
    roles: dict[str, str], scope: str | None
) -> None:
    api, store, published = make_api()
    with pytest.raises(ApiError) as caught:
        run(api.set_payg(token(roles=roles, scope=scope), "sub-1", never_read()))
    assert caught.value.status == 403
    assert store.writes == [] and published.records == []


def test_authorize_needs_the_scope_before_reading_the_body() -> None:
    api, _, _ = make_api()
    with pytest.raises(ApiError) as caught:
        run(api.authorize(token(roles={"ba-1": "owner"}), never_read()))
    assert caught.value.status == 403


def test_authorize_answers_the_decision_record() -> None:
    api, _, _ = make_api(subs={"sub-1": snapshot(used=30)})
    raw = orjson.dumps({"attempt_id": "a1", "subscription_id": "sub-1", "user_id": "u",
                        "direction": "outbound", "zone": "domestic"})
    answer = run(api.authorize(token(scope="call_authorizer"), body(raw)))
    assert answer == {"attempt_id": "a1", "subscription_id": "sub-1", "decision": "permit",
                      "max_duration_s": 60, "reason": "included",
                      "decided_at": "2026-11-18T11:06:40Z"}


def test_payg_switch_publishes_the_audit_event_then_writes() -> None:
    api, store, published = make_api()
    answer = run(api.set_payg(token(subject="carl", roles={"ba-1": "contributor"}), "sub-1",
                              body(b'{"enabled": true}')))
    assert answer == {"subscription_id": "sub-1", "payg_enabled": True, "previous": False}
    assert store.writes == [("sub-1", True)]
    assert store.calls[-3:] == ["reserve", "publish", "set_payg"]
    [(topic, key, value)] = published.records
    assert (topic, key) == ("u.subscriptions.events", b"sub-1")
    assert orjson.loads(value) == {"type": "payg.changed", "subscription_id": "sub-1",
                                   "enabled": True, "previous": False, "revision": 1,
                                   "actor": "carl", "role": "contributor",
                                   "at": "2026-11-18T11:06:40Z"}


def test_payg_publish_failure_is_a_json_503_and_switches_nothing() -> None:
    api, store, published = make_api()
    published.fail = True
    with pytest.raises(ApiError) as caught:
        run(api.set_payg(token(roles={"ba-1": "owner"}), "sub-1", body(b'{"enabled": true}')))
    assert (caught.value.status, caught.value.error) == (503, "event_not_recorded")
    assert store.writes == [] and "set_payg" not in store.calls


def test_users_report_keeps_the_cursors_period() -> None:
    api, store, _ = make_api()
    store.users[("sub-1", "2026-10-01")] = {"u1": UserUsage({"domestic": 60,
                                                              "international": 0})}
    cursor = Cursor("2026-10-01", 0).encode()
    page = run(api.usage_users(token(roles={"ba-1": "reader"}), "sub-1", {"cursor": cursor}))
    assert page["period"] == "2026-10-01" and page["users"][0]["user_id"] == "u1"


# --------------------------------------------------------- response mapping ---


def _respond(exc: BaseException | None = None, result: Any = None) -> Any:
    async def call() -> Any:
        if exc is not None:
            raise exc
        return result

    return run(respond("/test", call))


def test_respond_maps_every_outcome_to_json() -> None:
    ok = _respond(result={"a": 1})
    assert (ok.status, orjson.loads(ok.body), ok.content_type) == (200, {"a": 1},
                                                                  "application/json")
    unauthorized = _respond(ApiError.unauthorized("token expired"))
    assert unauthorized.status == 401
    assert unauthorized.headers["WWW-Authenticate"].startswith("Bearer")
    assert orjson.loads(unauthorized.body) == {"error": "unauthorized",
                                               "detail": "token expired"}
    redis_down = _respond(StoreUnavailable("down"))
    assert (redis_down.status, orjson.loads(redis_down.body)["error"]) == (
        503, "store_unavailable")
    bug = _respond(KeyError("oops"))
    assert (bug.status, orjson.loads(bug.body)["error"]) == (500, "internal_error")
    assert "oops" not in bug.body.decode()


def test_a_bad_configured_key_is_a_config_error() -> None:
    from rater.config import ConfigError

    with pytest.raises(ConfigError, match="RATER_JWT_KEY: an HS256 secret must be at least"):
        Settings(jwt_algorithm="HS256", jwt_key="short", jwt_issuer=ISSUER,
                 jwt_audience=AUDIENCE).validate()



def test_verifier_is_built_once() -> None:
    api, _, _ = make_api()
    assert isinstance(api.verifier, TokenVerifier) and api.verifier.configured
