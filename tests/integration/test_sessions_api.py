"""Credit-control sessions (SPEC §11) end to end: a real `rater worker`, HTTP and Kafka.

* a call's life: set-up, updates, terminate, CDR; what the usage API and §6 see meanwhile;
* 200 set-ups at once on a 600 s pool with PAYG off: at most 600 billable seconds are
  granted, every call that ends within its grant rates with nothing unbilled, and the
  counters are the reference model's;
* every refused request gets its status and a JSON error, and changes nothing in Redis;
* the session metrics count what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from rater.rating.clock import now_ms
from tests.builders import attempt_doc, cdr_doc, ms, subscription_doc
from tests.integration import session_support as sessions
from tests.integration.api_support import (
    ApiDeployment,
    http,
    http_chunked,
    safe_anchor_day,
    started_ago,
    sync_redis,
    unique,
)
from tests.integration.ops_traffic import Scrape

pytestmark = pytest.mark.integration

KIB = 1024


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiDeployment]:
    deployment = ApiDeployment(tmp_path_factory.mktemp("sessions")).start()
    yield deployment
    deployment.stop()


def plan(sub: str, account: str, minutes: int = 10, increment: str = "60/60",
         **kw: Any) -> dict[str, Any]:
    return subscription_doc(subscription_id=sub, billing_account_id=account, licenses=1,
                            domestic_minutes=minutes, international_minutes=0,
                            increment=increment, anchor_day=safe_anchor_day(), **kw)


def initial_body(sub: str, sid: str, **kw: Any) -> dict[str, Any]:
    return {"session_id": sid, "subscription_id": sub, "user_id": "user-a",
            "direction": "outbound", "zone": "domestic", **kw}


def post(api: ApiDeployment, url: str, body: Any = None, token: str | None = "authorizer",
         raw: bytes | None = None) -> Any:
    bearer = api.tokens.authorizer() if token == "authorizer" else token
    return http("POST", url, token=bearer, body=body, raw=raw)


def subscription_state(api: ApiDeployment, sub: str) -> dict[str, Any]:
    """Every key under the subscription's hash tag, whatever its type, with its content."""
    client = sync_redis(api.settings, decode_responses=True)
    try:
        state: dict[str, Any] = {}
        for key in sorted(client.scan_iter(match=f"{api.settings.key_prefix}:{{{sub}}}:*")):
            kind = client.type(key)
            if kind == "hash":
                state[key] = client.hgetall(key)
            elif kind == "zset":
                state[key] = client.zrange(key, 0, -1, withscores=True)
            else:
                state[key] = (kind, client.get(key) if kind == "string" else None)
        return state
    finally:
        client.close()


def usage_zone(api: ApiDeployment, sub: str, account: str) -> dict[str, Any]:
    reply = http("GET", api.usage_url(sub), token=api.tokens.reader(account))
    assert reply.status == 200, reply.raw
    zone: dict[str, Any] = reply.json["zones"]["domestic"]
    return zone


# ------------------------------------------------------------ a call's life ---


def test_a_call_from_set_up_to_its_cdr(api: ApiDeployment) -> None:
    account, sub = unique("ba-life"), unique("sub-life")
    api.load_subscriptions([plan(sub, account)])  # 600 s, 60/60, PAYG off
    base = api.url

    first = post(api, sessions.session_url(base), initial_body(sub, "call-1", requested_s=240,
                                                                request_number=0))
    assert first.status == 200, first.raw
    answer = first.json
    assert set(answer) == sessions.ANSWER_FIELDS
    assert (answer["decision"], answer["granted_s"], answer["final"], answer["reason"],
            answer["validity_s"]) == ("permit", 240, False, "included", 600)
    assert abs(ms(answer["expires_at"]) - (now_ms() + 600_000)) < 30_000

    # the reservation is what the usage API and §6 see as taken
    zone = usage_zone(api, sub, account)
    assert (zone["used_included_s"], zone["remaining_s"], zone["reserved_s"],
            zone["available_s"], zone["status"]) == (0, 600, 240, 360, "ok")
    decision = api.authorize(attempt_doc(attempt_id=unique("att"), subscription_id=sub))
    assert (decision["decision"], decision["max_duration_s"]) == ("permit", 360)

    # an update reports use and extends the grant; a retry gets the same answer again
    update_url = sessions.session_url(base, "call-1", "update")
    extended = post(api, update_url, {"used_s": 230, "requested_s": 300, "request_number": 1})
    assert extended.status == 200, extended.raw
    assert (extended.json["granted_s"], extended.json["final"]) == (530, False)
    again = post(api, update_url, {"used_s": 230, "requested_s": 300, "request_number": 1})
    assert (again.status, again.raw) == (200, extended.raw)
    assert usage_zone(api, sub, account)["reserved_s"] == 540

    # terminate: billable(301) = 360 held until the CDR comes
    ended = post(api, sessions.session_url(base, "call-1", "terminate"),
                 {"used_s": 301, "request_number": 2})
    assert ended.status == 200, ended.raw
    assert (ended.json["decision"], ended.json["granted_s"], ended.json["final"],
            ended.json["reason"], ended.json["validity_s"]) == (
        "permit", 301, True, "terminated", 0)
    assert usage_zone(api, sub, account)["reserved_s"] == 360

    # the CDR releases it in the step that adds the usage
    api.produce(api.settings.topics.cdr, [cdr_doc(
        call_id="call-1", subscription_id=sub, user_id="user-a", duration_s=301,
        started_at=started_ago(400))])
    rated = api.rated(sub, ["call-1"])["call-1"]
    assert (rated["outcome"], rated["included_s"], rated["unbilled_s"]) == ("included", 360, 0)
    zone = usage_zone(api, sub, account)
    assert (zone["used_included_s"], zone["reserved_s"], zone["available_s"]) == (360, 0, 240)
    state = subscription_state(api, sub)
    assert state[api.keys.session(sub, "call-1")]["st"] == "c"
    assert api.keys.session_deadlines(sub) not in state


