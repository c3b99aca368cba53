"""`GET /metrics` of a real worker after known traffic (SPEC §8, issue 5).

The worker rates the 40 CDRs of tests/integration/ops_traffic.py, decides five
call attempts on the stream (one of them invalid) and answers two
`POST /v1/authorize` (a valid token and none). Then one scrape must hold:

* every metric family of rater/metrics.py, with exactly the samples this
  traffic produces (Redis errors: none, there were none);
* consumer lag for every partition of the CDR topic;
* every metric name the Grafana dashboard queries;
* only bounded label values: never a subscription, user, call or attempt id.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from rater import metrics
from rater.config import Settings
from rater.rating.clock import now_ms
from rater.web.tokens import issue_token
from rater.web.views import ROUTE_AUTHORIZE, ROUTE_PAYG, ROUTE_USAGE, ROUTE_USERS
from tests.builders import attempt_doc
from tests.deploy.test_metric_names import SUFFIXES, dashboard_expressions, metric_names
from tests.integration import ops_traffic as ops
from tests.integration.harness import Deployment, Worker, consume, produce, running_worker

pytestmark = pytest.mark.integration

JWT_KEY = "metrics-live-test-hs256-secret-0123456789abcdef"
JWT_ENV = {"RATER_JWT_ALGORITHM": "HS256", "RATER_JWT_KEY": JWT_KEY,
           "RATER_JWT_ISSUER": "https://idp.rater.test/", "RATER_JWT_AUDIENCE": "rater-api"}

ATTEMPTS = [  # (attempt document, expected (decision, reason)) after the CDR traffic
    (attempt_doc(attempt_id="ops-att-1", subscription_id=ops.PAYG, user_id="ops-user-a1"),
     ("permit", "payg")),
    (attempt_doc(attempt_id="ops-att-2", subscription_id=ops.OFF, user_id="ops-user-b1"),
     ("block", "exhausted")),
    (attempt_doc(attempt_id="ops-att-3", subscription_id=ops.OFF, user_id="ops-user-b1",
                 direction="inbound"), ("permit", "free")),
    (attempt_doc(attempt_id="ops-att-4", subscription_id=ops.GHOST, user_id="ops-user-g"),
     ("block", "unknown_subscription")),
]
HTTP_ATTEMPT = attempt_doc(attempt_id="ops-att-http", subscription_id=ops.OFF,
                           user_id="ops-user-b1", zone="international")
ATTEMPT_IDS = {"ops-att-1", "ops-att-2", "ops-att-3", "ops-att-4", "ops-att-5", "ops-att-http"}

# families that this traffic leaves without samples, and why
NO_SAMPLES = {"rater_redis_errors": "Redis never failed during the run",
              "rater_session_requests": "no session requests in this traffic (sessions: "
                                        "tests/integration/test_sessions_api.py)"}


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    yield Deployment(partitions=3, extra_env=JWT_ENV)


@pytest.fixture(scope="module")
async def worker(deployment: Deployment) -> AsyncIterator[Worker]:
    async with running_worker(deployment) as running:
        yield running


def post(url: str, body: bytes, token: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture(scope="module")
async def scrape(deployment: Deployment, worker: Worker) -> ops.Scrape:
    """Drive all the traffic, then the scrape once the lag gauges say everything was read."""
    settings = deployment.settings
    topics = settings.topics
    await ops.drive_all(settings)

    attempts: list[tuple[bytes | None, bytes]] = [
        (doc["subscription_id"].encode(), orjson.dumps(doc)) for doc, _ in ATTEMPTS]
    attempts.append((ops.OFF.encode(), b'{"attempt_id": "ops-att-5"}'))  # invalid
    await produce(settings, topics.attempts, attempts)
    seen = await consume(settings, [topics.decisions, topics.dlq],
                         lambda s: len(s[topics.decisions]) >= len(ATTEMPTS)
                         and len(s[topics.dlq]) >= ops.DEAD_TOTAL + 1)
    assert {d["attempt_id"]: (d["decision"], d["reason"]) for d in seen[topics.decisions]} == {
        doc["attempt_id"]: want for doc, want in ATTEMPTS}

    token = issue_token(Settings.from_env(worker.env), subject="ops-switch",
                        scope="call_authorizer")
    assert post(worker.url + ROUTE_AUTHORIZE, orjson.dumps(HTTP_ATTEMPT), token) == 200
    assert post(worker.url + ROUTE_AUTHORIZE, orjson.dumps(HTTP_ATTEMPT), None) == 401

    # the lag gauges refresh every 5 s (and on /readyz): wait for the drained values
    deadline = time.monotonic() + 30
    while True:
        assert worker.http_status("/readyz") == 200
        current = ops.Scrape.parse(worker.get("/metrics").decode())
        lag = current.values("rater_consumer_lag_messages", "topic", "partition")
        if lag and all(v == 0 for v in lag.values()) and len(lag) == 3 * deployment.partitions:
            return current
        assert time.monotonic() < deadline, f"consumer lag never drained: {lag}"
        await asyncio.sleep(0.5)


def registry_families() -> dict[str, str]:
    return {family.name: family.type for family in metrics.REGISTRY.collect()}


def test_every_registry_family_is_exported_with_its_type(scrape: ops.Scrape) -> None:
    families = registry_families()
    assert len(families) >= 15
    assert {name: scrape.types.get(name) for name in families} == families


def test_every_family_has_samples_where_the_traffic_makes_them(scrape: ops.Scrape) -> None:
    sampled = {s.name for s in scrape.samples if not s.name.endswith("_created")}
    without = {
        family for family, kind in registry_families().items()
        if not any(family + suffix in sampled for suffix in SUFFIXES[kind])
    }
    assert without == set(NO_SAMPLES)


def test_counter_values_are_exactly_the_traffic(scrape: ops.Scrape) -> None:
    assert scrape.values("rater_cdrs_total", "outcome") == ops.OUTCOMES
    assert scrape.values("rater_billable_seconds_total", "zone", "kind") == ops.SECONDS
    assert {k: round(v, 6) for k, v in scrape.values(
        "rater_overage_amount_total", "currency").items()} == ops.AMOUNT
    assert scrape.value("rater_overage_charges_total") == ops.CHARGES
    assert scrape.values("rater_threshold_alerts_total", "threshold") == ops.THRESHOLD_ALERTS
    assert scrape.values("rater_dead_letters_total", "reason", "source") == {
        **{(reason, "cdr"): n for reason, n in ops.DEAD_LETTERS.items()},
        ("invalid", "attempt"): 1,
    }
    assert scrape.values("rater_decisions_total", "decision", "reason", "channel") == {
        **{(*want, "stream"): 1 for _, want in ATTEMPTS},
        ("block", "exhausted", "http"): 1,  # international pool 0, PAYG off
    }
    assert scrape.values("rater_subscription_events_total", "type") == ops.SUBSCRIPTION_EVENTS
    assert scrape.values("rater_http_requests_total", "route", "status") == {
        (ROUTE_AUTHORIZE, "200"): 1, (ROUTE_AUTHORIZE, "401"): 1}
    assert scrape.values("rater_redis_errors_total", "operation") == {}
    assert scrape.value("rater_ready") == 1


def test_histograms_counted_every_batch_and_request(scrape: ops.Scrape) -> None:
    assert scrape.value("rater_rating_batch_size_sum") == ops.CDR_COUNT
    batches = scrape.value("rater_rating_batch_size_count")
    assert 1 <= batches <= ops.CDR_COUNT
    assert scrape.value("rater_rating_batch_duration_seconds_count") == batches
    assert scrape.values("rater_rating_batch_duration_seconds_bucket", "le")["+Inf"] == batches
    assert scrape.value("rater_rating_batch_duration_seconds_sum") > 0
    assert scrape.value("rater_authorize_duration_seconds_count") == 2
    assert scrape.values("rater_authorize_duration_seconds_bucket", "le")["+Inf"] == 2


def test_consumer_lag_per_partition_of_every_input_topic(
    deployment: Deployment, scrape: ops.Scrape
) -> None:
    topics = deployment.settings.topics
    lag = scrape.values("rater_consumer_lag_messages", "topic", "partition")
    assert lag == {(topic, str(p)): 0.0
                   for topic in (topics.cdr, topics.attempts, topics.subscription_events)
                   for p in range(deployment.partitions)}


def test_every_dashboard_metric_is_in_the_live_scrape(scrape: ops.Scrape) -> None:
    sampled = {s.name for s in scrape.samples}
    declared = {name + suffix for name, kind in scrape.types.items()
                for suffix in SUFFIXES.get(kind, ("",))}
    used = {name for _, expr in dashboard_expressions() for name in metric_names(expr)}
    assert len(used) >= 10
    assert sorted(used - declared) == []
    # and all but the no-traffic families carry samples in this scrape
    assert sorted(name for name in used - sampled
                  if not any(name.startswith(f) for f in NO_SAMPLES)) == []


def test_label_values_are_bounded_and_never_an_id(
    deployment: Deployment, scrape: ops.Scrape
) -> None:
    settings = deployment.settings
    traffic = ops.build_traffic(now_ms())
    ids = traffic.ids | ATTEMPT_IDS | {"ops-switch"}
    routes = {ROUTE_AUTHORIZE, ROUTE_USAGE, ROUTE_USERS, ROUTE_PAYG, "unmatched"}
    allowed: dict[str, Any] = {
        "outcome": {"included", "overage", "exhausted", "blocked", "free", "duplicate"},
        "zone": {"domestic", "international"},
        "kind": {"included", "overage", "unbilled"},
        "currency": re.compile(r"[A-Z]{3}"),
        "threshold": {"80", "100"},
        "decision": {"permit", "block"},
        "reason": {"free", "included", "payg", "exhausted", "unknown_subscription", "invalid",
                   "future_timestamp", "period_closed", "conflicting_duplicate"},
        "channel": {"stream", "http"},
        "source": {"cdr", "attempt", "subscription"},
        "route": routes,
        "status": re.compile(r"[1-5]\d\d"),
        "operation": {"rate", "decide", "subscriptions"},
        "topic": set(settings.topics.all()),
        "partition": {str(p) for p in range(deployment.partitions)},
        "type": {"subscription.upserted", "payg.changed"},
        "state": {"open", "terminated"},
        "rule": {"validity", "cdr_wait"},
        "request": {"initial", "update", "terminate"},
        "le": re.compile(r"\+Inf|\d+(\.\d+)?(e[+-]?\d+)?"),
    }
    problems = []
    for sample in scrape.samples:
        for name, value in sample.labels.items():
            rule = allowed.get(name)
            ok = (rule.fullmatch(value) is not None if isinstance(rule, re.Pattern)
                  else rule is not None and value in rule)
            if not ok or value in ids:
                problems.append(f"{sample.name}{{{name}={value!r}}}")
    assert problems == []
    assert not any(i in scrape.text for i in ids if len(i) > 3)
