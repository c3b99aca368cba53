"""Whether this worker is ready (SPEC §7 `/readyz`): Redis answers and Kafka partitions
are assigned. One state per process, published as the `rater_ready` gauge: the health
probe sets it every few seconds, and a failed Redis call clears it at once."""

from __future__ import annotations

from rater import metrics


class Readiness:
    def __init__(self) -> None:
        self.redis_ok = False
        self.assigned_partitions = 0

    @property
    def ready(self) -> bool:
        return self.redis_ok and self.assigned_partitions > 0

    def probed(self, redis_ok: bool, assigned_partitions: int) -> None:
        self.redis_ok = redis_ok
        self.assigned_partitions = assigned_partitions
        self._publish()

    def store_failed(self) -> None:
        """A Redis call failed: not ready until the next probe finds Redis again."""
        self.redis_ok = False
        self._publish()

    def _publish(self) -> None:
        metrics.READY.set(1 if self.ready else 0)


READINESS = Readiness()
