"""Queries a rerate (SPEC §13, `rater.corrections`) reads and writes in the call history:
a period's calls up to a cutoff, the PAYG trail, the runs begun, and the adjustments
of an account beside its charges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from rater.history.charges import decimal_text, period_range
from rater.rating.clock import to_ms


async def period_calls(conn: asyncpg.Connection, subscription_ids: Sequence[str], period: str,
                       cutoff: datetime) -> list[dict[str, Any]]:
    """The rated-call records of the subscriptions in `period` (a start date, or a month:
    see `period_range`) rated up to `cutoff`, in (started_at, call_id) order."""
    start, end = period_range(period)
    rows = await conn.fetch(
        "SELECT record::text AS record FROM rated_calls "
        "WHERE subscription_id = ANY($1::text[]) AND period >= $2 AND period < $3 "
        "AND rated_at <= $4 ORDER BY started_at, call_id",
        list(subscription_ids), start, end, cutoff)
    return [orjson.loads(row["record"]) for row in rows]


async def account_subscriptions(conn: asyncpg.Connection, billing_account_id: str,
                                period: str) -> list[str]:
    """The subscriptions of a billing account with calls in `period`."""
    start, end = period_range(period)
    rows = await conn.fetch(
        "SELECT DISTINCT subscription_id FROM rated_calls "
        "WHERE billing_account_id = $1 AND period >= $2 AND period < $3 ORDER BY 1",
        billing_account_id, start, end)
    return [row["subscription_id"] for row in rows]


async def payg_trail(conn: asyncpg.Connection,
                     subscription_ids: Sequence[str]) -> dict[str, list[tuple[int, bool]]]:
    """Per subscription, its `payg.changed` events as (at in ms, enabled), oldest first."""
    rows = await conn.fetch(
        "SELECT subscription_id, at, record::text AS record FROM audit_events "
        "WHERE type = 'payg.changed' AND subscription_id = ANY($1::text[]) "
        "ORDER BY subscription_id, at, source_partition, source_offset",
        list(subscription_ids))
    trail: dict[str, list[tuple[int, bool]]] = {}
    for row in rows:
        enabled = bool(orjson.loads(row["record"])["enabled"])
        trail.setdefault(row["subscription_id"], []).append((to_ms(row["at"]), enabled))
    return trail


@dataclass(frozen=True, slots=True)
class RerateRun:
    rerate_id: str
    cutoff: datetime
    began_at: datetime
    finished_at: datetime | None


async def begin_run(conn: asyncpg.Connection, rerate_id: str, period: str,
                    subscription_ids: Sequence[str], plan_sha256: str, reason: str,
                    now: datetime) -> RerateRun:
    """The run of `rerate_id`: the one begun before (to resume it with its own cutoff), or
    a new one whose cutoff is `now`."""
    await conn.execute(
        "INSERT INTO rerate_runs (rerate_id, period, subscriptions, plan_sha256, reason, "
        "cutoff, began_at) VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING",
        rerate_id, period, sorted(subscription_ids), plan_sha256, reason, now)
    row = await conn.fetchrow(
        "SELECT rerate_id::text AS rerate_id, cutoff, began_at, finished_at FROM rerate_runs "
        "WHERE rerate_id = $1", rerate_id)
    assert row is not None
    return RerateRun(row["rerate_id"], row["cutoff"], row["began_at"], row["finished_at"])


async def finish_run(conn: asyncpg.Connection, rerate_id: str, now: datetime) -> None:
    await conn.execute("UPDATE rerate_runs SET finished_at = COALESCE(finished_at, $2) "
                       "WHERE rerate_id = $1", rerate_id, now)


@dataclass(frozen=True, slots=True)
class AdjustmentTotal:
    currency: str
    subscription_id: str  # empty for the currency's own total
    delta: str  # decimal string, 6 places, signed
    adjustments: int


async def adjustment_totals(conn: asyncpg.Connection | asyncpg.Pool, billing_account_id: str,
                            period: str) -> list[AdjustmentTotal]:
    """A billing account's adjustments of `period`, summed by currency and by subscription."""
    start, end = period_range(period)
    rows = await conn.fetch(
        "SELECT currency, COALESCE(subscription_id, '') AS subscription_id, "
        "sum(delta) AS delta, count(*) AS n FROM adjustments "
        "WHERE billing_account_id = $1 AND period >= $2 AND period < $3 "
        "GROUP BY GROUPING SETS ((currency), (currency, subscription_id)) "
        "ORDER BY currency, 2", billing_account_id, start, end)
    return [AdjustmentTotal(r["currency"], r["subscription_id"], decimal_text(r["delta"]),
                            r["n"]) for r in rows]
