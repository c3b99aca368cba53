"""A poison record of any size yields a dead letter the broker accepts (SPEC §5.10).

Without the cap, a ~1 MB record escaped to JSON (quotes, control characters) or
base64-encoded (invalid UTF-8) made a dead letter over Kafka's 1 MiB message
limit: the batch retried for ever and its partition stalled (tests/faults).
"""

from __future__ import annotations

import base64

import jsonschema
import orjson
import pytest

from rater.messages import MAX_DEAD_LETTER_BYTES, SourceRecord, dead_letter
from rater.records.schemas import SCHEMA_DIR

BROKER_LIMIT = 1_048_576
SCHEMA = orjson.loads((SCHEMA_DIR / "dead_letter.schema.json").read_bytes())


@pytest.mark.parametrize("value", [
    b'"' * 1_000_000,            # every byte escaped: 2 MB as JSON
    b"\x01" * 1_000_000,         # every byte \u0001: 6 MB as JSON
    b"\xff" * 1_000_000,         # not UTF-8: base64, 1.33 MB
    "😀".encode() * 250_000,     # 4-byte characters: cut on a character boundary
])
def test_huge_poison_records_give_dead_letters_under_the_broker_limit(value: bytes) -> None:
    key = b"\x01" * 900_000  # the worst key too: 6 bytes of JSON per byte
    emit = dead_letter("calls.dlq", SourceRecord("calls.cdr", 3, 9, key, value),
                       "invalid", "too big", 0)
    assert len(emit.value) + len(emit.key or b"") < 0.9 * BROKER_LIMIT
    letter = orjson.loads(emit.value)
    jsonschema.validate(letter, SCHEMA)
    assert letter["truncated"] is True and letter["value_bytes"] == len(value)
    kept = (base64.b64decode(letter["value"]) if letter["value_encoding"] == "base64"
            else letter["value"].encode())
    assert value.startswith(kept) and len(value) - MAX_DEAD_LETTER_BYTES <= len(value) - len(kept)
    assert len(kept) > MAX_DEAD_LETTER_BYTES - 4
    assert emit.key == key[:MAX_DEAD_LETTER_BYTES]


def test_small_records_travel_whole() -> None:
    emit = dead_letter("calls.dlq", SourceRecord("calls.cdr", 0, 1, b"sub-1", b"\xffabc"),
                       "invalid", "not JSON", 0)
    letter = orjson.loads(emit.value)
    jsonschema.validate(letter, SCHEMA)
    assert "truncated" not in letter and base64.b64decode(letter["value"]) == b"\xffabc"
    assert emit.key == b"sub-1"
