"""Redis Cluster (3 primaries on loopback): the integration tests and a worker end to end.

SPEC §9: every key of a subscription shares the hash tag `{id}`, so the rater runs
unchanged on a cluster; `rate_batch` sends one script call per hash slot.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import orjson
import pytest
import redis

from rater.rating.clock import format_ms
from rater.rating.decision import PoolState, decide
from rater.rating.periods import period_of
from rater.rating.results import ZoneCounters
from rater.records import subscription_from_document
from rater.service.decisions import decision_record
from tests.builders import attempt_doc, make_attempt
from tests.faults.conftest import FAST_GROUP, note
from tests.faults.run import FaultRun
from tests.faults.stack import REPO, ClusterStack, FaultStack
from tests.faults.workload import Expected, Workload, produce
from tests.integration.harness import Deployment, consume

pytestmark = pytest.mark.faults

INTEGRATION = ["tests/integration/store", "tests/integration/test_rating_pipeline.py",
               "tests/integration/test_api.py", "tests/integration/test_sessions_api.py",
               "tests/integration/test_sessions_workers.py",
               # the pipelined connection is for a standalone Redis only (a cluster store
               # has none and keeps to redis-py): its own tests need one
               "--ignore=tests/integration/store/test_pipelined.py"]


def node_key_counts(cluster: ClusterStack) -> list[int]:
    return [int(redis.Redis(port=p).dbsize()) for p in cluster.ports]


def test_integration_suites_on_the_cluster(fault_stack: FaultStack,
                                           cluster: ClusterStack) -> None:
    """The rating (rules, differential, pipeline), decision/API and session integration tests
    (among them 200 concurrent set-ups on a 600 s pool, with one worker and with two)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATER_")}
    env.update(RATER_KAFKA_BOOTSTRAP=fault_stack.kafka_bootstrap, RATER_REDIS_URL=cluster.url,
               RATER_REDIS_CLUSTER="1")
    before = node_key_counts(cluster)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *INTEGRATION],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, f"integration tests failed on the cluster:\n{done.stdout[-6000:]}"
    summary = re.search(r"(\d+) passed", done.stdout)
    assert summary and int(summary.group(1)) >= 50, done.stdout[-2000:]
    assert "skipped" not in done.stdout.splitlines()[-1]
    after = node_key_counts(cluster)
    assert all(a > b for a, b in zip(after, before, strict=True)), \
        f"every primary should hold rater keys: {before} -> {after}"
    note("redis cluster: integration",
         f"{summary.group(1)} rating/decision/API integration tests passed on 3 primaries "
         f"(keys per primary {after}) in {time.monotonic() - started:.0f}s")


def expected_decisions(run: FaultRun, expected: Expected,
                       attempts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    subs = {d["subscription_id"]: subscription_from_document(d) for d in run.workload.subs}
    out = {}
    for doc in attempts:
        attempt = make_attempt(**{k: v for k, v in doc.items() if k != "at"}, at=doc["at"])
        sub = subs.get(attempt.subscription_id)
        state = None
        if sub is not None:
            assert attempt.at_ms is not None
            period = period_of(attempt.at_ms, sub.billing_anchor_day).name
            used = expected.counters.get((sub.subscription_id, period, attempt.zone),
                                         ZoneCounters()).used_included_s
            state = PoolState(max(0, sub.included_s(attempt.zone) - used), sub.payg_enabled,
                              sub.plan.billing_increment)
        record = decision_record(attempt, decide(attempt, state), 0)
        out[attempt.attempt_id] = {k: v for k, v in record.items() if k != "decided_at"}
    return out


async def test_workers_end_to_end_on_the_cluster(fault_stack: FaultStack,
                                                 cluster: ClusterStack) -> None:
    """2 workers on the cluster: 20,000 CDRs with a SIGKILL, then call attempts decided."""
    deployment = Deployment(partitions=6, extra_env={
        "RATER_KAFKA_BOOTSTRAP": fault_stack.kafka_bootstrap, "RATER_REDIS_URL": cluster.url,
        "RATER_REDIS_CLUSTER": "1", **FAST_GROUP,
    })
    assert deployment.settings.redis_cluster
    run = FaultRun(deployment, Workload.generate(61, 20_000))
    try:
        await run.prepare(workers=2)
        started = time.monotonic()

        async def pace(sent: int) -> None:
            if sent == 10_000:
                victim = run.workers[1]
                run.sigkill(victim)
                victim.start(wait_ready=False)

        await run.send(pace=pace)
        expected = run.expected()
        verdict, _ = await run.finish(expected, timeout=300)

        # decisions read the counters back from the cluster (snapshot script per slot)
        at = format_ms(run.workload.created_ms - 30_000)
        attempts = []
        for i, doc in enumerate(run.workload.subs):
            for zone in ("domestic", "international"):
                attempts.append(attempt_doc(attempt_id=f"a{i}-{zone}",
                                            subscription_id=doc["subscription_id"],
                                            zone=zone, at=at))
        attempts.append(attempt_doc(attempt_id="a-nobody", subscription_id="nobody", at=at))
        attempts.append(attempt_doc(attempt_id="a-sos", subscription_id="nobody", at=at,
                                    emergency=True))
        settings = deployment.settings
        await produce(settings, settings.topics.attempts,
                      [(str(a["subscription_id"]).encode(), orjson.dumps(a)) for a in attempts])
        seen = await consume(settings, [settings.topics.decisions],
                             lambda s: len(s[settings.topics.decisions]) >= len(attempts), 120)
        got = {d["attempt_id"]: {k: v for k, v in d.items() if k != "decided_at"}
               for d in seen[settings.topics.decisions]}
        want = expected_decisions(run, expected, attempts)
        assert got == want
        kinds = Counter((d["decision"], d["reason"]) for d in got.values())
        note("redis cluster: workers",
             f"2 workers (one SIGKILLed) on 3 primaries: {verdict.line()}; "
             f"{len(got)} decisions from cluster counters {dict(kinds)} in "
             f"{time.monotonic() - started:.0f}s")
    finally:
        await run.close()

