"""The direct consumer's batch size: full batches while a backlog waits, short ones while it
keeps up (rater.agents.cdr_consumer, docs/performance.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from rater.agents.cdr_consumer import DirectCdrConsumer
from rater.config import ConfigError, Settings


@dataclass
class _Message:
    offset: int


class _Consumer:
    """What the batch limit reads of an AIOKafkaConsumer: each partition's highwater."""

    def __init__(self, highwaters: dict[Any, int | None]) -> None:
        self.highwaters = highwaters

    def highwater(self, tp: Any) -> int | None:
        return self.highwaters[tp]


def consumer(settings: Settings, highwaters: dict[Any, int | None]) -> DirectCdrConsumer:
    direct = DirectCdrConsumer(settings, rater=None)  # type: ignore[arg-type]
    direct.consumer = _Consumer(highwaters)  # type: ignore[assignment]
    return direct


def taken(**last_offsets: int) -> dict[Any, list[Any]]:
    return {tp: [_Message(offset - 1), _Message(offset)] for tp, offset in last_offsets.items()}


def test_short_batches_while_keeping_up_full_ones_behind_a_backlog() -> None:
    settings = Settings.from_env({})
    assert (settings.batch_max, settings.batch_steady_max) == (1000, 200)
    direct = consumer(settings, {"p0": 101, "p1": 51})
    assert direct._batch_limit() == 200  # nothing taken yet
    # both partitions read up to their highwater: caught up
    direct._backlog = direct._waiting_after(taken(p0=100, p1=50))
    assert direct._backlog == 0 and direct._batch_limit() == 200


def test_a_backlog_of_a_full_batch_or_more_takes_full_batches_until_it_is_gone() -> None:
    direct = consumer(Settings.from_env({}), {"p0": 5_000, "p1": 900, "p2": None})
    # 4,899 + 699 records still waiting after this batch; p2's highwater is not known yet
    direct._backlog = direct._waiting_after(taken(p0=100, p1=200, p2=7))
    assert direct._backlog == 4_899 + 699
    assert direct._batch_limit() == 1000
    direct.consumer = _Consumer({"p0": 5_000})  # type: ignore[assignment]
    direct._backlog = direct._waiting_after(taken(p0=4_400))
    assert direct._backlog == 599 and direct._batch_limit() == 200


def test_the_steady_size_never_exceeds_the_batch_size() -> None:
    settings = Settings.from_env({"RATER_BATCH_MAX": "50", "RATER_BATCH_STEADY_MAX": "200"})
    assert consumer(settings, {})._batch_limit() == 50


def test_the_steady_size_is_checked_like_every_setting() -> None:
    assert Settings.from_env({"RATER_BATCH_STEADY_MAX": "1000"}).batch_steady_max == 1000
    with pytest.raises(ConfigError, match="RATER_BATCH_STEADY_MAX: must be between 1 and"):
        Settings.from_env({"RATER_BATCH_STEADY_MAX": "0"})
