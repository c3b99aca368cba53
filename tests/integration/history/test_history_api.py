"""The endpoints of SPEC §12 against a real `rater worker`, Redis, Kafka and PostgreSQL.

The subscriptions reach the worker through Kafka (the lookups, 404 and the role check,
come from Redis); the history rows are written into the test's own schema with the
sink's writer, so every expected answer is computed here from the records themselves.
A second worker whose PostgreSQL is unreachable answers 503 `history_unavailable`, and
only after every check that comes before the database.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest

from rater.history import db
from rater.history.migrations import migrate
from rater.history.rows import audit_row, charge_row, rated_call_row
from rater.history.writer import RowWriter
from tests.builders import subscription_doc
from tests.integration.api_support import ApiDeployment, Reply, http, safe_anchor_day, unique
from tests.integration.harness import Deployment, free_port
from tests.integration.history.support import (
    BASE,
    amount_for,
    charge_of,
    drop_schema,
    dumps,
    history_dsn,
    new_schema,
    payg_event,
    rated_call,
    settings_for,
)

pytestmark = pytest.mark.integration

ACCOUNT = unique("ba-hist")
OTHER_ACCOUNT = unique("ba-hist-other")
SUB = unique("sub-hist")
SUB2 = unique("sub-hist2")  # same account, other currency
OTHER_SUB = unique("sub-hist-other")  # on OTHER_ACCOUNT
USERS = ("ann", "bob", "<b>cy</b>")
OUTCOMES = ("included", "exhausted", "blocked", "free")
CALLS = 523
MAX = 65_536


def _calls() -> list[dict[str, Any]]:
    calls = []
    for i in range(CALLS):
        overage = (i % 5) * 37 if i % 2 else 0
        started = BASE + timedelta(seconds=53 * i) if i % 11 else BASE  # ties on started_at
        calls.append(rated_call(i, SUB, user=USERS[i % 3], outcome=OUTCOMES[i % 4],
                                overage_s=overage, amount=amount_for(overage, "0.0333"),
                                started=started, account=ACCOUNT,
                                with_destination=i % 4 != 0))
    return calls


def _usd_calls() -> list[dict[str, Any]]:
    calls = []
    for i in range(40):
        record = rated_call(10_000 + i, SUB2, user=USERS[i % 3], overage_s=61 + i,
                            amount=amount_for(61 + i, "0.15"), account=ACCOUNT,
                            started=BASE + timedelta(days=i % 9, minutes=i))
        record["currency"] = "USD"
        calls.append(record)
    return calls


class History:
    def __init__(self) -> None:
        self.calls = _calls()
        self.usd_calls = _usd_calls()
        self.events = [payg_event(SUB, i % 2 == 0, f"2026-11-{10 + i}T08:00:00Z",
                                  actor=f"admin-{i}", revision=i + 1) for i in range(6)]

    @property
    def charges(self) -> list[dict[str, Any]]:
        return ([charge_of(c, "0.0333") for c in self.calls if c["charge_id"]]
                + [charge_of(c, "0.15") for c in self.usd_calls])

    async def write(self, schema: str) -> None:
        settings = settings_for(schema)
        conn = await db.connect(settings)
        try:
            await migrate(conn, schema)
            rows = [rated_call_row(dumps(r), MAX) for r in self.calls + self.usd_calls]
            rows += [charge_row(dumps(c), MAX) for c in self.charges]
            rows += [row for offset, event in enumerate(self.events)
                     if (row := audit_row(dumps(event), MAX, 0, offset, 0)) is not None]
            await RowWriter().write(conn, rows)
        finally:
            await conn.close()


def _deployment(tmp: Any, dsn: str, schema: str) -> ApiDeployment:
    deployment = Deployment(extra_env={"RATER_HISTORY_DSN": dsn,
                                       "RATER_HISTORY_SCHEMA": schema})
    api = ApiDeployment(tmp, deployment=deployment).start()
    api.load_subscriptions([
        subscription_doc(subscription_id=SUB, billing_account_id=ACCOUNT,
                         anchor_day=safe_anchor_day()),
        subscription_doc(subscription_id=SUB2, billing_account_id=ACCOUNT, currency="USD",
                         anchor_day=safe_anchor_day()),
        subscription_doc(subscription_id=OTHER_SUB, billing_account_id=OTHER_ACCOUNT,
                         anchor_day=safe_anchor_day()),
    ])
    return api


@pytest.fixture(scope="module")
def history() -> Iterator[tuple[History, str]]:
    schema = new_schema()
    data = History()
    asyncio.run(data.write(schema))
    try:
        yield data, schema
    finally:
        asyncio.run(drop_schema(schema))


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory,
        history: tuple[History, str]) -> Iterator[ApiDeployment]:
    deployment = _deployment(tmp_path_factory.mktemp("history-api"), history_dsn(), history[1])
    try:
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="module")
def no_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiDeployment]:
    """A worker whose PostgreSQL does not listen (nothing on that port)."""
    dead = f"postgresql://rater@127.0.0.1:{free_port()}/rater"
    deployment = _deployment(tmp_path_factory.mktemp("history-down"), dead, "public")
    try:
        yield deployment
    finally:
        deployment.stop()


def calls_url(base: str, sub: str, csv_path: bool = False, **query: Any) -> str:
    tail = "calls.csv" if csv_path else "calls"
    return f"{base}/v1/subscriptions/{quote(sub, safe='')}/{tail}" + (
        f"?{urlencode(query)}" if query else "")


def charges_url(base: str, account: str, **query: Any) -> str:
    return f"{base}/v1/billing-accounts/{quote(account, safe='')}/charges" + (
        f"?{urlencode(query)}" if query else "")


def history_url(base: str, sub: str) -> str:
    return f"{base}/v1/subscriptions/{quote(sub, safe='')}/payg/history"


def newest_first(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (r["started_at"], r["call_id"]), reverse=True)


def csv_expected(records: list[dict[str, Any]]) -> list[dict[str, str]]:
    """What a CSV row holds for a record, stated independently of the implementation."""
    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return [{name: text(record.get(name)) for name in CSV_HEADER} for record in records]


CSV_HEADER = ["call_id", "subscription_id", "billing_account_id", "user_id", "started_at",
              "period", "zone", "direction", "emergency", "duration_s", "billable_s",
              "included_s", "overage_s", "unbilled_s", "outcome", "amount", "currency",
              "charge_id", "rated_at", "destination"]


def parse_csv(reply: Reply) -> list[dict[str, str]]:
    assert reply.status == 200, (reply.status, reply.raw[:300])
    assert reply.headers["Content-Type"].startswith("text/csv"), reply.headers
    text = reply.raw.decode()
    assert text.startswith(",".join(CSV_HEADER) + "\r\n"), text[:300]
    return list(csv.DictReader(io.StringIO(text, newline="")))


def page_through(api: ApiDeployment, token: str, limit: int, **query: Any) -> list[bytes]:
    """Every page's raw records (each exactly as the body carried it), in order."""
    seen: list[bytes] = []
    cursor: str | None = None
    for _ in range(10_000):  # bounded: far more pages than any test has
        params = {**query, "limit": limit, **({"cursor": cursor} if cursor else {})}
        reply = http("GET", calls_url(api.url, SUB, **params), token=token)
        assert reply.status == 200, (reply.status, reply.raw[:300])
        body = reply.json
        assert body["subscription_id"] == SUB
        assert len(body["calls"]) <= limit
        for record in body["calls"]:
            raw = orjson.dumps(record)
            assert raw in reply.raw  # the record as stored, byte for byte, in the body
            seen.append(raw)
        cursor = body["next"]
        if cursor is None:
            return seen
    raise AssertionError("paging did not end")


