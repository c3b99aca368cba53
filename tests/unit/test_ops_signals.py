"""Log lines and lag series an on-call engineer relies on, without Kafka or Redis:
the JSON formatter, the dead-letter log fields and cap, the lag gauge's clean-up."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from rater import metrics
from rater.agents.delivery import LOGGED_DEAD_LETTERS_PER_BATCH, log_dead_letters
from rater.config import Settings
from rater.lag import LagGauge
from rater.logs import JsonFormatter, logging_config
from rater.messages import SourceRecord, dead_letter
from rater.service.step import BatchOutput
from rater.service.tally import Tally


def record(value: bytes, key: bytes | None = b"sub-9", offset: int = 7) -> SourceRecord:
    return SourceRecord("calls.cdr", 2, offset, key, value)


def format_json(**extra: Any) -> dict[str, Any]:
    rec = logging.LogRecord("rater.x", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    for name, value in extra.items():
        setattr(rec, name, value)
    parsed: dict[str, Any] = json.loads(JsonFormatter().format(rec))
    return parsed


def test_json_formatter_puts_extra_fields_at_the_top_level() -> None:
    entry = format_json(reason="invalid", call_id="c-1", big=2**70, obj=object())
    assert entry["level"] == "warning" and entry["logger"] == "rater.x"
    assert entry["message"] == "hello you"
    assert entry["reason"] == "invalid" and entry["call_id"] == "c-1"
    assert entry["big"] == 2**70  # beyond orjson's 64 bits: still one JSON object
    assert isinstance(entry["obj"], str)


def test_logging_config_keeps_loggers_made_at_import_time() -> None:
    config = logging_config(Settings(log_format="json", log_level="WARNING"))
    assert config["disable_existing_loggers"] is False
    assert config["root"] == {"level": "WARNING", "handlers": ["rater"]}
    assert config["formatters"]["rater"]["()"] is JsonFormatter


@pytest.mark.parametrize(
    ("value", "key", "ids"),
    [
        (b"not json", b"sub-9", {"subscription_id": "sub-9"}),
        (b'{"call_id": "c-1", "subscription_id": 5}', b"sub-9",
         {"subscription_id": "sub-9", "call_id": "c-1"}),
        (b'{"call_id": "' + b"x" * 200 + b'", "subscription_id": "sub-1"}', None,
         {"subscription_id": "sub-1"}),
        (b'{"type": "subscription.upserted", "subscription": {"subscription_id": "s-2"}}',
         b"s-2", {"subscription_id": "s-2"}),
        (b'{"attempt_id": "a-1"}', b"\xff\xfe", {"attempt_id": "a-1"}),
    ],
)
def test_dead_letter_log_fields_carry_the_ids_found(
    value: bytes, key: bytes | None, ids: dict[str, str]
) -> None:
    emit = dead_letter("calls.dlq", record(value, key), "invalid", "why", 0)
    assert emit.log_fields == {"reason": "invalid", "detail": "why", "source_topic": "calls.cdr",
                               "source_partition": 2, "source_offset": 7, **ids}
    # the record itself is unchanged by what its log line carries
    assert "source_partition" not in orjson.loads(emit.value)


def test_dead_letters_are_logged_one_by_one_up_to_a_cap_then_summed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    total = LOGGED_DEAD_LETTERS_PER_BATCH + 5
    emits = [dead_letter("calls.dlq", record(b"x", offset=i), "invalid" if i % 2 else "late",
                         "d", 0, {"subscription_id": "s", "call_id": f"c-{i}"})
             for i in range(total)]
    with caplog.at_level(logging.WARNING, logger="rater.agents.runner"):
        log_dead_letters("rate", BatchOutput(emits, Tally()))
    singles = [r for r in caplog.records if hasattr(r, "call_id")]
    assert [r.call_id for r in singles] == [
        f"c-{i}" for i in range(LOGGED_DEAD_LETTERS_PER_BATCH)]
    [summary] = [r for r in caplog.records if hasattr(r, "dead_letters")]
    assert summary.dead_letters == 5
    assert summary.reasons == {"invalid": 2, "late": 3}  # type: ignore[attr-defined]


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


class FakeConsumer:
    def __init__(self, assigned: set[TP], highwater: int) -> None:
        self.assigned = assigned
        self.high = highwater

    def assignment(self) -> set[TP]:
        return self.assigned

    async def position(self, tp: TP) -> int:
        return 40

    def highwater(self, tp: TP) -> int:
        return self.high


def lag_series(topic_prefix: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in metrics.REGISTRY.collect() if family.name == "rater_consumer_lag_messages"
        for s in family.samples if s.labels["topic"].startswith(topic_prefix)
    }


async def test_lag_is_reported_per_partition_and_dropped_when_revoked() -> None:
    a, b = TP("unit-lag.calls.cdr", 0), TP("unit-lag.calls.cdr", 1)
    gauge = LagGauge()
    await gauge.update(FakeConsumer({a, b}, highwater=45))
    assert lag_series("unit-lag.") == {("unit-lag.calls.cdr", "0"): 5.0,
                                       ("unit-lag.calls.cdr", "1"): 5.0}
    # partition 0 went to another worker
    await gauge.update(FakeConsumer({b}, highwater=41))
    assert lag_series("unit-lag.") == {("unit-lag.calls.cdr", "1"): 1.0}
