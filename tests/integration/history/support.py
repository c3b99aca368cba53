"""Shared by the history tests: a schema of its own per test, and record builders."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from rater.config import Settings
from rater.rating.clock import format_ms, to_ms
from rater.rating.ids import charge_id
from tests.integration.api_support import ApiDeployment
from tests.integration.harness import Deployment


def history_dsn() -> str:
    port = os.environ.get("PG_PORT", "5432")
    return os.environ.get("RATER_HISTORY_DSN", f"postgresql://rater@127.0.0.1:{port}/rater")


def history_env(schema: str, name: str) -> dict[str, str]:
    """Environment of an isolated deployment: its own schema, app id and topic prefix."""
    return {
        "RATER_KAFKA_BOOTSTRAP": os.environ.get("RATER_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        "RATER_HISTORY_DSN": history_dsn(),
        "RATER_HISTORY_SCHEMA": schema,
        "RATER_APP_ID": name,
        "RATER_TOPIC_PREFIX": f"{name}.",
        "RATER_TOPIC_PARTITIONS": "3",
    }


def new_schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def sink_env(schema: str) -> dict[str, str]:
    """A worker's settings for its history sink on, writing into `schema`."""
    return {"RATER_HISTORY_SINK": "on", "RATER_HISTORY_DSN": history_dsn(),
            "RATER_HISTORY_SCHEMA": schema}


@contextlib.contextmanager
def api_with_history(tmp: Path) -> Iterator[ApiDeployment]:
    """A started API worker whose history sink writes into a schema of its own, dropped
    with the deployment."""
    schema = new_schema()
    started = ApiDeployment(tmp, deployment=Deployment(extra_env=sink_env(schema)))
    try:
        yield started.start()
    finally:
        started.stop()
        asyncio.run(drop_schema(schema))


def settings_for(schema: str, name: str | None = None, **overrides: Any) -> Settings:
    return Settings.from_env(history_env(schema, name or schema)).with_overrides(**overrides)


async def admin_connection() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(history_dsn(), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {history_dsn()} is unreachable ({exc!r}); run "
                    "`deploy/local/stack up` (make test does) or set RATER_HISTORY_DSN")


async def drop_schema(schema: str) -> None:
    conn = await admin_connection()
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


BASE = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def rated_call(i: int, sub: str = "sub-1", *, user: str = "u-1", outcome: str = "included",
               period: str = "2026-11-15", started: datetime | None = None,
               overage_s: int = 0, amount: str = "0", destination: str | None = "+4930123",
               with_destination: bool = True, account: str = "ba-1") -> dict[str, Any]:
    """A rated-call record as the rater emits it (field order included)."""
    start = started or BASE + timedelta(seconds=37 * i)
    charged = overage_s > 0
    record: dict[str, Any] = {
        "call_id": f"call-{i:06d}",
        "subscription_id": sub,
        "billing_account_id": account,
        "user_id": user,
        "started_at": format_ms(to_ms(start)),
        "period": period,
        "zone": "domestic" if i % 3 else "international",
        "direction": "outbound",
        "emergency": False,
        "duration_s": 30 + i % 500,
        "billable_s": 60,
        "included_s": 0 if charged else 60,
        "overage_s": overage_s,
        "unbilled_s": 0,
        "outcome": "overage" if charged else outcome,
        "amount": amount if charged else "0",
        "currency": "EUR",
        "charge_id": charge_id(sub, f"call-{i:06d}") if charged else None,
        "rated_at": format_ms(to_ms(start + timedelta(seconds=90))),
    }
    if with_destination:
        record["destination"] = destination
    return record


def charge_of(record: dict[str, Any], rate: str = "0.025") -> dict[str, Any]:
    return {
        "charge_id": record["charge_id"],
        "subscription_id": record["subscription_id"],
        "billing_account_id": record["billing_account_id"],
        "user_id": record["user_id"],
        "call_id": record["call_id"],
        "period": record["period"],
        "zone": record["zone"],
        "overage_s": record["overage_s"],
        "rate_per_minute": rate,
        "amount": record["amount"],
        "currency": record["currency"],
        "started_at": record["started_at"],
        "rated_at": record["rated_at"],
    }


def amount_for(overage_s: int, rate: str) -> str:
    exact = Decimal(overage_s) * Decimal(rate) / 60
    return f"{exact.quantize(Decimal('0.000001'), rounding='ROUND_HALF_UP'):f}"


def payg_event(sub: str, enabled: bool, at: str, actor: str = "alice",
               revision: int | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "payg.changed", "subscription_id": sub,
                             "enabled": enabled, "previous": not enabled, "actor": actor,
                             "role": "owner", "at": at}
    if revision is not None:
        event["revision"] = revision
    return event


def dumps(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)
