"""Consumer lag as Prometheus sees it: one `rater_consumer_lag_messages` series per
partition a consumer owns, and none for partitions it no longer owns (their new owner
reports them), so a rebalance leaves no frozen lag behind."""

from __future__ import annotations

import contextlib
from typing import Any

from rater import metrics


class LagGauge:
    """The lag series of one consumer (the Faust app's, or the direct CDR consumer's)."""

    def __init__(self) -> None:
        self._series: set[tuple[str, str]] = set()

    async def update(self, consumer: Any) -> None:
        """One sample per assigned partition, once its first fetch told the highwater."""
        assignment = set(consumer.assignment()) if consumer is not None else set()
        current = {(tp.topic, str(tp.partition)) for tp in assignment}
        for gone in self._series - current:
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(*gone)
        self._series &= current
        for tp in assignment:
            try:
                position = await consumer.position(tp)
                highwater = consumer.highwater(tp)
            except Exception:  # partition being revoked: skip this round
                continue
            if position is not None and highwater is not None:
                labels = (tp.topic, str(tp.partition))
                metrics.CONSUMER_LAG.labels(*labels).set(max(0, highwater - position))
                self._series.add(labels)
