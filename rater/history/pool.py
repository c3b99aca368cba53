"""The query side's PostgreSQL pool (HTTP API and console): made on first use, closed when
the worker stops, and every failure of the database turned into `HistoryUnavailable`.

A worker that serves no history query never connects, so `RATER_HISTORY_SINK=off`
workers without a reachable PostgreSQL keep working; their history endpoints answer
503 until the database is there. A pool that could not be made is tried again on the
next request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from mode import Service

from rater.config import Settings
from rater.history import db

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_CONNECTIONS = 8
ACQUIRE_TIMEOUT_S = 10.0
# What PostgreSQL being down, restarting, refusing or too slow looks like to asyncpg.
DATABASE_FAILURES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# A pooled connection the server closed (a restart): the pool replaces it, so a read
# that met one is tried once more on a fresh connection.
STALE_CONNECTION: tuple[type[BaseException], ...] = (
    asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, ConnectionResetError)

PoolFactory = Callable[..., Awaitable[asyncpg.Pool]]


class HistoryUnavailable(Exception):
    """The history database did not answer; the message says why (for the log only)."""


class HistoryPool:
    def __init__(self, settings: Settings, create: PoolFactory = db.create_pool,
                 max_size: int = MAX_CONNECTIONS) -> None:
        self.settings = settings
        self._create = create
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def pool(self) -> asyncpg.Pool:
        async with self._lock:
            if self._closed:
                raise HistoryUnavailable("the worker is stopping")
            if self._pool is None:
                try:
                    self._pool = await self._create(self.settings, min_size=1,
                                                    max_size=self._max_size)
                except DATABASE_FAILURES as exc:
                    raise HistoryUnavailable(f"cannot connect: {exc!r}") from exc
            return self._pool

    async def read(self, query: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        """Run a read-only query on the pool; once more if it met a stale connection."""
        pool = await self.pool()
        for attempt in (1, 2):
            try:
                return await query(pool)
            except STALE_CONNECTION as exc:
                if attempt == 2:
                    raise HistoryUnavailable(f"query failed: {exc!r}") from exc
            except DATABASE_FAILURES as exc:
                raise HistoryUnavailable(f"query failed: {exc!r}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def acquire(self) -> asyncpg.Connection:
        """A connection for a long read (a CSV export); give it back with `release`."""
        pool = await self.pool()
        try:
            connection: asyncpg.Connection = await pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
        except DATABASE_FAILURES as exc:
            raise HistoryUnavailable(f"no connection: {exc!r}") from exc
        return connection

    async def release(self, connection: asyncpg.Connection) -> None:
        if self._pool is None:
            return
        try:
            await self._pool.release(connection)
        except DATABASE_FAILURES as exc:  # a broken connection is dropped by the pool
            log.warning("history: releasing a connection failed: %r", exc)

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=ACQUIRE_TIMEOUT_S)
            except DATABASE_FAILURES as exc:
                log.warning("history: closing the query pool failed: %r", exc)
                pool.terminate()


def register_history_pool(app: Any, settings: Settings) -> HistoryPool:
    """The worker's one query pool, closed when the Faust app stops."""
    history = HistoryPool(settings)

    class HistoryPoolCloser(Service):  # type: ignore[misc]
        async def on_stop(self) -> None:
            await history.close()

    app.service(HistoryPoolCloser)
    return history