def test_free_calls_and_unknown_subscriptions(api: ApiDeployment) -> None:
    url = sessions.session_url(api.url)
    nobody = unique("nobody")
    for extra in ({"direction": "inbound"}, {"emergency": True}):
        reply = post(api, url, initial_body(nobody, unique("free"), **extra))
        assert reply.status == 200, reply.raw
        assert (reply.json["decision"], reply.json["granted_s"], reply.json["reason"]) == (
            "permit", None, "free")
    blocked = post(api, url, initial_body(nobody, unique("out")))
    assert blocked.status == 200, blocked.raw
    assert (blocked.json["decision"], blocked.json["granted_s"], blocked.json["final"],
            blocked.json["reason"], blocked.json["validity_s"]) == (
        "block", 0, True, "unknown_subscription", 0)
    # a free session answers its update and terminate as free, found by its id alone
    sid = unique("free")
    post(api, url, initial_body(nobody, sid, direction="inbound"))
    update = post(api, sessions.session_url(api.url, sid, "update"), {"used_s": 10})
    assert (update.status, update.json["reason"], update.json["granted_s"]) == (200, "free",
                                                                                None)
    end = post(api, sessions.session_url(api.url, sid, "terminate"), {"used_s": 20})
    assert (end.status, end.json["reason"], end.json["final"]) == (200, "free", True)


# ---------------------------------------------------------- 200 at once ---


def test_200_concurrent_set_ups_never_overrun_the_pool(api: ApiDeployment) -> None:
    """600 s pool, 1/1, PAYG off; every call asks for 7 s: 85 full grants, one of 5 s."""
    account, sub = unique("ba-burst"), unique("sub-burst")
    doc = plan(sub, account, increment="1/1")
    api.load_subscriptions([doc])
    token = api.tokens.authorizer()
    burst = asyncio.run(sessions.set_up([api.url], token, doc, 200, 7, unique("b")))
    assert burst.granted_billable_s() == 600  # at most the pool, and all of it
    assert sorted(burst.permitted().values()).count(7) == 85
    assert sorted(burst.permitted().values())[0] == 5
    ends = sessions.plan_ends(burst, seed=1)
    started = now_ms() - 600_000
    rated = asyncio.run(sessions.end_calls(api.settings, [api.url], token, burst, ends,
                                           started))
    assert len(rated) == len(ends) == 86
    assert {r["outcome"] for r in rated.values()} == {"included"}
    assert sum(r["unbilled_s"] for r in rated.values()) == 0
    model = sessions.model_of(burst, ends, started, api.settings.session_policy)
    zone = usage_zone(api, sub, account)
    period = next(iter(rated.values()))["period"]
    want = sessions.model_counters(model, sub, period)
    assert (zone["used_included_s"], zone["overage_s"], zone["unbilled_s"],
            zone["reserved_s"]) == (want.used_included_s, want.overage_s, want.unbilled_s,
                                     want.reserved_s)
    assert want.reserved_s == 0
    assert zone["used_included_s"] == sum(e.duration_s for e in ends)


# ------------------------------------------------------------- refusals ---


