"""What every processing step holds (the store, the topic names, the input size limit, a
clock), and what it returns: the records to produce and what to count once they are."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rater.config import Settings, Topics
from rater.messages import Emit
from rater.rating.clock import now_ms
from rater.service.tally import Tally
from rater.store import RedisStore


@dataclass(slots=True)
class BatchOutput:
    emits: list[Emit]
    tally: Tally


class Step:
    def __init__(
        self, store: RedisStore, settings: Settings, clock: Callable[[], int] = now_ms
    ) -> None:
        self.store = store
        self.topics: Topics = settings.topics
        self.max_bytes = settings.max_record_bytes
        self.clock = clock  # injectable, so tests and replays are reproducible