# -- who may call what -------------------------------------------------------------------

def endpoint_urls(base: str, sub: str, account: str) -> dict[str, str]:
    return {"calls": calls_url(base, sub), "calls.csv": calls_url(base, sub, True),
            "charges": charges_url(base, account, period="2026-11"),
            "payg history": history_url(base, sub)}


@pytest.mark.parametrize("endpoint", ["calls", "calls.csv", "charges", "payg history"])
def test_who_may_read(api: ApiDeployment, endpoint: str) -> None:
    tokens = api.tokens
    url = endpoint_urls(api.url, SUB, ACCOUNT)[endpoint]
    callers = {
        "no token": (None, 401), "expired": (tokens.expired(ACCOUNT), 401),
        "wrong signature": (tokens.wrong_signature(ACCOUNT), 401),
        "alg none": (tokens.alg_none(ACCOUNT), 401),
        "reader": (tokens.reader(ACCOUNT), 200), "contributor": (tokens.contributor(ACCOUNT), 200),
        "owner": (tokens.owner(ACCOUNT), 200),
        "owner of another account": (tokens.owner(OTHER_ACCOUNT), 403),
        "call authorizer": (tokens.authorizer(), 403),
    }
    for caller, (token, status) in callers.items():
        reply = http("GET", url, token=token)
        assert reply.status == status, (caller, reply.status, reply.raw[:300])
        if status != 200:
            assert reply.error_body()["error"] in ("unauthorized", "forbidden"), caller


