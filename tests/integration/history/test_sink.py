"""The sink end to end through the real broker: records in, rows out, dead letters for junk."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import orjson
import pytest

from rater.config import Settings
from rater.history.service import HistorySinkService, register_history_sink
from rater.history.sink import HistorySink
from rater.kafka import ensure_topics
from tests.integration.harness import consume, produce
from tests.integration.history.support import (
    amount_for,
    charge_of,
    dumps,
    payg_event,
    rated_call,
)

pytestmark = pytest.mark.integration


async def wait_rows(conn: asyncpg.Connection, table: str, count: int,
                    timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        n = await conn.fetchval(f"SELECT count(*) FROM {table}")
        if n >= count:
            assert n == count, f"{table}: {n} rows, expected {count}"
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{table}: {n} rows after {timeout:.0f}s, expected {count}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def running_sink(settings: Settings) -> AsyncIterator[HistorySink]:
    await ensure_topics(settings)
    sink = HistorySink(settings.with_overrides(history_batch_max=50))
    task = asyncio.ensure_future(sink.run())
    yield sink
    sink.stop_soon()
    await asyncio.wait_for(task, 60)


async def test_records_become_rows_and_junk_becomes_dead_letters(
        settings: Settings, conn: asyncpg.Connection, running_sink: HistorySink) -> None:
    t = settings.topics
    calls = [rated_call(i, f"sub-{i % 5}", overage_s=(i % 3) * 47,
                        amount=amount_for((i % 3) * 47, "0.0333"),
                        with_destination=i % 4 != 0) for i in range(300)]
    charges = [charge_of(c, "0.0333") for c in calls if c["charge_id"]]
    events = [payg_event(f"sub-{i}", True, f"2026-11-1{i}T08:00:00Z") for i in range(5)]
    upsert = {"type": "subscription.upserted", "at": "2026-11-01T00:00:00Z",
              "subscription": {"subscription_id": "sub-0"}}
    key = b"sub-0"
    await produce(settings, t.rated, [(key, dumps(c)) for c in calls]
                  + [(key, dumps(c)) for c in calls[:40]]  # re-emissions after a crash
                  + [(key, b"not json"), (key, b'{"call_id": "x"}')])
    await produce(settings, t.charges, [(key, dumps(c)) for c in charges]
                  + [(key, dumps(dict(charges[0], amount=1.5)))])
    await produce(settings, t.subscription_events, [(key, dumps(e)) for e in events]
                  + [(key, dumps(upsert)), (key, b"\xff junk")])

    await wait_rows(conn, "rated_calls", 300)
    await wait_rows(conn, "overage_charges", len(charges))
    await wait_rows(conn, "audit_events", 5)

    stored = await conn.fetch("SELECT record::text AS r, amount FROM rated_calls")
    by_id = {orjson.loads(s["r"])["call_id"]: s for s in stored}
    for c in calls:
        assert by_id[c["call_id"]]["r"].encode() == dumps(c)
        assert by_id[c["call_id"]]["amount"] == Decimal(c["amount"])
    total = await conn.fetchval("SELECT sum(amount) FROM overage_charges")
    assert total == sum(Decimal(c["amount"]) for c in charges)

    seen = await consume(settings, [t.dlq], lambda s: len(s[t.dlq]) >= 3, timeout=60)
    letters = sorted(seen[t.dlq], key=lambda d: (d["source_topic"], d["offset"]))
    assert [(d["reason"], d["source_topic"]) for d in letters] == [
        ("invalid", t.charges), ("invalid", t.rated), ("invalid", t.rated)]
    assert [d["value"] for d in letters[1:]] == ["not json", '{"call_id": "x"}']
    assert all(d["detail"].startswith("history: ") for d in letters)
    # the worker dead-letters invalid subscription events; the sink only skips them
    assert running_sink.counts.skipped_events == 2


async def test_the_worker_service_runs_the_sink(settings: Settings,
                                                conn: asyncpg.Connection) -> None:
    class App:
        def __init__(self) -> None:
            self.services: list[type] = []

        def service(self, cls: type) -> type:
            self.services.append(cls)
            return cls

    app = App()
    assert register_history_sink(app, settings) is False  # RATER_HISTORY_SINK=off
    assert register_history_sink(app, settings.with_overrides(history_sink="on")) is True
    await ensure_topics(settings)
    service: HistorySinkService = app.services[0]()
    await service.start()
    try:
        calls = [rated_call(i) for i in range(20)]
        await produce(settings, settings.topics.rated, [(b"sub-1", dumps(c)) for c in calls])
        await wait_rows(conn, "rated_calls", 20)
    finally:
        await asyncio.wait_for(service.stop(), 60)
    assert service.sink.counts.inserted == {"rated_calls": 20}
