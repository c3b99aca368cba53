"""Migrations: applied once, recorded, idempotent, safe when processes start together."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from rater.config import Settings
from rater.history import db
from rater.history.migrations import Migration, MigrationError, load_migrations, migrate

pytestmark = pytest.mark.integration


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return {r["tablename"] for r in rows}


async def test_first_run_creates_the_tables_and_a_second_changes_nothing(
        settings: Settings) -> None:
    conn = await db.connect(settings)
    try:
        first = await migrate(conn, settings.history_schema)
        tables = await _tables(conn)
        second = await migrate(conn, settings.history_schema)
        recorded = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY 1")
    finally:
        await conn.close()
    assert first == [m.version for m in load_migrations()]
    assert second == []
    assert {"rated_calls", "overage_charges", "audit_events", "schema_migrations"} <= tables
    assert [(r["version"], r["name"]) for r in recorded] == [
        (m.version, m.name) for m in load_migrations()]


async def test_processes_starting_together_apply_each_migration_once(settings: Settings) -> None:
    conns = [await db.connect(settings) for _ in range(6)]
    try:
        results = await asyncio.gather(*(migrate(c, settings.history_schema) for c in conns))
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        for c in conns:
            await c.close()
    versions = [m.version for m in load_migrations()]
    assert sorted(results, key=len) == [[]] * 5 + [versions]
    assert count == len(versions)


async def test_an_applied_migration_that_changed_is_refused(settings: Settings) -> None:
    conn = await db.connect(settings)
    try:
        await migrate(conn, settings.history_schema)
        edited = [Migration(m.version, m.name, m.sql + "\n-- edited") for m in load_migrations()]
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, settings.history_schema, edited)
    finally:
        await conn.close()


async def test_a_new_migration_is_applied_after_the_recorded_ones(
        settings: Settings, tmp_path: Path) -> None:
    for m in load_migrations():
        (tmp_path / f"{m.version:03d}_{m.name}.sql").write_text(m.sql)
    conn = await db.connect(settings)
    try:
        await migrate(conn, settings.history_schema)
        nxt = len(load_migrations()) + 1
        (tmp_path / f"{nxt:03d}_extra.sql").write_text("CREATE TABLE extra (x integer);")
        applied = await migrate(conn, settings.history_schema, load_migrations(tmp_path))
        assert applied == [nxt]
        assert "extra" in await _tables(conn)
    finally:
        await conn.close()
