"""`/healthz`, `/readyz` and `/metrics`, plus the timer that keeps readiness and lag fresh."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from rater import metrics
from rater.store import RedisStore

log = logging.getLogger(__name__)
PROBE_INTERVAL_S = 5.0


class Readiness:
    """Kafka partitions assigned and Redis answering (SPEC §7)."""

    def __init__(self, app: Any, store: RedisStore) -> None:
        self.app = app
        self.store = store
        self.redis_ok = False
        self.assigned = 0
        self._lag_series: set[tuple[str, str]] = set()

    async def probe(self) -> dict[str, Any]:
        try:
            self.redis_ok = await self.store.ping()
        except Exception as exc:  # any failure means "not ready", never a crash
            log.warning("readiness: Redis unreachable: %s", exc)
            self.redis_ok = False
        assignment = self.app.consumer.assignment() if self.app.consumer else set()
        self.assigned = len(assignment)
        await self._update_lag(assignment)
        ready = self.redis_ok and self.assigned > 0
        metrics.READY.set(1 if ready else 0)
        return {"ready": ready, "redis": self.redis_ok, "assigned_partitions": self.assigned}

    async def _update_lag(self, assignment: set[Any]) -> None:
        """One sample per assigned partition (once its first fetch told the highwater);
        the series of partitions this worker no longer owns are dropped, so a
        rebalance leaves no frozen lag behind (their new owner reports them)."""
        current = {(tp.topic, str(tp.partition)) for tp in assignment}
        for gone in self._lag_series - current:
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(*gone)
        self._lag_series &= current
        for tp in assignment:
            try:
                position = await self.app.consumer.position(tp)
                highwater = self.app.consumer.highwater(tp)
            except Exception:  # partition being revoked: skip this round
                continue
            if position is not None and highwater is not None:
                labels = (tp.topic, str(tp.partition))
                metrics.CONSUMER_LAG.labels(*labels).set(max(0, highwater - position))
                self._lag_series.add(labels)


def register_health(app: Any, store: RedisStore) -> Readiness:
    readiness = Readiness(app, store)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        state = await readiness.probe()
        return web.json(state, status=200 if state["ready"] else 503)

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        body, content_type = metrics.exposition()
        # aiohttp refuses a charset inside content_type=, so it travels as a header
        return web.bytes(body, headers={"Content-Type": content_type})

    @app.timer(interval=PROBE_INTERVAL_S)
    async def probe_readiness() -> None:
        await readiness.probe()

    return readiness
