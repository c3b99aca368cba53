"""Fixtures of the history tests: the stack's real PostgreSQL, one schema per test.

A test that cannot reach PostgreSQL fails (RATER_HISTORY_DSN, default the local
stack's); nothing here is mocked. Each test's schema is dropped afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from rater.config import Settings
from rater.history import db
from rater.history.migrations import migrate
from tests.integration.history.support import (
    admin_connection,
    drop_schema,
    new_schema,
    settings_for,
)


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = new_schema()
    probe = await admin_connection()
    await probe.close()
    yield name
    await drop_schema(name)


@pytest.fixture
def settings(schema: str) -> Settings:
    return settings_for(schema)


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test's schema, migrated."""
    connection = await db.connect(settings)
    await migrate(connection, settings.history_schema)
    yield connection
    await connection.close()
