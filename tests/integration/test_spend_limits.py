"""Per-user spend limits (SPEC §14) end to end: a real `rater worker` with its history sink,
HTTP, Kafka, Redis and PostgreSQL.

* `PUT /v1/subscriptions/{id}/users/{user_id}/spend-limit`: roles, errors and their order,
  and the change recorded as `spend_limit.changed` on the topic and in the history;
* the event from other producers: applied by revision, dead-lettered like the others;
* 100 concurrent sessions of one user, PAYG on, a limit of 1.00: the grants' worst case
  never passes the limit, the calls ended within their grants are charged at most 1.00,
  the user's next call is blocked (`spend_limit`, §6 and §11), the subscription's other
  users are not, inbound and emergency calls are permitted; the reference model agrees;
* the users report shows each user's overage amount and limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from rater.history import db
from rater.history.audit import audit_trail
from rater.rating.clock import RatingClock, now_ms
from rater.rating.increments import billable_seconds
from rater.rating.model import ReferenceRater
from rater.rating.results import CallRating
from rater.rating.sessions import SessionPolicy
from rater.rating.spend import max_overage_within
from rater.records import (
    Increment,
    SessionInitial,
    SessionTerminate,
    cdr_fingerprint,
    decode_cdr,
    subscription_from_document,
)
from tests.builders import attempt_doc, cdr_doc, subscription_doc
from tests.integration import session_support as sessions
from tests.integration.api_support import (
    ApiDeployment,
    http,
    safe_anchor_day,
    started_ago,
    sync_redis,
    unique,
)
from tests.integration.history.support import api_with_history

pytestmark = pytest.mark.integration

KIB = 1024
LIMIT_1 = 1_000_000  # 1.00 in micro-units
RATE_MICRO = 25_000  # 0.025 a minute


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiDeployment]:
    with api_with_history(tmp_path_factory.mktemp("limits")) as started:
        yield started


def plan(sub: str, account: str, *, payg: bool = True, minutes: int = 10) -> dict[str, Any]:
    """One licence of `minutes` domestic minutes, 60/60, 0.025 EUR a minute beyond them."""
    return subscription_doc(subscription_id=sub, billing_account_id=account, licenses=1,
                            domestic_minutes=minutes, international_minutes=0,
                            domestic_rate="0.025", increment="60/60",
                            anchor_day=safe_anchor_day(), payg=payg)


def limit_url(api: ApiDeployment, sub: str, user: str) -> str:
    return (f"{api.url}/v1/subscriptions/{quote(sub, safe='')}/users/"
            f"{quote(user, safe='')}/spend-limit")


def limit_events(api: ApiDeployment, sub: str, count: int) -> list[dict[str, Any]]:
    def mine(records: list[Any]) -> list[dict[str, Any]]:
        return [r for r in records if r.get("type") == "spend_limit.changed"
                and r.get("subscription_id") == sub]

    records = api.read(api.settings.topics.subscription_events,
                       lambda rs: len(mine(rs)) >= count, what="spend_limit.changed events")
    return mine(records)


def history_trail(api: ApiDeployment, sub: str, count: int) -> list[dict[str, Any]]:
    """The `spend_limit.changed` audit trail of the history, newest first, once it has
    `count` events (the sink copies them from the topic)."""
    async def read() -> list[dict[str, Any]]:
        conn = await db.connect(api.settings)
        try:
            for _ in range(120):
                entries = await audit_trail(conn, sub, "spend_limit.changed")
                if len(entries) >= count:
                    return [{**orjson.loads(e.record), "_actor": e.actor, "_role": e.role}
                            for e in entries]
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
        raise AssertionError(f"the history never held {count} spend_limit.changed events")

    return asyncio.run(read())


def users_report(api: ApiDeployment, sub: str, account: str) -> dict[str, dict[str, Any]]:
    reply = http("GET", api.users_url(sub), token=api.tokens.reader(account))
    assert reply.status == 200, reply.raw
    return {u["user_id"]: u for u in reply.json["users"]}


# ------------------------------------------------------------- the endpoint ---


def test_the_endpoint_checks_roles_and_bodies_and_records_every_change(
        api: ApiDeployment) -> None:
    account, sub = unique("ba-lim"), unique("sub-lim")
    api.load_subscriptions([plan(sub, account)])
    user = "ann/ops 1"  # percent-encoded in the path
    url = limit_url(api, sub, user)
    owner = api.tokens.owner(account, subject="olivia@example.test")
    contributor = api.tokens.contributor(account, subject="carl@example.test")

    first = http("PUT", url, token=owner, body={"amount": "5.00"})
    assert first.status == 200, first.raw
    assert first.json == {"subscription_id": sub, "user_id": user, "amount": "5.000000",
                          "previous": None}
    second = http("PUT", url, token=contributor, body={"amount": "2.5"})
    assert second.status == 200, second.raw
    assert (second.json["amount"], second.json["previous"]) == ("2.500000", "5.000000")
    assert api.redis_hash(api.keys.limits(sub)) == {f"l:{user}": "2500000", f"r:{user}": "2",
                                     f"n:{user}": "2"}

    big = b'{"amount": "1", "pad": "' + b"x" * (64 * KIB) + b'"}'
    other_sub = unique("sub-none")
    cases: list[tuple[str, str, str | None, Any, bytes | None, int, str]] = [
        # (what, url, token, body, raw body, status, error)
        ("no token", url, None, {"amount": "1"}, None, 401, "unauthorized"),
        ("bad token", url, api.tokens.wrong_signature(account), {"amount": "1"}, None, 401,
         "unauthorized"),
        ("reader", url, api.tokens.reader(account), {"amount": "1"}, None, 403, "forbidden"),
        ("reader, bad body: the role first", url, api.tokens.reader(account), None, b"{no",
         403, "forbidden"),
        ("owner of another account", url, api.tokens.owner(unique("ba")), {"amount": "1"},
         None, 403, "forbidden"),
        ("call_authorizer scope", url, api.tokens.authorizer(), {"amount": "1"}, None, 403,
         "forbidden"),
        ("unknown subscription, bad body: 404 first", limit_url(api, other_sub, user), owner,
         None, b"{no", 404, "not_found"),
        ("not JSON", url, owner, None, b"{no", 422, "invalid_request"),
        ("a number", url, owner, {"amount": 5}, None, 422, "invalid_request"),
        ("negative", url, owner, {"amount": "-1"}, None, 422, "invalid_request"),
        ("seven places", url, owner, {"amount": "1.1234567"}, None, 422, "invalid_request"),
        ("above 1,000,000,000", url, owner, {"amount": "1000000000.01"}, None, 422,
         "invalid_request"),
        ("missing amount", url, owner, {}, None, 422, "invalid_request"),
        ("unknown field", url, owner, {"amount": "1", "currency": "EUR"}, None, 422,
         "invalid_request"),
        ("user id too long", limit_url(api, sub, "u" * 129), owner, {"amount": "1"}, None,
         422, "invalid_request"),
        ("over 64 KiB", url, owner, None, big, 413, "payload_too_large"),
    ]
    for what, target, bearer, body, raw, status, error in cases:
        before = api.redis_hash(api.keys.limits(sub))
        reply = http("PUT", target, token=bearer, body=body, raw=raw)
        assert reply.status == status, (what, reply.status, reply.raw[:300])
        assert reply.error_body()["error"] == error, (what, reply.json)
        assert api.redis_hash(api.keys.limits(sub)) == before, what
    assert http("GET", url, token=owner).status == 405

    cleared = http("PUT", url, token=owner, body={"amount": None})
    assert cleared.status == 200, cleared.raw
    assert (cleared.json["amount"], cleared.json["previous"]) == (None, "2.500000")
    assert api.redis_hash(api.keys.limits(sub)) == {f"r:{user}": "3", f"n:{user}": "3"}

    # three changes, each on the topic once (refused requests published nothing) ...
    events = limit_events(api, sub, 3)
    assert [(e["revision"], e["amount"], e["previous"], e["actor"], e["role"])
            for e in events] == [
        (1, "5.000000", None, "olivia@example.test", "owner"),
        (2, "2.500000", "5.000000", "carl@example.test", "contributor"),
        (3, None, "2.500000", "olivia@example.test", "owner")]
    assert all(e["user_id"] == user and e["at"].endswith("Z") for e in events)
    # ... and in the history's audit trail, newest first
    trail = history_trail(api, sub, 3)
    assert [(e["revision"], e["_actor"], e["_role"]) for e in trail] == [
        (3, "olivia@example.test", "owner"), (2, "carl@example.test", "contributor"),
        (1, "olivia@example.test", "owner")]


def test_events_from_other_producers_apply_by_revision_or_are_dead_lettered(
        api: ApiDeployment) -> None:
    account, sub = unique("ba-ev"), unique("sub-ev")
    api.load_subscriptions([plan(sub, account)])
    owner = api.tokens.owner(account)
    assert http("PUT", limit_url(api, sub, "bo"), token=owner,
                body={"amount": "3"}).status == 200  # revision 1
    nobody = unique("sub-nobody")
    api.produce(api.settings.topics.subscription_events, [
        # a replay of an old revision changes nothing ...
        {"type": "spend_limit.changed", "subscription_id": sub, "user_id": "bo",
         "amount": "9.000000", "revision": 1},
        # ... one without revision always applies
        {"type": "spend_limit.changed", "subscription_id": sub, "user_id": "cy",
         "amount": "0.5"},
        {"type": "spend_limit.changed", "subscription_id": sub, "user_id": "cy",
         "amount": "7.1234567"},  # invalid
        {"type": "spend_limit.changed", "subscription_id": nobody, "user_id": "cy",
         "amount": "1"},  # unknown subscription
    ])
    letters = api.read(api.settings.topics.dlq,
                       lambda ds: {d["reason"] for d in ds if sub in d["value"]
                                   or nobody in d["value"]} >= {"invalid",
                                                                "unknown_subscription"},
                       what="the dead letters")
    mine = {d["reason"]: d for d in letters if sub in d["value"] or nobody in d["value"]}
    assert "7.1234567" in mine["invalid"]["value"]
    assert mine["invalid"]["source_topic"] == api.settings.topics.subscription_events
    assert nobody in mine["unknown_subscription"]["value"]
    # the worker got past the events before the dead letters: their effects are there
    report = users_report(api, sub, account)
    assert (report["bo"]["spend_limit"], report["cy"]["spend_limit"]) == ("3.000000",
                                                                          "0.500000")
    assert report["cy"] == {"user_id": "cy", "billable_s": {"domestic": 0, "international": 0},
                            "total_s": 0, "overage_amount": "0.000000",
                            "spend_limit": "0.500000"}


# ----------------------------------------------- 100 sessions, one user, 1.00 ---


def test_100_concurrent_sessions_of_one_user_never_grant_more_than_a_limit_of_1(
        api: ApiDeployment) -> None:
    """PAYG on, a 600 s pool, 0.025 a minute beyond it, 60/60; the user may spend 1.00:
    2,400 s of overage. 100 sessions ask for 420 s each, all at once."""
    account, sub = unique("ba-burst"), unique("sub-burst")
    doc = plan(sub, account)
    api.load_subscriptions([doc])
    spender, other = "spender", "colleague"
    owner = api.tokens.owner(account)
    assert http("PUT", limit_url(api, sub, spender), token=owner,
                body={"amount": "1.00"}).status == 200
    token = api.tokens.authorizer()
    requests: list[tuple[str, dict[str, Any]]] = [(sessions.session_path(), {
        "session_id": f"burst-{i:03d}", "subscription_id": sub, "user_id": spender,
        "direction": "outbound", "zone": "domestic", "requested_s": 420,
        "request_number": 0}) for i in range(100)]
    answers = {body["session_id"]: answer for (_, body), (status, answer) in zip(
        requests, asyncio.run(sessions.post_all([api.url], requests, token)), strict=True)
        if status == 200}
    assert len(answers) == 100
    permitted = {sid: a for sid, a in answers.items() if a["decision"] == "permit"}
    blocked = [a for a in answers.values() if a["decision"] == "block"]

    # what was granted: the pool, and what 1.00 buys beyond it, to the second
    increment = Increment(60, 60)
    granted_billable = sum(billable_seconds(a["granted_s"], increment)
                           for a in permitted.values())
    assert granted_billable == 600 + (max_overage_within(LIMIT_1, RATE_MICRO) or 0) == 3000
    assert sorted(a["granted_s"] for a in permitted.values()) == [60] + [420] * 7
    [partial] = [a for a in permitted.values() if a["granted_s"] == 60]
    assert (partial["final"], partial["reason"]) == (True, "spend_limit")
    assert sorted(a["reason"] for a in permitted.values() if a["granted_s"] == 420) == (
        ["included"] + ["payg"] * 6)
    assert len(blocked) == 92
    assert {(a["reason"], a["granted_s"], a["final"]) for a in blocked} == {
        ("spend_limit", 0, True)}
    # the grants' worst-case cost, as the sessions hold it: exactly the limit
    client = sync_redis(api.settings, decode_responses=True)
    try:
        held = [int(client.hget(api.keys.session(sub, sid), "ra"))
                for sid in permitted]
    finally:
        client.close()
    worst_case = sum(held)
    assert worst_case == LIMIT_1

    # the user's next call is blocked, by §6 and by §11; inbound and emergency are not
    decision = api.authorize(attempt_doc(attempt_id=unique("att"), subscription_id=sub,
                                         user_id=spender))
    assert (decision["decision"], decision["max_duration_s"], decision["reason"]) == (
        "block", None, "spend_limit")
    streamed = [attempt_doc(attempt_id=unique("stream"), subscription_id=sub, user_id=user)
                for user in (spender, other)]
    api.produce(api.settings.topics.attempts, streamed)
    wanted = {a["attempt_id"] for a in streamed}
    decided = {d["attempt_id"]: d for d in api.read(
        api.settings.topics.decisions,
        lambda ds: wanted <= {d["attempt_id"] for d in ds}, what="streamed decisions")}
    assert [(decided[a["attempt_id"]]["decision"], decided[a["attempt_id"]]["reason"])
            for a in streamed] == [("block", "spend_limit"), ("permit", "payg")]
    assert_next_calls(api, sub, spender, other, token, "after the set-ups")

    # every call runs to its grant and ends; half the CDRs come before their terminate
    ends = {sid: a["granted_s"] for sid, a in permitted.items()}
    first = sorted(ends)[::2]
    later = [sid for sid in sorted(ends) if sid not in first]

    def terminate(group: list[str]) -> None:
        replies = asyncio.run(sessions.post_all([api.url], [
            (sessions.session_path(sid, "terminate"), {"used_s": ends[sid],
                                                       "request_number": 1})
            for sid in group], token))
        assert all(status == 200 for status, _ in replies), replies

    terminate(later)
    api.produce(api.settings.topics.cdr, [
        cdr_doc(call_id=sid, subscription_id=sub, user_id=spender,
                started_at=started_ago(900), duration_s=ends[sid]) for sid in sorted(ends)])
    rated = api.rated(sub, list(ends))
    terminate(first)
    charged = sum(Decimal(r["amount"]) for r in rated.values())
    assert charged <= Decimal("1.00")
    print(f"\n100 sessions of one user, limit 1.00: granted worst case "
          f"{worst_case / 1e6:.6f}, charged {charged} over {len(rated)} calls "
          f"({len(blocked)} set-ups blocked)")

    # the reference model, driven in a serial order that gives each answer, agrees
    model = model_of(doc, spender, answers, ends)
    report = users_report(api, sub, account)
    usage = report[spender]
    key = (sub, next(iter(rated.values()))["period"], spender)
    assert to_micro_text(usage["overage_amount"]) == model.user_amounts[key] == to_micro_text(
        str(charged)) == LIMIT_1
    assert model.user_reserved.get(key, 0) == 0
    assert usage["spend_limit"] == "1.000000"
    assert usage["billable_s"]["domestic"] == sum(r["billable_s"] for r in rated.values())
    assert other not in report  # no rated call, no limit

    # charged up to the limit: the next call is still blocked, the others are not
    assert_next_calls(api, sub, spender, other, token, "after the charges")


def test_below_the_limit_grants_and_decisions_are_capped_to_what_it_leaves(
        api: ApiDeployment) -> None:
    """No pool, PAYG on, 0.025 a minute, a limit of 0.10: 240 s of overage."""
    account, sub = unique("ba-cap"), unique("sub-cap")
    api.load_subscriptions([plan(sub, account, minutes=0)])
    assert http("PUT", limit_url(api, sub, "dee"), token=api.tokens.owner(account),
                body={"amount": "0.10"}).status == 200
    token = api.tokens.authorizer()
    decision = api.authorize(attempt_doc(attempt_id=unique("att"), subscription_id=sub,
                                         user_id="dee"))
    assert (decision["decision"], decision["max_duration_s"], decision["reason"]) == (
        "permit", 240, "payg")

    def set_up(sid: str, requested: int) -> dict[str, Any]:
        [(status, answer)] = asyncio.run(sessions.post_all([api.url], [(
            sessions.session_path(), {"session_id": sid, "subscription_id": sub,
                                      "user_id": "dee", "direction": "outbound",
                                      "zone": "domestic", "requested_s": requested,
                                      "request_number": 0})], token))
        assert status == 200, answer
        found: dict[str, Any] = answer
        return found

    first = set_up("cap-1", 600)
    assert (first["decision"], first["granted_s"], first["final"], first["reason"]) == (
        "permit", 240, True, "spend_limit")
    # its reservation holds the whole budget: §6 now blocks too
    assert api.authorize(attempt_doc(attempt_id=unique("att"), subscription_id=sub,
                                     user_id="dee"))["reason"] == "spend_limit"
    # the call ends at 100 s (billed 120 s: 0.050000); what is left goes to the next one
    [(status, _)] = asyncio.run(sessions.post_all([api.url], [
        (sessions.session_path("cap-1", "terminate"), {"used_s": 100})], token))
    assert status == 200
    api.produce(api.settings.topics.cdr, [cdr_doc(
        call_id="cap-1", subscription_id=sub, user_id="dee", started_at=started_ago(200),
        duration_s=100)])
    assert api.rated(sub, ["cap-1"])["cap-1"]["amount"] == "0.050000"
    second = set_up("cap-2", 600)
    assert (second["granted_s"], second["final"], second["reason"]) == (120, True,
                                                                        "spend_limit")
    # an update asking for more gets nothing beyond the cap, and is told to end
    [(status, update)] = asyncio.run(sessions.post_all([api.url], [
        (sessions.session_path("cap-2", "update"), {"used_s": 110, "requested_s": 300,
                                                    "request_number": 1})], token))
    assert status == 200
    assert (update["granted_s"], update["final"], update["reason"]) == (120, True,
                                                                        "spend_limit")
    assert users_report(api, sub, account)["dee"]["overage_amount"] == "0.050000"


def assert_next_calls(api: ApiDeployment, sub: str, spender: str, other: str, token: str,
                      when: str) -> None:
    """The spender's next outbound call is blocked; the colleague's is not; the spender's
    inbound and emergency calls are permitted."""
    def attempt(user: str, **kw: Any) -> dict[str, Any]:
        return api.authorize(attempt_doc(attempt_id=unique("att"), subscription_id=sub,
                                         user_id=user, **kw))

    assert attempt(spender)["reason"] == "spend_limit", when
    assert attempt(other)["decision"] == "permit", when
    assert (attempt(spender, direction="inbound")["reason"],
            attempt(spender, emergency=True)["reason"]) == ("free", "free"), when
    requests: list[tuple[str, dict[str, Any]]] = [(sessions.session_path(), {
        "session_id": unique(name), "subscription_id": sub, "user_id": user,
        "direction": "outbound", "zone": "domestic", "requested_s": 60, **extra})
        for name, user, extra in (("next", spender, {}), ("colleague", other, {}),
                                  ("inbound", spender, {"direction": "inbound"}),
                                  ("emergency", spender, {"emergency": True}))]
    replies = asyncio.run(sessions.post_all([api.url], requests, token))
    assert [(s, a["decision"], a["reason"]) for s, a in replies] == [
        (200, "block", "spend_limit"), (200, "permit", "payg"), (200, "permit", "free"),
        (200, "permit", "free")], when
    # the colleague's call ends unanswered: nothing of the pool is used
    colleague = requests[1][1]["session_id"]
    [(status, _)] = asyncio.run(sessions.post_all([api.url], [
        (sessions.session_path(colleague, "terminate"), {"used_s": 0})], token))
    assert status == 200


def to_micro_text(amount: str) -> int:
    return int(Decimal(amount) * 1_000_000)


def model_of(doc: dict[str, Any], user: str, answers: dict[str, dict[str, Any]],
             ends: dict[str, int]) -> ReferenceRater:
    """The model in a serial order that must give every session the answer it got: the
    grant that fit the pool first, then the other full grants, the partial one, the
    blocks; then the same ends and CDRs."""
    model = ReferenceRater()
    sub = subscription_from_document(doc)
    model.upsert(sub)
    model.set_spend_limit(sub.subscription_id, user, LIMIT_1)
    policy = SessionPolicy(600, 30, 3600)
    now = now_ms()

    def order(sid: str) -> tuple[int, str]:
        answer = answers[sid]
        rank = {"included": 0, "payg": 1, "spend_limit": 2}[answer["reason"]]
        return (rank if answer["decision"] == "permit" else 3), sid

    for sid in sorted(answers, key=order):
        got = answers[sid]
        want = model.sessions.initial(SessionInitial(
            sid, sub.subscription_id, user, "outbound", "domestic", False, 420, 0),
            policy, now).answer
        assert want is not None
        assert (want.decision, want.granted_s, want.final, want.reason) == (
            got["decision"], got["granted_s"], got["final"], got["reason"]), sid
    clock = RatingClock(now + 1000)
    for sid, used in sorted(ends.items()):
        model.sessions.terminate(sub.subscription_id, sid, SessionTerminate(used, 1, None),
                                 policy, now)
        cdr = decode_cdr(orjson.dumps(cdr_doc(
            call_id=sid, subscription_id=sub.subscription_id, user_id=user,
            started_at=started_ago(900), duration_s=used)))
        rating = model.rate(cdr, cdr_fingerprint(cdr), clock, clock.now_ms)
        assert isinstance(rating, CallRating) and rating.session == "closed"
    return model
