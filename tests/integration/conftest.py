"""Fixtures for tests against the real local stack (deploy/local/stack up).

Nothing here is mocked: a test that cannot reach Kafka or Redis fails loudly.
Each test gets its own Redis key prefix (app id), so tests never see each
other's state and nothing needs flushing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from rater.config import Settings
from rater.store import RedisStore


def stack_settings(**overrides: object) -> Settings:
    settings = Settings.from_env({
        "RATER_KAFKA_BOOTSTRAP": os.environ.get("RATER_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        "RATER_REDIS_URL": os.environ.get("RATER_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "RATER_REDIS_CLUSTER": os.environ.get("RATER_REDIS_CLUSTER", "0"),
    })
    return settings.with_overrides(**overrides)


@pytest.fixture
async def store() -> AsyncIterator[RedisStore]:
    settings = stack_settings(app_id=f"t{uuid.uuid4().hex[:10]}")
    probe = aioredis.Redis.from_url(settings.redis_url)
    try:
        await probe.ping()
    except Exception as exc:
        pytest.fail(f"Redis at {settings.redis_url} is unreachable ({exc}); "
                    "run `deploy/local/stack up` (make test does)")
    finally:
        await probe.aclose()
    redis_store = RedisStore.from_settings(settings)
    yield redis_store
    await redis_store.close()
