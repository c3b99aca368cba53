"""What enters and leaves the processing layer, independent of Faust.

`SourceRecord` is one consumed Kafka record; `Emit` is one record to produce.
Keeping these plain lets the rating pipeline be driven by a Faust agent, a
benchmark or a test alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from rater.rating.outputs import MAX_DEAD_LETTER_BYTES, dead_letter_record


# Not frozen: one is built per CDR on the hot path, and a frozen dataclass's __init__
# costs about six times a plain one (docs/performance.md). Never mutate one all the same.
@dataclass(slots=True)
class SourceRecord:
    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class Emit:
    topic: str
    key: bytes | None
    value: bytes
    # for a dead letter: the fields its log line carries (reason, ids, source);
    # not part of the record, so equal emits compare equal whatever they log
    log_fields: dict[str, Any] | None = field(default=None, compare=False, hash=False)


MAX_LOGGED_ID = 128  # SPEC §4: call ids are 1-128 chars; longer is garbage, not an id
MAX_LOGGED_DETAIL = 300
MAX_SNIFFED_BYTES = 65_536


def _logged_id(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MAX_LOGGED_ID:
        return value
    return None


def _sniff_ids(record: SourceRecord) -> dict[str, str]:
    """Best effort: the ids of a record that failed validation, for its log line only."""
    ids: dict[str, str] = {}
    raw = record.value or b""
    if 0 < len(raw) <= MAX_SNIFFED_BYTES:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            for name in ("subscription_id", "call_id", "attempt_id"):
                value = _logged_id(doc.get(name))
                if value is None and name == "subscription_id" and isinstance(
                    doc.get("subscription"), dict
                ):
                    value = _logged_id(doc["subscription"].get(name))
                if value is not None:
                    ids[name] = value
    if "subscription_id" not in ids and record.key is not None:
        try:
            key = _logged_id(record.key.decode("utf-8"))
        except UnicodeDecodeError:
            key = None
        if key is not None:
            ids["subscription_id"] = key  # SPEC §3: records are keyed by subscription id
    return ids


def dead_letter(
    dlq_topic: str,
    record: SourceRecord,
    reason: str,
    detail: str,
    at_ms: int,
    ids: dict[str, str] | None = None,
) -> Emit:
    """SPEC §4 dead letter: the original bytes (text, or base64 when not UTF-8) and why.

    `ids` (subscription_id, call_id, ...) go to the log line only; without them
    they are read, best effort, from the record itself.
    """
    raw = record.value or b""
    letter = dead_letter_record(reason, detail, record.topic, record.partition, record.offset,
                                record.key, raw, at_ms)
    kafka_key = record.key
    if kafka_key is not None and len(kafka_key) > MAX_DEAD_LETTER_BYTES:
        kafka_key = kafka_key[:MAX_DEAD_LETTER_BYTES]
    log_fields: dict[str, Any] = {
        "reason": reason,
        "detail": detail[:MAX_LOGGED_DETAIL],
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
    }
    log_fields.update(ids if ids is not None else _sniff_ids(record))
    return Emit(dlq_topic, kafka_key, orjson.dumps(letter), log_fields)
