"""Errors the store raises, so that no module outside `rater.store` imports redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import RedisClusterException, RedisError


class StoreUnavailable(Exception):
    """Redis did not answer (down, restarting, cluster moving slots): retry later."""


@asynccontextmanager
async def redis_errors() -> AsyncIterator[None]:
    """Turn every redis-py failure into StoreUnavailable."""
    try:
        yield
    except (RedisError, RedisClusterException) as exc:
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