@pytest.mark.parametrize("endpoint", ["calls", "calls.csv", "payg history"])
def test_unknown_subscription_is_404_once_the_token_is_valid(api: ApiDeployment,
                                                             endpoint: str) -> None:
    url = endpoint_urls(api.url, unique("no-such-sub"), ACCOUNT)[endpoint]
    assert http("GET", url).status == 401
    reply = http("GET", url, token=api.tokens.owner(ACCOUNT))
    assert reply.status == 404 and reply.error_body()["error"] == "not_found"


BAD_QUERIES = [
    ("calls", {"limit": "0"}), ("calls", {"limit": "1001"}), ("calls", {"limit": "ten"}),
    ("calls", {"cursor": "not-a-cursor"}), ("calls", {"from": "yesterday"}),
    ("calls", {"to": "2026-11-20"}), ("calls", {"outcome": "won"}),
    ("calls.csv", {"from": "2026-13-01T00:00:00Z"}), ("calls.csv", {"outcome": "x"}),
    ("charges", {"period": "2026-13"}), ("charges", {"period": "Nov 2026"}),
    ("payg history", {"limit": "0"}),
]


@pytest.mark.parametrize(("endpoint", "query"), BAD_QUERIES)
def test_bad_query_is_422_but_only_for_a_caller_with_a_role(
        api: ApiDeployment, endpoint: str, query: dict[str, str]) -> None:
    url = endpoint_urls(api.url, SUB, ACCOUNT)[endpoint].split("?")[0] + "?" + urlencode(query)
    stranger = http("GET", url, token=api.tokens.reader(OTHER_ACCOUNT))
    assert stranger.status == 403, (stranger.status, stranger.raw[:300])
    reply = http("GET", url, token=api.tokens.reader(ACCOUNT))
    assert reply.status == 422, (reply.status, reply.raw[:300])
    assert reply.error_body()["error"] in ("invalid_query", "invalid_cursor")


def test_database_down_is_503_after_every_other_check(no_database: ApiDeployment) -> None:
    tokens = no_database.tokens
    for endpoint, url in endpoint_urls(no_database.url, SUB, ACCOUNT).items():
        assert http("GET", url).status == 401, endpoint
        assert http("GET", url, token=tokens.owner(OTHER_ACCOUNT)).status == 403, endpoint
        reply = http("GET", url, token=tokens.reader(ACCOUNT))
        assert reply.status == 503, (endpoint, reply.status, reply.raw[:300])
        assert reply.error_body()["error"] == "history_unavailable", endpoint
    bad = calls_url(no_database.url, SUB, limit="0")
    assert http("GET", bad, token=tokens.reader(ACCOUNT)).status == 422
    unknown = calls_url(no_database.url, unique("no-such-sub"))
    assert http("GET", unknown, token=tokens.reader(ACCOUNT)).status == 404
    # the worker is still up and still answers its §7 endpoints
    assert http("GET", no_database.usage_url(SUB), token=tokens.reader(ACCOUNT)).status == 200


# -- what they answer ----------------------------------------------------------------

def test_paging_returns_every_call_once_newest_first(api: ApiDeployment,
                                                     history: tuple[History, str]) -> None:
    data, _ = history
    seen = page_through(api, api.tokens.reader(ACCOUNT), limit=37)
    assert seen == [orjson.dumps(r) for r in newest_first(data.calls)]
    assert len(set(seen)) == CALLS


def test_filters_page_through_exactly_the_matching_calls(api: ApiDeployment,
                                                         history: tuple[History, str]) -> None:
    data, _ = history
    start, end = "2026-11-15T12:30:00Z", "2026-11-15T18:00:00Z"
    query = {"user_id": "<b>cy</b>", "outcome": "exhausted", "from": start, "to": end}
    expected = [r for r in data.calls if r["user_id"] == "<b>cy</b>"
                and r["outcome"] == "exhausted" and start <= r["started_at"] < end]
    assert expected, "the filter must match some calls"
    seen = page_through(api, api.tokens.owner(ACCOUNT), limit=5, **query)
    assert seen == [orjson.dumps(r) for r in newest_first(expected)]


