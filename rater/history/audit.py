"""Query: a subscription's `payg.changed` audit trail, newest first (SPEC §12)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from rater.history.calls import InvalidQuery

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    subscription_id: str
    type: str
    at: datetime
    actor: str | None
    role: str | None
    record: str  # the event as emitted (JSON text): `enabled`, `previous`, `revision`, …


async def audit_trail(conn: asyncpg.Connection | asyncpg.Pool, subscription_id: str,
                      event_type: str = "payg.changed",
                      limit: int = DEFAULT_LIMIT) -> list[AuditEntry]:
    """The subscription's events of `event_type`, newest first; events of the same
    instant in the order opposite to their emission."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery(f"limit: must be between 1 and {MAX_LIMIT}, got {limit}")
    rows = await conn.fetch(
        "SELECT subscription_id, type, at, actor, role, record::text AS record "
        "FROM audit_events WHERE subscription_id = $1 AND type = $2 "
        "ORDER BY at DESC, source_partition DESC, source_offset DESC LIMIT $3",
        subscription_id, event_type, limit)
    return [AuditEntry(r["subscription_id"], r["type"], r["at"], r["actor"], r["role"],
                       r["record"]) for r in rows]


async def payg_history(conn: asyncpg.Connection | asyncpg.Pool, subscription_id: str,
                       limit: int = DEFAULT_LIMIT) -> list[AuditEntry]:
    return await audit_trail(conn, subscription_id, "payg.changed", limit)
