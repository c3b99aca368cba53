"""Plain SQL migrations (`sql/NNN_name.sql`), applied in order, each once.

Every start of the sink (and `rater history migrate`) calls `migrate`. It takes a
transaction-scoped advisory lock for the schema, so processes starting at the same
time apply each migration once: the second waits, then finds it recorded in
`schema_migrations`. A migration and its record commit together or not at all.
An applied migration whose file changed since is refused: history is not rewritten.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

SQL_DIR = Path(__file__).resolve().parent / "sql"
_FILE_NAME = re.compile(r"(\d{3})_([a-z0-9_]+)\.sql")
# first key of the two-key advisory lock: "rater history migrations"; the second is
# the schema's hash, so two schemas of one database migrate independently
MIGRATION_LOCK = 0x48_49_53_54


class MigrationError(RuntimeError):
    """The migrations on disk and those recorded in the database disagree."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = SQL_DIR) -> list[Migration]:
    """Every `NNN_name.sql` of `directory`, by version; versions run 1, 2, 3 … without gaps."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    for expected, migration in enumerate(found, 1):
        if migration.version != expected:
            raise MigrationError(f"migration {expected:03d} missing (found "
                                 f"{migration.version:03d}_{migration.name}.sql)")
    return found


async def migrate(conn: asyncpg.Connection, schema: str,
                  migrations: list[Migration] | None = None) -> list[int]:
    """Apply the migrations not yet recorded in `schema`; returns the versions applied."""
    wanted = load_migrations() if migrations is None else migrations
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))",
                           MIGRATION_LOCK, schema)
        # the schema name is checked by Settings (lower-case letters, digits, _)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(f"SET LOCAL search_path TO {schema}")
        await conn.execute("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer     PRIMARY KEY,
                name       text        NOT NULL,
                checksum   text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )""")
        recorded = {row["version"]: row["checksum"]
                    for row in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
        for migration in wanted:
            checksum = recorded.get(migration.version)
            if checksum is not None:
                if checksum != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:03d}_{migration.name}.sql changed after "
                        f"it was applied to schema {schema}; add a new migration instead")
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version, migration.name, migration.checksum)
            applied.append(migration.version)
    return applied