def test_refused_requests_answer_json_and_change_nothing(api: ApiDeployment) -> None:
    account, sub = unique("ba-bad"), unique("sub-bad")
    api.load_subscriptions([plan(sub, account)])
    base = api.url
    url = sessions.session_url(base)
    assert post(api, url, initial_body(sub, "live", request_number=5)).status == 200
    assert post(api, sessions.session_url(base, "live", "update"),
                {"used_s": 100, "request_number": 6}).status == 200
    assert post(api, url, initial_body(sub, "done", request_number=0)).status == 200
    assert post(api, sessions.session_url(base, "done", "terminate"),
                {"used_s": 10, "request_number": 1}).status == 200
    reader = api.tokens.reader(account)
    big = b'{"used_s": 1, "pad": "' + b"x" * (64 * KIB) + b'"}'

    def update(sid: str = "live") -> str:
        return sessions.session_url(base, sid, "update")

    def terminate(sid: str = "live") -> str:
        return sessions.session_url(base, sid, "terminate")

    cases: list[tuple[str, str, Any, bytes | None, str | None, int, str]] = [
        # (what, url, body, raw body, token, status, error)
        ("no token", url, initial_body(sub, "new"), None, None, 401, "unauthorized"),
        ("reader, no scope", url, initial_body(sub, "new"), None, reader, 403, "forbidden"),
        ("not JSON", url, None, b"{nope", "authorizer", 422, "invalid_request"),
        ("empty body", update(), None, b"", "authorizer", 422, "invalid_request"),
        ("an array", url, [1, 2], None, "authorizer", 422, "invalid_request"),
        ("missing fields", url, {"session_id": "new"}, None, "authorizer", 422,
         "invalid_request"),
        ("wrong type", url, initial_body(sub, "new", requested_s="60"), None, "authorizer",
         422, "invalid_request"),
        ("requested 0", url, initial_body(sub, "new", requested_s=0), None, "authorizer",
         422, "invalid_request"),
        ("unknown field", update(), {"used_s": 1, "colour": "red"}, None, "authorizer", 422,
         "invalid_request"),
        ("negative number", update(), {"used_s": 200, "request_number": -1}, None,
         "authorizer", 422, "invalid_request"),
        ("id too long", url, initial_body(sub, "x" * 129), None, "authorizer", 422,
         "invalid_request"),
        ("over 64 KiB", update(), None, big, "authorizer", 413, "payload_too_large"),
        ("unknown session", update("ghost"), {"used_s": 1}, None, "authorizer", 404,
         "unknown_session"),
        ("unknown session, terminate", terminate("ghost"), {"used_s": 1}, None,
         "authorizer", 404, "unknown_session"),
        ("path id too long", update("y" * 129), {"used_s": 1}, None, "authorizer", 404,
         "unknown_session"),
        ("another subscription", update(), {"used_s": 200, "subscription_id": unique("s")},
         None, "authorizer", 404, "unknown_session"),
        ("initial again, other number", url, initial_body(sub, "live", request_number=9),
         None, "authorizer", 409, "session_exists"),
        ("lower request number", update(), {"used_s": 200, "request_number": 4}, None,
         "authorizer", 409, "out_of_order"),
        ("same number, other kind", terminate(), {"used_s": 200, "request_number": 6}, None,
         "authorizer", 409, "out_of_order"),
        ("used_s decreasing", update(), {"used_s": 99, "request_number": 7}, None,
         "authorizer", 422, "used_decreased"),
        ("update after terminate", update("done"), {"used_s": 20, "request_number": 2},
         None, "authorizer", 409, "terminated"),
        ("terminate twice", terminate("done"), {"used_s": 20, "request_number": 2}, None,
         "authorizer", 409, "terminated"),
    ]
    for what, target, body, raw, token, status, error in cases:
        before = subscription_state(api, sub)
        reply = post(api, target, body, token=token, raw=raw)
        assert reply.status == status, (what, reply.status, reply.raw[:300])
        assert reply.error_body()["error"] == error, (what, reply.json)
        assert subscription_state(api, sub) == before, what

    chunked = http_chunked("POST", update(), [b'{"used_s": 1, "pad": "', b"x" * (64 * KIB),
                                              b'"}'], api.tokens.authorizer())
    assert chunked.status == 413 and chunked.error_body()["error"] == "payload_too_large"
    # a retry with the same number is the stored answer and changes nothing either
    before = subscription_state(api, sub)
    retry = post(api, update(), {"used_s": 100, "request_number": 6})
    assert (retry.status, retry.json["granted_s"]) == (200, 400)
    assert subscription_state(api, sub) == before
    wrong_method = http("GET", url, token=api.tokens.authorizer())
    assert wrong_method.status == 405 and wrong_method.error_body()


def test_metrics_count_session_requests(api: ApiDeployment) -> None:
    """Runs after the tests above (module order): their requests are in the counters."""
    assert api.worker is not None
    scrape = Scrape.parse(api.worker.get("/metrics").decode())
    requests = scrape.values("rater_session_requests_total", "request", "result", "reason")
    assert requests[("initial", "permit", "included")] >= 86 + 3
    assert requests[("initial", "block", "exhausted")] >= 114
    assert requests[("update", "error", "unknown_session")] >= 3
    assert requests[("update", "error", "out_of_order")] >= 1
    assert requests[("update", "error", "used_decreased")] >= 1
    assert requests[("initial", "error", "unauthorized")] >= 1
    assert requests[("terminate", "permit", "terminated")] >= 86
    assert scrape.value("rater_sessions_closed_by_cdr_total") >= 87
    latency = scrape.values("rater_session_request_duration_seconds_count", "request")
    assert latency["initial"] >= 200 and latency["terminate"] >= 86
    assert scrape.values("rater_session_expirations_total", "rule") == {
        "validity": 0, "cdr_wait": 0}

