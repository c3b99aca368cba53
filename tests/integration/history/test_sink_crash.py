"""The sink SIGKILLed in the middle of a burst: after a restart every record is stored
exactly once (at least once from Kafka, idempotent in the table)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import orjson
import pytest

from rater.config import Settings
from rater.kafka import ensure_topics
from tests.integration.harness import produce
from tests.integration.history.sink_process import SinkProcess
from tests.integration.history.support import dumps, history_env, rated_call

pytestmark = pytest.mark.integration
BURST = 30_000


async def _count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM rated_calls"))


async def _wait_count(conn: asyncpg.Connection, sink: SinkProcess, at_least: int,
                      timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (n := await _count(conn)) < at_least:
        if not sink.alive():
            raise AssertionError(f"the sink exited:\n{sink.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{n} rows after {timeout:.0f}s, expected {at_least}:\n"
                                 f"{sink.tail()}")
        await asyncio.sleep(0.05)
    return n


async def test_sigkill_mid_burst_loses_nothing_and_duplicates_nothing(
        schema: str, settings: Settings, conn: asyncpg.Connection) -> None:
    await ensure_topics(settings)
    env = {**history_env(schema, settings.app_id), "RATER_HISTORY_BATCH_MAX": "500"}
    calls = [rated_call(i, f"sub-{i % 17}") for i in range(BURST)]
    sink = SinkProcess(env, settings.app_id).start()
    try:
        burst = asyncio.ensure_future(produce(
            settings, settings.topics.rated,
            [(c["subscription_id"].encode(), dumps(c)) for c in calls]))
        for kill_at in (BURST // 5, BURST // 2):
            stored = await _wait_count(conn, sink, kill_at, 120)
            sink.kill()
            assert await _count(conn) < BURST, "killed too late to prove anything"
            sink = SinkProcess(env, settings.app_id).start()
            assert stored >= kill_at
        await asyncio.wait_for(burst, 120)
        await _wait_count(conn, sink, BURST, 180)
        await asyncio.sleep(1.0)  # anything replayed after the count was reached
        assert sink.stop() == 0, sink.tail()
    finally:
        sink.kill()
    rows = await conn.fetch("SELECT call_id, record::text AS r FROM rated_calls")
    assert len(rows) == BURST
    assert sorted(r["call_id"] for r in rows) == sorted(c["call_id"] for c in calls)
    by_id = {c["call_id"]: c for c in calls}
    assert all(orjson.loads(r["r"]) == by_id[r["call_id"]] for r in rows)
