"""Connections to the history database, each with the history schema on its search path."""

from __future__ import annotations

import asyncpg

from rater.config import Settings

CONNECT_TIMEOUT_S = 10.0
# A statement that takes longer is abandoned and retried: a hung server must not hold
# the sink forever. The sink's batches take well under a second.
COMMAND_TIMEOUT_S = 120.0


def _server_settings(settings: Settings) -> dict[str, str]:
    return {"search_path": settings.history_schema, "application_name": settings.app_id}


async def connect(settings: Settings) -> asyncpg.Connection:
    """One connection whose unqualified names resolve in `RATER_HISTORY_SCHEMA`."""
    return await asyncpg.connect(
        settings.history_dsn, timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S,
        server_settings=_server_settings(settings))


async def create_pool(settings: Settings, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool for the query side (API, console), configured like `connect`."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        settings.history_dsn, min_size=min_size, max_size=max_size,
        timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S,
        server_settings=_server_settings(settings))
    return pool
