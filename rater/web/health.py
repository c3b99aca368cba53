"""`/healthz`, `/readyz` and `/metrics`, plus the timer that keeps readiness and lag fresh."""

from __future__ import annotations

import logging
from typing import Any

from rater import metrics
from rater.lag import LagGauge
from rater.readiness import READINESS
from rater.store import RedisStore

log = logging.getLogger(__name__)
PROBE_INTERVAL_S = 5.0


class HealthProbe:
    """Kafka partitions assigned and Redis answering (SPEC §7); the Faust consumer's lag."""

    def __init__(self, app: Any, store: RedisStore) -> None:
        self.app = app
        self.store = store
        self.lag = LagGauge()

    async def probe(self) -> dict[str, Any]:
        try:
            redis_ok = await self.store.ping()
        except Exception as exc:  # any failure means "not ready", never a crash
            log.warning("readiness: Redis unreachable: %s", exc)
            redis_ok = False
        consumer = self.app.consumer
        assigned = len(consumer.assignment()) if consumer else 0
        READINESS.probed(redis_ok, assigned)
        await self.lag.update(consumer)
        return {"ready": READINESS.ready, "redis": redis_ok, "assigned_partitions": assigned}


def register_health(app: Any, store: RedisStore) -> HealthProbe:
    health = HealthProbe(app, store)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        state = await health.probe()
        return web.json(state, status=200 if state["ready"] else 503)

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        body, content_type = metrics.exposition()
        # aiohttp refuses a charset inside content_type=, so it travels as a header
        return web.bytes(body, headers={"Content-Type": content_type})

    @app.timer(interval=PROBE_INTERVAL_S)
    async def probe_readiness() -> None:
        await health.probe()

    return health
