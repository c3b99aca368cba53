"""With `RATER_LOG_FORMAT=json`, every line a worker prints is one JSON object (issue 5).

A real worker runs the whole life cycle — start-up (Faust's and aiokafka's own
messages included), the 40 CDRs of tests/integration/ops_traffic.py, a flood of
25 invalid CDRs, bad subscription events and attempts, HTTP calls with good and
bad bearer tokens, SIGTERM and shutdown — and then every non-empty line of its
combined stdout/stderr must parse as a JSON object with ts, level, logger and
message. Dead letters are logged with the fields on-call greps for (reason,
subscription_id, call_id / attempt_id, source topic and offset), and neither a
token nor the JWT key ever reaches the log.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from rater.config import Settings
from rater.rating.clock import format_ms, now_ms
from rater.web.tokens import issue_token
from rater.web.views import ROUTE_AUTHORIZE, ROUTE_PAYG, ROUTE_USAGE
from tests.builders import attempt_doc, cdr_doc
from tests.integration import ops_traffic as ops
from tests.integration.harness import REPO, Deployment, Worker, consume, free_port, produce

pytestmark = pytest.mark.integration

JWT_KEY = "json-logs-test-hs256-secret-fedcba9876543210"
JWT_ENV = {"RATER_JWT_ALGORITHM": "HS256", "RATER_JWT_KEY": JWT_KEY,
           "RATER_JWT_ISSUER": "https://idp.rater.test/", "RATER_JWT_AUDIENCE": "rater-api",
           "RATER_LOG_FORMAT": "json"}
FLOOD = 25
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
LEVELS = {"debug", "info", "warning", "error", "critical"}


def http(method: str, url: str, token: str | None, body: Any = None) -> int:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class Run:
    """What the module's worker did, and the lines it printed."""

    def __init__(self, deployment: Deployment, worker: Worker) -> None:
        self.deployment = deployment
        self.worker = worker
        self.tokens: list[str] = []
        self.lines: list[str] = []
        self.entries: list[dict[str, Any]] = []

    def dead_letter_lines(self, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.entries
                if e.get("logger") == "rater.agents.delivery" and "reason" in e
                and all(e.get(k) == v for k, v in match.items())]


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    yield Deployment(partitions=2, extra_env=JWT_ENV)


@pytest.fixture(scope="module")
async def run(deployment: Deployment) -> AsyncIterator[Run]:
    await deployment.create_topics()
    worker = Worker(deployment).start()
    result = Run(deployment, worker)
    try:
        await drive_everything(result)
    finally:
        worker.stop()
    assert worker.process is not None and worker.process.returncode is not None
    text = worker.log_path.read_text(encoding="utf-8")
    result.lines = [line for line in text.splitlines() if line.strip()]
    for line in result.lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # reported by the test, with the line
        if isinstance(entry, dict):
            result.entries.append(entry)
    yield result


async def drive_everything(run: Run) -> None:
    settings = run.deployment.settings
    topics = settings.topics
    worker = run.worker
    await ops.drive_all(settings)

    # a flood of invalid CDRs (unknown zone): logged one by one up to a cap per batch,
    # the rest of a batch as one summary line with the counts
    flood = [(ops.OFF.encode(), orjson.dumps(cdr_doc(call_id=f"flood-{i:02d}",
                                                     subscription_id=ops.OFF, zone="lunar")))
             for i in range(FLOOD)]
    await ops.drive(settings, flood, rated=ops.RATED_RECORDS, dead=ops.DEAD_TOTAL + FLOOD)

    # bad subscription events and attempts
    events: list[tuple[bytes | None, bytes]] = [
        (b"ops-broken", orjson.dumps({"type": "subscription.upserted",
                                      "subscription": {"subscription_id": "ops-broken"}})),
        (b"ops-nobody", orjson.dumps({"type": "payg.changed", "subscription_id": "ops-nobody",
                                      "enabled": True, "at": format_ms(now_ms())})),
    ]
    await produce(settings, topics.subscription_events, events)
    await produce(settings, topics.attempts, [
        (ops.OFF.encode(), orjson.dumps(attempt_doc(attempt_id="ops-att-ok",
                                                    subscription_id=ops.OFF))),
        (ops.OFF.encode(), b'{"attempt_id": "ops-att-bad", "subscription_id": "ops-off"}'),
    ])
    await consume(settings, [topics.dlq, topics.decisions],
                  lambda s: len(s[topics.dlq]) >= ops.DEAD_TOTAL + FLOOD + 3
                  and len(s[topics.decisions]) >= 1)

    # HTTP with good and bad bearer tokens; none of them may reach the log
    worker_settings = Settings.from_env(worker.env)
    authorizer = issue_token(worker_settings, subject="ops-switch", scope="call_authorizer")
    owner = issue_token(worker_settings, subject="ops-owner", roles={"ops-ba-2": "owner"})
    forged = issue_token("another-secret-that-is-long-enough-000000", subject="ops-owner",
                         roles={"ops-ba-2": "owner"}, algorithm="HS256",
                         issuer=worker_settings.jwt_issuer, audience=worker_settings.jwt_audience)
    run.tokens = [authorizer, owner, forged]
    attempt = attempt_doc(attempt_id="ops-att-http", subscription_id=ops.OFF)
    usage = worker.url + ROUTE_USAGE.format(subscription_id=ops.OFF)
    payg = worker.url + ROUTE_PAYG.format(subscription_id=ops.OFF)
    assert http("POST", worker.url + ROUTE_AUTHORIZE, authorizer, attempt) == 200
    assert http("POST", worker.url + ROUTE_AUTHORIZE, "not.a.jwt", attempt) == 401
    assert http("GET", usage, owner) == 200
    assert http("GET", usage, forged) == 401
    assert http("GET", usage, authorizer) == 403
    assert http("PUT", payg, owner, {"enabled": True}) == 200
    assert http("PUT", payg, owner, {"enabled": "yes"}) == 422


