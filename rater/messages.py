"""What enters and leaves the processing layer, independent of Faust.

`SourceRecord` is one consumed Kafka record; `Emit` is one record to produce.
Keeping these plain lets the rating pipeline be driven by a Faust agent, a
benchmark or a test alike.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import orjson

from rater.rating.clock import format_ms


@dataclass(frozen=True, slots=True)
class SourceRecord:
    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Emit:
    topic: str
    key: bytes | None
    value: bytes


def _text_or_base64(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def dead_letter(
    dlq_topic: str, record: SourceRecord, reason: str, detail: str, at_ms: int
) -> Emit:
    """SPEC §4 dead letter: the original bytes (text, or base64 when not UTF-8) and why."""
    value, encoding = _text_or_base64(record.value or b"")
    key = None
    if record.key is not None:
        key, _ = _text_or_base64(record.key)
    letter = {
        "reason": reason,
        "detail": detail,
        "source_topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": key,
        "value": value,
        "value_encoding": encoding,
        "at": format_ms(at_ms),
    }
    return Emit(dlq_topic, record.key, orjson.dumps(letter))
