"""Recovering a lost Redis: `rater rebuild --from-rated` (docs/operations.md).

A worker rates a workload; Redis then loses every key of the deployment. The
rebuild, from the Kafka topics alone, must give back the very same state
(subscriptions, counters, per-user tallies, alert flags, call memory with its
fingerprints, expiries), and the rater must carry on from it as if nothing had
happened: a replay of the whole input re-emits identical records and changes
no counter.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from rater.cli.rebuild import rebuild
from rater.rating.clock import now_ms
from rater.store import RedisStore
from tests.faults.conftest import deployment_on, note
from tests.faults.run import FaultRun
from tests.faults.stack import REPO, FaultStack
from tests.faults.workload import Outputs, Workload, distinct, verify_counters

pytestmark = pytest.mark.faults


async def dump(store: RedisStore) -> dict[str, tuple[dict[str, str], int]]:
    """Every key of the deployment (the billing accounts' indexes too): its hash and its
    expiry (epoch ms)."""
    state = {}
    now = now_ms()
    for pattern in (store.keys.every_subscription_key, store.keys.every_account_index_key):
        async for key in store.client.scan_iter(match=pattern, count=1000):
            ttl = await store.client.pttl(key)
            state[key] = (await store.client.hgetall(key), now + ttl if ttl >= 0 else -1)
    return state


async def test_rebuild_from_rated_gives_back_the_lost_redis(fault_stack: FaultStack) -> None:
    workload = Workload.generate(91, 8_000, subs=30)
    run = FaultRun(deployment_on(fault_stack), workload)
    try:
        await run.prepare(workers=1)
        await run.send()
        expected = run.expected()
        verdict, first = await run.finish(expected)
        assert run.store is not None
        before = await dump(run.store)

        with pytest.raises(RuntimeError, match="workers are running"):
            await rebuild(run.settings)
        for worker in run.workers:
            worker.stop()
        await asyncio.sleep(1.0)

        lost = [key async for key in run.store.client.scan_iter(match=f"{run.store.prefix}:*")]
        await run.store.client.delete(*lost)  # Redis lost everything of this deployment
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "rater.cli", "rebuild", "--from-rated"],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("RATER_")},
                 **run.deployment.env()},
            cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        took = time.monotonic() - started
        after = await dump(run.store)

        assert set(after) == set(before)
        wrong = [k for k in before if after[k][0] != before[k][0]]
        assert not wrong, f"{len(wrong)} keys differ, e.g. {wrong[0]}: {after[wrong[0]][0]} " \
                          f"!= {before[wrong[0]][0]}"
        drift = [k for k in before if abs(after[k][1] - before[k][1]) > 5_000]
        assert not drift, f"expiries differ: {[(k, before[k][1], after[k][1]) for k in drift[:3]]}"
        assert "without destination (CDR no longer retained): 0" in done.stdout, done.stdout

        # the rater carries on from the rebuilt state: the same input again is all replays
        run.add_worker()
        await run.send()
        doubled = expected.sends.copy()
        for key in doubled:
            doubled[key] *= 2
        expected.sends = doubled
        for value in expected.dead:
            expected.dead[value] *= 2
        seen: Outputs = await run.collect(expected, timeout=300)
        distinct(seen.rated, lambda r: (r["subscription_id"], r["call_id"]), "call")
        distinct(seen.charges, lambda c: c["charge_id"], "charge")
        distinct(seen.alerts, lambda a: a["alert_id"], "alert")
        await verify_counters(run.store, expected)
        conflicts = sum(1 for d in seen.dlq if d["reason"] == "conflicting_duplicate")
        assert conflicts == 2 * workload.conflicts
        summary: dict[str, Any] = dict(line.split(": ", 1) for line in done.stdout.splitlines()
                                       if ": " in line)
        note("rebuild", f"{len(before)} Redis keys deleted after {verdict.distinct_calls} calls; "
                        f"`rater rebuild --from-rated` wrote them back identical (hashes and "
                        f"expiries) in {took:.1f}s ({summary.get('rated calls', '?')}); "
                        f"replaying all {len(workload.records)} CDRs afterwards re-emitted "
                        f"identical records and moved no counter")
        del first
    finally:
        await run.close()