def test_every_line_is_one_json_object_with_the_standard_keys(run: Run) -> None:
    assert len(run.lines) > 50
    bad = []
    for line in run.lines:
        try:
            entry = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if not (isinstance(entry, dict) and {"ts", "level", "logger", "message"} <= set(entry)
                and TS.fullmatch(str(entry["ts"])) and entry["level"] in LEVELS):
            bad.append(line)
    assert bad == [], f"{len(bad)} of {len(run.lines)} lines are not JSON log entries"


def test_faust_and_kafka_client_lines_are_json_too(run: Run) -> None:
    """The lines Faust (mode) and aiokafka print themselves, start to shutdown."""
    by_logger = {e["logger"] for e in run.entries}
    messages = [(e["logger"], e["message"]) for e in run.entries]
    assert any(lg.startswith("faust.") and "Starting" in m for lg, m in messages)
    assert any(lg.startswith("faust.") and m.endswith("Ready") for lg, m in messages)
    assert any(lg.startswith("faust.") and "Stopping" in m for lg, m in messages)
    assert any(lg.startswith("aiokafka") for lg in by_logger)
    # Faust's start-up banner / ASCII tables never appear as raw text
    assert not any(line.lstrip().startswith(("+", "|", "ƒaµS†")) for line in run.lines)


def test_cdr_dead_letters_carry_reason_and_ids(run: Run) -> None:
    cdr_topic = run.deployment.settings.topics.cdr
    traffic = ops.build_traffic(now_ms())
    for reason, subscription_id, call_id in traffic.dead_letters:
        match: dict[str, Any] = {"reason": reason, "subscription_id": subscription_id,
                                 "source_topic": cdr_topic, "agent": "rate"}
        if call_id is not None:
            match["call_id"] = call_id
        lines = run.dead_letter_lines(**match)
        assert len(lines) == 1, (match, lines)
        entry = lines[0]
        assert entry["level"] == "warning"
        assert isinstance(entry["source_offset"], int) and isinstance(
            entry["source_partition"], int)
        assert entry["detail"] and reason in entry["message"]
        if call_id is None:
            assert "call_id" not in entry


def test_a_flood_of_dead_letters_is_capped_per_batch_but_fully_counted(run: Run) -> None:
    one_by_one = [e for e in run.dead_letter_lines(reason="invalid")
                  if str(e.get("call_id", "")).startswith("flood-")]
    summaries = [e for e in run.entries
                 if e.get("logger") == "rater.agents.delivery" and "dead_letters" in e]
    assert all(set(s["reasons"]) == {"invalid"} for s in summaries)
    assert len(one_by_one) + sum(s["dead_letters"] for s in summaries) == FLOOD
    assert len({e["call_id"] for e in one_by_one}) == len(one_by_one)


def test_subscription_and_attempt_dead_letters_carry_their_ids(run: Run) -> None:
    topics = run.deployment.settings.topics
    [broken] = run.dead_letter_lines(reason="invalid", subscription_id="ops-broken")
    assert broken["source_topic"] == topics.subscription_events
    assert broken["agent"] == "subscriptions"
    [nobody] = run.dead_letter_lines(reason="unknown_subscription", subscription_id="ops-nobody")
    assert nobody["source_topic"] == topics.subscription_events
    [attempt] = run.dead_letter_lines(reason="invalid", attempt_id="ops-att-bad")
    assert attempt["subscription_id"] == ops.OFF and attempt["agent"] == "decide"
    assert attempt["source_topic"] == topics.attempts


def test_no_token_or_secret_ever_reaches_the_log(run: Run) -> None:
    text = "\n".join(run.lines)
    assert "Bearer" not in text and "bearer" not in text
    assert JWT_KEY not in text
    for token in run.tokens:
        assert token not in text
        assert token.split(".")[2] not in text  # not even the signature alone
    assert "not.a.jwt" not in text


def test_a_refused_start_is_one_json_line() -> None:
    """Redis unreachable: the worker gives up after its retry budget with one line."""
    env = Deployment().env(RATER_LOG_FORMAT="json", RATER_STARTUP_RETRY_S="1",
                           RATER_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    result = subprocess.run([sys.executable, "-m", "rater.cli", "worker"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    entry = json.loads(lines[0])
    assert entry["level"] == "error" and entry["logger"] == "rater"
    assert "unreachable after 1s" in entry["message"]
