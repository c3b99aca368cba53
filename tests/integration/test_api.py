"""The HTTP API end to end (SPEC §6, §7): a real `rater worker` on the local stack.

One worker serves the whole module (own topics, app id and Redis prefix).
Every test uses its own subscriptions, so the tests do not depend on order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from rater.cli import main as rater_main
from rater.rating.clock import now_ms
from tests.builders import attempt_doc, cdr_doc, ms, subscription_doc
from tests.integration.api_support import (
    AUDIENCE,
    ISSUER,
    ApiDeployment,
    http,
    http_chunked,
    safe_anchor_day,
    started_ago,
    unique,
)

pytestmark = pytest.mark.integration

KIB = 1024


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiDeployment]:
    deployment = ApiDeployment(tmp_path_factory.mktemp("api")).start()
    yield deployment
    deployment.stop()


def small_plan(sub: str, account: str, increment: str = "60/60", **kw: Any) -> dict[str, Any]:
    """1 licence x 2 min domestic (pool 120 s), 1 min international, PAYG off."""
    return subscription_doc(
        subscription_id=sub, billing_account_id=account, licenses=1, domestic_minutes=2,
        international_minutes=1, domestic_rate="0.025", international_rate="0.10",
        increment=increment, anchor_day=safe_anchor_day(), **kw,
    )


def cdr(sub: str, call_id: str, user: str, duration_s: int, **kw: Any) -> dict[str, Any]:
    return cdr_doc(call_id=call_id, subscription_id=sub, user_id=user, duration_s=duration_s,
                   started_at=started_ago(30), **kw)


def attempt(sub: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("attempt_id", unique("att"))
    return attempt_doc(subscription_id=sub, user_id="user-a", **kw)


def stream_decision(api: ApiDeployment, doc: dict[str, Any]) -> dict[str, Any]:
    """Produce an attempt to calls.attempts, wait for its decision on calls.decisions."""
    topics = api.settings.topics
    api.produce(topics.attempts, [doc])
    records = api.read(topics.decisions,
                       lambda rs: any(r["attempt_id"] == doc["attempt_id"] for r in rs),
                       what=f"decision for {doc['attempt_id']}")
    found: dict[str, Any] = next(r for r in records if r["attempt_id"] == doc["attempt_id"])
    return found


# ------------------------------------------------------------ the PAYG story ---


def test_payg_lifecycle_block_switch_on_charge_switch_off(api: ApiDeployment) -> None:
    account, sub = unique("ba-life"), unique("sub-life")
    tokens = api.tokens
    owner = tokens.owner(account, subject="olivia@example.test")
    contributor = tokens.contributor(account, subject="carl@example.test")
    api.load_subscriptions([small_plan(sub, account)])
    topics = api.settings.topics

    # Drain the 120 s domestic pool: 50 s and 45 s each bill 60 s at 60/60.
    api.produce(topics.cdr, [cdr(sub, "c1", "user-a", 50), cdr(sub, "c2", "user-b", 45)])
    rated = api.rated(sub, ["c1", "c2"])
    assert [rated[c]["outcome"] for c in ("c1", "c2")] == ["included", "included"]
    period = rated["c1"]["period"]

    # Pool empty, PAYG off: blocked on the stream and over HTTP alike.
    streamed = stream_decision(api, attempt(sub))
    assert (streamed["decision"], streamed["reason"], streamed["max_duration_s"]) == (
        "block", "exhausted", None)
    doc = attempt(sub)
    answer = api.authorize(doc)
    assert set(answer) == {"attempt_id", "subscription_id", "decision", "max_duration_s",
                           "reason", "decided_at"}
    assert answer["attempt_id"] == doc["attempt_id"] and answer["subscription_id"] == sub
    assert (answer["decision"], answer["reason"], answer["max_duration_s"]) == (
        "block", "exhausted", None)
    assert abs(ms(answer["decided_at"]) - now_ms()) < 60_000
    usage = http("GET", api.usage_url(sub), token=owner).json
    assert usage["zones"]["domestic"]["status"] == "blocked"

    # The owner switches PAYG on: the next attempt is permitted without a limit.
    reply = http("PUT", api.payg_url(sub), token=owner, body={"enabled": True})
    assert reply.status == 200, reply.raw
    assert reply.json == {"subscription_id": sub, "payg_enabled": True, "previous": False}
    answer = api.authorize(attempt(sub))
    assert (answer["decision"], answer["reason"], answer["max_duration_s"]) == (
        "permit", "payg", None)
    streamed = stream_decision(api, attempt(sub))
    assert (streamed["decision"], streamed["reason"], streamed["max_duration_s"]) == (
        "permit", "payg", None)
    usage = http("GET", api.usage_url(sub), token=owner).json
    assert usage["payg_enabled"] is True
    assert usage["zones"]["domestic"]["status"] == "payg"

    # The next CDR is overage: 61 s bills 120 s x 0.025/min = 0.05 EUR.
    api.produce(topics.cdr, [cdr(sub, "c3", "user-a", 61)])
    assert api.rated(sub, ["c3"])["c3"]["outcome"] == "overage"
    charges = api.read(topics.charges, lambda rs: any(r["call_id"] == "c3" for r in rs),
                       what="overage charge for c3")
    charge = next(r for r in charges if r["call_id"] == "c3" and r["subscription_id"] == sub)
    assert charge["charge_id"] == str(uuid.uuid5(uuid.NAMESPACE_URL, f"{sub}/c3"))
    assert charge["overage_s"] == 120
    assert charge["rate_per_minute"] == "0.025"
    assert charge["amount"] == "0.050000"
    assert (charge["currency"], charge["billing_account_id"], charge["user_id"]) == (
        "EUR", account, "user-a")
    assert charge["period"] == period

    # A contributor switches it off again: blocked again; the next CDR is unbilled.
    reply = http("PUT", api.payg_url(sub), token=contributor, body={"enabled": False})
    assert reply.status == 200, reply.raw
    assert reply.json == {"subscription_id": sub, "payg_enabled": False, "previous": True}
    answer = api.authorize(attempt(sub))
    assert (answer["decision"], answer["reason"], answer["max_duration_s"]) == (
        "block", "exhausted", None)
    api.produce(topics.cdr, [cdr(sub, "c4", "user-c", 30)])
    c4 = api.rated(sub, ["c4"])["c4"]
    assert (c4["outcome"], c4["unbilled_s"], c4["charge_id"]) == ("blocked", 60, None)

    # Both switches are audited on subscriptions.events, in order.
    events = api.read(
        topics.subscription_events,
        lambda rs: sum(r.get("type") == "payg.changed" and r.get("subscription_id") == sub
                       for r in rs) >= 2,
        what="payg.changed events")
    changes = [r for r in events
               if r.get("type") == "payg.changed" and r.get("subscription_id") == sub]
    assert len(changes) == 2
    for change in changes:
        assert set(change) == {"type", "subscription_id", "enabled", "previous", "revision",
                               "actor", "role", "at"}
        assert abs(ms(change["at"]) - now_ms()) < 300_000
    assert [(c["enabled"], c["previous"], c["actor"], c["role"]) for c in changes] == [
        (True, False, "olivia@example.test", "owner"),
        (False, True, "carl@example.test", "contributor"),
    ]

    # The cost-management view, exactly.
    usage = http("GET", api.usage_url(sub), token=tokens.reader(account)).json
    period_end = usage.pop("period_end")
    assert datetime.fromisoformat(period_end.replace("Z", "+00:00")).timestamp() * 1000 > now_ms()
    assert usage == {
        "subscription_id": sub,
        "billing_account_id": account,
        "period": period,
        "payg_enabled": False,
        "currency": "EUR",
        "zones": {
            "domestic": {"included_s": 120, "used_included_s": 120, "remaining_s": 0,
                         "reserved_s": 0, "available_s": 0,
                         "overage_s": 120, "unbilled_s": 60, "overage_amount": "0.050000",
                         "status": "blocked"},
            "international": {"included_s": 60, "used_included_s": 0, "remaining_s": 60,
                              "reserved_s": 0, "available_s": 60,
                              "overage_s": 0, "unbilled_s": 0, "overage_amount": "0.000000",
                              "status": "ok"},
        },
    }

    # And the usage report: user-a 60 + 120, user-b 60, user-c 60 (unbilled still billable).
    users = http("GET", api.users_url(sub), token=owner).json
    assert users == {
        "period": period,
        "users": [
            {"user_id": "user-a", "billable_s": {"domestic": 180, "international": 0},
             "total_s": 180, "overage_amount": "0.050000", "spend_limit": None},
            {"user_id": "user-b", "billable_s": {"domestic": 60, "international": 0},
             "total_s": 60, "overage_amount": "0.000000", "spend_limit": None},
            {"user_id": "user-c", "billable_s": {"domestic": 60, "international": 0},
             "total_s": 60, "overage_amount": "0.000000", "spend_limit": None},
        ],
        "next": None,
    }


# ------------------------------------------------------------ usage report ---


def test_users_report_sorted_and_paginated(api: ApiDeployment) -> None:
    account, sub = unique("ba-users"), unique("sub-users")
    api.load_subscriptions([subscription_doc(
        subscription_id=sub, billing_account_id=account, licenses=10, domestic_minutes=100,
        international_minutes=100, anchor_day=safe_anchor_day())])
    calls = [
        cdr(sub, "u1", "alice", 60), cdr(sub, "u2", "alice", 1),
        cdr(sub, "u3", "alice", 30, zone="international"),   # alice: 120 + 60 = 180
        cdr(sub, "u4", "bob", 180),                           # bob: 180 (tie: after alice)
        cdr(sub, "u5", "carol", 61),                          # carol: 120
        cdr(sub, "u6", "gina", 1, zone="international"),      # gina: 60
        cdr(sub, "u7", "dave", 0),                            # 0 s bills nothing
        cdr(sub, "u8", "erin", 300, direction="inbound"),     # free
        cdr(sub, "u9", "frank", 100, emergency=True),         # free
    ]
    api.produce(api.settings.topics.cdr, calls)
    api.rated(sub, [c["call_id"] for c in calls])
    reader = api.tokens.reader(account)

    full = http("GET", api.users_url(sub), token=reader).json
    assert [(u["user_id"], u["total_s"]) for u in full["users"]] == [
        ("alice", 180), ("bob", 180), ("carol", 120), ("gina", 60)]
    assert full["users"][0]["billable_s"] == {"domestic": 120, "international": 60}
    assert full["users"][3]["billable_s"] == {"domestic": 0, "international": 60}
    assert full["next"] is None

    for limit in (1, 3):
        pages: list[Any] = []
        cursor: str | None = None
        while True:
            query: dict[str, Any] = {"limit": limit}
            if cursor:
                query["cursor"] = cursor
            reply = http("GET", api.users_url(sub, **query), token=reader)
            assert reply.status == 200, reply.raw
            page = reply.json
            assert page["period"] == full["period"]
            assert 1 <= len(page["users"]) <= limit
            pages += page["users"]
            cursor = page["next"]
            if cursor is None:
                break
            assert isinstance(cursor, str) and len(pages) < 10
        assert pages == full["users"], f"limit={limit}"

    bad_queries: list[tuple[dict[str, Any], str]] = [
        ({"limit": 0}, "invalid_limit"), ({"limit": 1001}, "invalid_limit"),
        ({"limit": "ten"}, "invalid_limit"), ({"cursor": "not-a-cursor"}, "invalid_cursor")]
    for query, error in bad_queries:
        reply = http("GET", api.users_url(sub, **query), token=reader)
        assert reply.status == 422, (query, reply.raw)
        assert reply.error_body()["error"] == error


# ------------------------------------------------------------- bad bodies ---


PAYG_BAD_BODIES: list[tuple[str, bytes]] = [
    ("not JSON", b"enabled=true"),
    ("truncated JSON", b'{"enabled": tru'),
    ("empty", b""),
    ("array", b"[true]"),
    ("bare boolean", b"true"),
    ("string flag", b'{"enabled": "true"}'),
    ("integer flag", b'{"enabled": 1}'),
    ("null flag", b'{"enabled": null}'),
    ("missing field", b"{}"),
    ("unknown field", b'{"enabled": true, "actor": "someone-else"}'),
    ("only unknown field", b'{"payg": true}'),
]

ATTEMPT_BAD_BODIES: list[tuple[str, bytes]] = [
    ("not JSON", b"attempt"),
    ("array", b"[]"),
    ("missing user_id", b'{"attempt_id":"a","subscription_id":"s","direction":"outbound",'
                        b'"zone":"domestic"}'),
    ("wrong type", b'{"attempt_id":"a","subscription_id":"s","user_id":"u","direction":5,'
                   b'"zone":"domestic"}'),
    ("unknown zone", b'{"attempt_id":"a","subscription_id":"s","user_id":"u",'
                     b'"direction":"outbound","zone":"mars"}'),
    ("unknown field", b'{"attempt_id":"a","subscription_id":"s","user_id":"u",'
                      b'"direction":"outbound","zone":"domestic","x":1}'),
    ("bad timestamp", b'{"attempt_id":"a","subscription_id":"s","user_id":"u",'
                      b'"direction":"outbound","zone":"domestic","at":"yesterday at noon"}'),
]


def test_bad_bodies_are_refused_and_change_nothing(api: ApiDeployment) -> None:
    account, sub = unique("ba-bad"), unique("sub-bad")
    api.load_subscriptions([small_plan(sub, account)])
    api.produce(api.settings.topics.cdr, [cdr(sub, "b1", "user-a", 30)])
    api.rated(sub, ["b1"])
    owner = api.tokens.owner(account)
    authorizer = api.tokens.authorizer()
    before = api.redis_state(sub)
    assert before, "the subscription has Redis state"
    oversized = b'{"enabled": true, "pad": "' + b"x" * (100 * KIB) + b'"}'

    for name, body in PAYG_BAD_BODIES:
        reply = http("PUT", api.payg_url(sub), token=owner, raw=body)
        assert reply.status == 422, (name, reply.status, reply.raw)
        reply.error_body()
    for name, body in ATTEMPT_BAD_BODIES:
        reply = http("POST", api.authorize_url, token=authorizer, raw=body)
        assert reply.status == 422, (name, reply.status, reply.raw)
        reply.error_body()
    for url, token in [(api.payg_url(sub), owner), (api.authorize_url, authorizer)]:
        method = "PUT" if url.endswith("payg") else "POST"
        reply = http(method, url, token=token, raw=oversized)
        assert reply.status == 413, (url, reply.status, reply.raw[:200])
        assert reply.error_body()["error"] == "payload_too_large"
        chunked = http_chunked(method, url, [oversized[i:i + 8 * KIB]
                                             for i in range(0, len(oversized), 8 * KIB)], token)
        assert chunked.status == 413, (url, "chunked", chunked.status, chunked.raw[:200])
        chunked.error_body()
    # exactly 64 KiB is still accepted as a size (and then judged as JSON)
    at_limit = b'{"enabled": true' + b" " * (64 * KIB - 17) + b"}"
    assert len(at_limit) == 64 * KIB
    assert http("PUT", api.payg_url(sub), token=owner, raw=at_limit).status == 200
    assert http("PUT", api.payg_url(sub), token=owner, body={"enabled": False}).status == 200

    after = api.redis_state(sub)
    # the two valid switches (on, then back off) bumped the PAYG revision and reserved it
    # before publishing; nothing else moved
    sub_key = next(key for key in after if key.endswith(":sub"))
    revision = int(before[sub_key].pop("payg_rev", 0)) + 2
    before[sub_key].pop("payg_next", None)
    assert int(after[sub_key].pop("payg_rev")) == revision
    assert int(after[sub_key].pop("payg_next")) == revision
    assert after == before

    # Only the two valid switches were recorded: nothing from the refused requests.
    events = api.read(
        api.settings.topics.subscription_events,
        lambda rs: sum(r.get("subscription_id") == sub for r in rs) >= 2,
        what="payg.changed events")
    changes = [(r["enabled"], r["previous"]) for r in events
               if r.get("type") == "payg.changed" and r.get("subscription_id") == sub]
    assert changes == [(True, False), (False, True)]


# ------------------------------------------------- max_duration at the edge ---

# (increment, CDR durations draining a 120 s pool, expected decision, max_duration_s)
EDGE_CASES: list[tuple[str, list[int], str, int | None]] = [
    ("60/60", [], "permit", 120),
    ("60/60", [30], "permit", 60),      # 60 s billed, 60 left
    ("60/60", [61], "block", None),     # 120 s billed, nothing left
    ("30/6", [85], "permit", 30),       # 90 billed, 30 left: exactly the minimum
    ("30/6", [91], "block", None),      # 96 billed, 24 left < 30 minimum
    ("30/6", [65], "permit", 54),       # 66 billed, 54 left: 9 steps of 6
    ("1/1", [119], "permit", 1),        # 1 s left
    ("1/1", [], "permit", 120),
    ("60/1", [59], "permit", 60),       # 60 billed (minimum), 60 left
    ("60/1", [61], "block", None),      # 61 billed, 59 left < 60 minimum
    ("60/1", [], "permit", 120),
]


@pytest.fixture(scope="module")
def edge_subscriptions(api: ApiDeployment) -> list[str]:
    account = unique("ba-edge")
    subs = [unique(f"sub-edge{i}") for i in range(len(EDGE_CASES))]
    api.load_subscriptions([small_plan(sub, account, increment)
                            for sub, (increment, *_rest) in zip(subs, EDGE_CASES, strict=True)])
    calls = [cdr(sub, f"e{j}", "user-a", duration)
             for sub, (_, durations, *_rest) in zip(subs, EDGE_CASES, strict=True)
             for j, duration in enumerate(durations)]
    api.produce(api.settings.topics.cdr, calls)
    for sub, (_, durations, *_rest) in zip(subs, EDGE_CASES, strict=True):
        if durations:
            api.rated(sub, [f"e{j}" for j in range(len(durations))])
    return subs


@pytest.mark.parametrize(("case", "increment", "durations", "decision", "max_duration"),
                         [(i, *case) for i, case in enumerate(EDGE_CASES)],
                         ids=[f"{c[0]}-after-{'+'.join(map(str, c[1])) or 'nothing'}"
                              for c in EDGE_CASES])
def test_max_duration_near_the_pool_edge_over_http(
    api: ApiDeployment, edge_subscriptions: list[str], case: int, increment: str,
    durations: list[int], decision: str, max_duration: int | None,
) -> None:
    answer = api.authorize(attempt(edge_subscriptions[case]))
    assert (answer["decision"], answer["max_duration_s"]) == (decision, max_duration)
    assert answer["reason"] == ("included" if decision == "permit" else "exhausted")


def test_free_and_unknown_attempts_over_http(api: ApiDeployment) -> None:
    unknown = unique("sub-nobody")
    answer = api.authorize(attempt(unknown))
    assert (answer["decision"], answer["reason"], answer["max_duration_s"]) == (
        "block", "unknown_subscription", None)
    for extra in ({"direction": "inbound"}, {"emergency": True}):
        answer = api.authorize(attempt(unknown, **extra))
        assert (answer["decision"], answer["reason"], answer["max_duration_s"]) == (
            "permit", "free", None)


def test_metrics_count_http_requests_and_authorize_latency(api: ApiDeployment) -> None:
    api.authorize(attempt(unique("sub-metrics")))
    http("GET", api.usage_url("whatever"))
    text = http("GET", f"{api.url}/metrics").raw.decode()
    assert 'rater_http_requests_total{route="/v1/authorize",status="200"}' in text
    assert ('rater_http_requests_total{route="/v1/subscriptions/{subscription_id}/usage",'
            'status="401"}') in text
    assert "rater_authorize_duration_seconds_count" in text
    assert 'rater_decisions_total{channel="http",decision="block",reason="unknown_subscription"}' \
        in text


# ------------------------------------------------------- operator commands ---


def test_operator_commands_against_the_worker(
    api: ApiDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    account, sub = unique("ba-ops"), unique("sub-ops")
    api.load_subscriptions([small_plan(sub, account)])
    key_file = tmp_path / "private.pem"
    key_file.write_text(api.tokens.private_pem)

    assert rater_main(["token", "--sub", "ops@example.test", "--role", f"{account}=owner",
                       "--private-key", str(key_file), "--issuer", ISSUER,
                       "--audience", AUDIENCE]) == 0
    token = capsys.readouterr().out.strip()
    assert token.count(".") == 2

    assert rater_main(["usage", sub, "--token", token, "--url", api.url]) == 0
    table = capsys.readouterr().out
    assert f"subscription {sub}" in table and account in table
    assert any(line.startswith("domestic") and "120s" in line and line.rstrip().endswith("ok")
               for line in table.splitlines()), table

    assert rater_main(["payg", sub, "on", "--token", token, "--url", api.url]) == 0
    assert capsys.readouterr().out.strip() == f"PAYG for {sub}: on (was off)"

    reader = api.tokens.reader(account)
    assert rater_main(["payg", sub, "off", "--token", reader, "--url", api.url]) == 1
    assert "HTTP 403" in capsys.readouterr().err
    assert http("GET", api.usage_url(sub), token=token).json["payg_enabled"] is True