def test_csv_equals_the_records_by_path_and_by_accept(api: ApiDeployment,
                                                      history: tuple[History, str]) -> None:
    data, _ = history
    token = api.tokens.reader(ACCOUNT)
    by_path = http("GET", calls_url(api.url, SUB, True), token=token)
    assert by_path.headers.get("Transfer-Encoding") == "chunked", by_path.headers
    assert parse_csv(by_path) == csv_expected(newest_first(data.calls))
    query = {"user_id": "ann", "outcome": "included"}
    by_accept = http("GET", calls_url(api.url, SUB, **query), token=token,
                     headers={"Accept": "text/csv"})
    expected = [r for r in data.calls if r["user_id"] == "ann" and r["outcome"] == "included"]
    assert parse_csv(by_accept) == csv_expected(newest_first(expected))
    json_preferred = http("GET", calls_url(api.url, SUB, limit=1), token=token,
                          headers={"Accept": "text/csv;q=0.5, application/json"})
    assert json_preferred.headers["Content-Type"].startswith("application/json")


def test_charges_totals_are_exact_decimal_sums(api: ApiDeployment,
                                               history: tuple[History, str]) -> None:
    data, _ = history
    reply = http("GET", charges_url(api.url, ACCOUNT, period="2026-11"),
                 token=api.tokens.contributor(ACCOUNT))
    assert reply.status == 200, reply.raw[:300]
    body = reply.json
    assert body["billing_account_id"] == ACCOUNT and body["period"] == "2026-11"
    assert (body["periods_from"], body["periods_before"]) == ("2026-11-01", "2026-12-01")

    def totals(key: Any) -> dict[str, dict[str, tuple[str, int, int]]]:
        sums: dict[str, dict[str, list[Any]]] = defaultdict(dict)
        for charge in data.charges:
            group = sums[charge["currency"]].setdefault(key(charge), [Decimal(0), 0, 0])
            group[0] += Decimal(charge["amount"])
            group[1] += 1
            group[2] += charge["overage_s"]
        return {cur: {k: (f"{v[0]:.6f}", v[1], v[2]) for k, v in groups.items()}
                for cur, groups in sums.items()}

    expected_total = totals(lambda c: "")
    by = {"by_subscription": (totals(lambda c: c["subscription_id"]), "subscription_id"),
          "by_zone": (totals(lambda c: c["zone"]), "zone"),
          "by_user": (totals(lambda c: c["user_id"]), "user_id"),
          "by_day": (totals(lambda c: c["started_at"][:10]), "day")}
    assert [c["currency"] for c in body["currencies"]] == ["EUR", "USD"]
    for currency in body["currencies"]:
        code = currency["currency"]
        assert (currency["amount"], currency["charges"], currency["overage_s"]) == \
            expected_total[code][""]
        for group, (expected, key) in by.items():
            got = {row[key]: (row["amount"], row["charges"], row["overage_s"])
                   for row in currency[group]}
            assert got == expected[code], (code, group)
    # another month holds none of them
    empty = http("GET", charges_url(api.url, ACCOUNT, period="2026-10"),
                 token=api.tokens.reader(ACCOUNT))
    assert empty.status == 200 and empty.json["currencies"] == []


def test_charges_default_to_the_accounts_current_period(api: ApiDeployment) -> None:
    reply = http("GET", charges_url(api.url, ACCOUNT), token=api.tokens.reader(ACCOUNT))
    assert reply.status == 200, reply.raw[:300]
    usage = http("GET", api.usage_url(SUB), token=api.tokens.reader(ACCOUNT)).json
    assert reply.json["period"] == usage["period"]  # both subscriptions share the anchor day


def test_payg_history_is_the_audit_trail_newest_first(api: ApiDeployment,
                                                      history: tuple[History, str]) -> None:
    data, _ = history
    reply = http("GET", history_url(api.url, SUB), token=api.tokens.reader(ACCOUNT))
    assert reply.status == 200, reply.raw[:300]
    assert reply.json == {"subscription_id": SUB, "events": data.events[::-1]}
    for event in data.events:
        assert orjson.dumps(event) in reply.raw
    other = http("GET", history_url(api.url, SUB2), token=api.tokens.reader(ACCOUNT))
    assert other.json == {"subscription_id": SUB2, "events": []}
