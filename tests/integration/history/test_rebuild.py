"""`rater history rebuild` refills the tables from the topics, idempotently."""

from __future__ import annotations

import io

import asyncpg
import pytest

from rater.config import Settings
from rater.history.rebuild import rebuild_history
from rater.kafka import ensure_topics
from tests.integration.harness import produce
from tests.integration.history.support import (
    amount_for,
    charge_of,
    dumps,
    payg_event,
    rated_call,
)

pytestmark = pytest.mark.integration


async def test_rebuild_refills_lost_rows_and_a_second_run_adds_nothing(
        settings: Settings, conn: asyncpg.Connection) -> None:
    await ensure_topics(settings)
    t = settings.topics
    calls = [rated_call(i, f"sub-{i % 3}", overage_s=i % 2 * 90, amount=amount_for(i % 2 * 90,
                                                                                 "0.02"))
             for i in range(1500)]
    charges = [charge_of(c, "0.02") for c in calls if c["charge_id"]]
    await produce(settings, t.rated, [(b"k", dumps(c)) for c in calls] + [(b"k", b"junk")])
    await produce(settings, t.charges, [(b"k", dumps(c)) for c in charges])
    await produce(settings, t.subscription_events,
                  [(b"k", dumps(payg_event("sub-1", True, "2026-11-20T10:00:00Z")))])
    await conn.execute("DELETE FROM rated_calls WHERE call_id < 'call-000700'")

    progress = io.StringIO()
    first = await rebuild_history(settings.with_overrides(history_batch_max=400), progress)
    second = await rebuild_history(settings, None)

    assert first.records == second.records == 1500 + 1 + len(charges) + 1
    assert first.inserted == {"rated_calls": 1500, "overage_charges": len(charges),
                              "audit_events": 1}
    assert second.inserted == {"rated_calls": 0, "overage_charges": 0, "audit_events": 0}
    assert first.invalid == 1
    assert await conn.fetchval("SELECT count(*) FROM rated_calls") == 1500
    bar = progress.getvalue()
    total = first.records
    assert bar.startswith("\r[") and bar.rstrip().endswith(f"] {total}/{total}")
