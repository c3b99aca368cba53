"""Credit-control sessions with two workers sharing the load, and a switch that stops
reporting (SPEC §11.6), on one deployment with a short validity (15 s + 5 s grace) and a
sweeper every half second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from rater.rating.clock import now_ms
from tests.builders import attempt_doc, subscription_doc
from tests.integration import session_support as sessions
from tests.integration.api_support import (
    ApiDeployment,
    http,
    safe_anchor_day,
    sync_redis,
    unique,
)
from tests.integration.harness import Deployment, Worker
from tests.integration.ops_traffic import Scrape

pytestmark = pytest.mark.integration

VALIDITY_S, GRACE_S, SWEEP_S = 15, 5, 0.5


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiDeployment]:
    deployment = ApiDeployment(tmp_path_factory.mktemp("sessions-workers"), deployment=Deployment(
        extra_env={"RATER_SESSION_VALIDITY_S": str(VALIDITY_S),
                   "RATER_SESSION_GRACE_S": str(GRACE_S),
                   "RATER_SESSION_SWEEP_S": str(SWEEP_S)}))
    deployment.start()
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def second(api: ApiDeployment) -> Iterator[Worker]:
    worker = Worker(api.deployment).start()
    assert api.worker is not None
    api.worker.wait_ready()  # the group has settled with both
    yield worker
    worker.stop()


def plan(sub: str, account: str, increment: str = "1/1") -> dict[str, object]:
    return subscription_doc(subscription_id=sub, billing_account_id=account, licenses=1,
                            domestic_minutes=10, international_minutes=0, increment=increment,
                            anchor_day=safe_anchor_day())


def expirations(workers: list[Worker]) -> float:
    """Validity expirations counted by all workers together (whichever swept)."""
    return sum(Scrape.parse(w.get("/metrics").decode()).values(
        "rater_session_expirations_total", "rule")["validity"] for w in workers)


def test_two_workers_share_200_concurrent_set_ups(api: ApiDeployment, second: Worker) -> None:
    account, sub = unique("ba-two"), unique("sub-two")
    doc = plan(sub, account)
    api.load_subscriptions([doc])
    urls = [api.url, second.url]
    token = api.tokens.authorizer()
    burst = asyncio.run(sessions.set_up(urls, token, doc, 200, 7, unique("w")))
    assert burst.granted_billable_s() == 600
    ends = sessions.plan_ends(burst, seed=2)
    started = now_ms() - 600_000
    rated = asyncio.run(sessions.end_calls(api.settings, urls, token, burst, ends, started))
    assert len(rated) == 86
    assert {r["outcome"] for r in rated.values()} == {"included"}
    assert sum(r["unbilled_s"] for r in rated.values()) == 0
    model = sessions.model_of(burst, ends, started, api.settings.session_policy)
    reply = http("GET", api.usage_url(sub), token=api.tokens.reader(account))
    zone = reply.json["zones"]["domestic"]
    want = sessions.model_counters(model, sub, next(iter(rated.values()))["period"])
    assert (zone["used_included_s"], zone["overage_s"], zone["unbilled_s"],
            zone["reserved_s"]) == (want.used_included_s, want.overage_s, want.unbilled_s, 0)
    assert want.reserved_s == 0


def test_a_switch_that_stops_reporting_gives_the_pool_back(
    api: ApiDeployment, second: Worker
) -> None:
    account, sub = unique("ba-dead"), unique("sub-dead")
    api.load_subscriptions([plan(sub, account, increment="60/60")])
    workers = [w for w in (api.worker, second) if w is not None]
    counted = expirations(workers)
    opened = time.monotonic()
    reply = http("POST", sessions.session_url(api.url), token=api.tokens.authorizer(),
                 body={"session_id": "lost-call", "subscription_id": sub, "user_id": "u",
                       "direction": "outbound", "zone": "domestic", "requested_s": 600})
    assert (reply.status, reply.json["granted_s"]) == (200, 600), reply.raw
    # the whole pool is held: §6 blocks, the usage API shows it reserved
    decision = api.authorize(attempt_doc(attempt_id=unique("a"), subscription_id=sub))
    assert (decision["decision"], decision["reason"]) == ("block", "exhausted")
    zone = http("GET", api.usage_url(sub), token=api.tokens.reader(account)).json["zones"][
        "domestic"]
    assert (zone["reserved_s"], zone["available_s"]) == (600, 0)

    # nobody asks about this subscription now: only the sweeper can release it
    client = sync_redis(api.settings, decode_responses=True)
    prefix = api.settings.key_prefix
    try:
        keys = [k for k in client.scan_iter(match=f"{prefix}:{{{sub}}}:p:*")]
        assert len(keys) == 1
        deadline = time.monotonic() + VALIDITY_S + GRACE_S + 15
        while int(client.hget(keys[0], "d:res") or 0) != 0:
            assert time.monotonic() < deadline, "the sweeper never released the session"
            time.sleep(0.2)
        released_after = time.monotonic() - opened
        state = client.hget(f"{prefix}:{{{sub}}}:s:lost-call", "st")
    finally:
        client.close()
    assert released_after >= VALIDITY_S + GRACE_S - 1, released_after
    assert state == "x"
    assert expirations(workers) == counted + 1

    # the pool is whole again, for the usage API and §6 alike
    zone = http("GET", api.usage_url(sub), token=api.tokens.reader(account)).json["zones"][
        "domestic"]
    assert (zone["reserved_s"], zone["available_s"], zone["remaining_s"]) == (0, 600, 600)
    decision = api.authorize(attempt_doc(attempt_id=unique("a"), subscription_id=sub))
    assert (decision["decision"], decision["max_duration_s"]) == ("permit", 600)
    late = http("POST", sessions.session_url(api.url, "lost-call", "update"),
                token=api.tokens.authorizer(), body={"used_s": 30})
    assert late.status == 404 and late.error_body()["error"] == "unknown_session"
