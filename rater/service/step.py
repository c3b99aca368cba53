"""What every processing step holds: the store, the topic names, the input size limit, a clock."""

from __future__ import annotations

from collections.abc import Callable

from rater.config import Settings, Topics
from rater.rating.clock import now_ms
from rater.store import RedisStore


class Step:
    def __init__(
        self, store: RedisStore, settings: Settings, clock: Callable[[], int] = now_ms
    ) -> None:
        self.store = store
        self.topics: Topics = settings.topics
        self.max_bytes = settings.max_record_bytes
        self.clock = clock  # injectable, so tests and replays are reproducible
