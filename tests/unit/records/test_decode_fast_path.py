"""The CDR decoder's fast path (typed shape check, integer timestamp parse) is the schema
path's twin: same record for every input it takes, and it takes only valid ones."""

from __future__ import annotations

import random
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from rater.records import Cdr, InvalidRecord, decode_cdr, parse_json, parse_timestamp, validate
from rater.records.decode import _cdr_shape
from rater.records.timestamps import timestamp_fast
from tests.builders import cdr_doc


def slow_decode(raw: bytes) -> Cdr | str:
    """decode_cdr without the fast path: the compiled schema, then the full parser."""
    try:
        doc = validate("cdr", parse_json(raw, 65_536))
        return Cdr(call_id=doc["call_id"], subscription_id=doc["subscription_id"],
                   user_id=doc["user_id"],
                   started_at_ms=parse_timestamp(doc["started_at"], "started_at"),
                   duration_s=int(doc["duration_s"]), direction=doc["direction"],
                   zone=doc["zone"], emergency=doc.get("emergency", False),
                   destination=doc.get("destination"))
    except InvalidRecord as exc:
        return f"invalid: {exc}"


def fast_decode(raw: bytes) -> Cdr | str:
    try:
        return decode_cdr(raw)
    except InvalidRecord as exc:
        return f"invalid: {exc}"


def test_the_fast_shape_is_in_use() -> None:
    assert _cdr_shape().usable
    assert _cdr_shape().matches(orjson.loads(orjson.dumps(cdr_doc())))


TIMESTAMPS = [
    "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00.123456789Z",
    "2026-02-29T00:00:00Z", "2024-02-29T23:59:59.999Z", "2026-13-01T00:00:00Z",
    "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2026-12-31T23:59:60Z",
    "1969-12-31T23:59:59.999Z", "1970-01-01T00:00:00Z", "9998-12-31T23:59:59.999Z",
    "9999-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "2026-01-01T00:00:00.000Z",
    "2026-01-01t00:00:00z", "2026-01-01 00:00:00Z", "2026-01-01T01:00:00+01:00",
    "\uff12\uff10\uff12\uff16-01-01T00:00:00Z", "2026-1-01T00:00:00Z",
]


def outcome(fn: Any, text: str) -> Any:
    try:
        return fn(text)
    except InvalidRecord as exc:
        return f"invalid: {exc}"


def test_fast_timestamps_agree_or_defer() -> None:
    rnd = random.Random(5)
    texts = list(TIMESTAMPS)
    for _ in range(20_000):
        texts.append(
            f"{rnd.randint(1960, 10000):04d}-{rnd.randint(0, 13):02d}-{rnd.randint(0, 32):02d}T"
            f"{rnd.randint(0, 24):02d}:{rnd.randint(0, 60):02d}:{rnd.randint(0, 60):02d}"
            + rnd.choice(["", ".1", ".12", ".123", ".1234", ".999999999", ".0"]) + "Z")
    for text in texts:
        fast = timestamp_fast(text)
        if fast is not None:
            assert fast == parse_timestamp(text, "started_at"), text


def _docs() -> st.SearchStrategy[dict[str, Any]]:
    values = (st.none() | st.booleans() | st.integers(-5, 90_000) | st.floats(0, 100)
              | st.text(max_size=6))
    fields = {
        "call_id": st.text(max_size=130) | values,
        "subscription_id": st.sampled_from(["sub-1", "a b", "{x}", "", "s\n", "x" * 129])
        | values,
        "user_id": st.text(max_size=3) | values,
        "started_at": st.sampled_from(TIMESTAMPS) | values,
        "duration_s": st.sampled_from([0, 1, 60, 61.0, 86_400, 86_401, -1, True]) | values,
        "direction": st.sampled_from(["outbound", "inbound", "OUTBOUND"]) | values,
        "zone": st.sampled_from(["domestic", "international", "mars"]) | values,
        "emergency": st.booleans() | values,
        "destination": st.sampled_from(["+4930123456", "030", "+0123", None, "+49301\n"])
        | values,
        "extra": values,
    }
    return st.fixed_dictionaries({}, optional=fields).map(
        lambda extra: {**cdr_doc(), **{k: v for k, v in extra.items() if k != "extra"},
                       **({"extra": extra["extra"]} if "extra" in extra else {})})


@settings(max_examples=1500, deadline=None)
@given(doc=_docs(), drop=st.sets(st.sampled_from(sorted(_cdr_shape().ALLOWED)), max_size=2))
def test_fast_decode_is_the_schema_decode(doc: dict[str, Any], drop: set[str]) -> None:
    for name in drop:
        doc.pop(name, None)
    raw = orjson.dumps(doc)
    assert fast_decode(raw) == slow_decode(raw)


def test_memoised_seconds_still_check_the_rest_of_the_text() -> None:
    head = "2026-03-04T05:06:07"
    second = parse_timestamp(head + "Z", "t")
    assert timestamp_fast(head + "Z") == second  # memoises the head
    accepted = {"Z": 0, ".5Z": 500, ".123456789Z": 123, ".000Z": 0}
    deferred = ["", ".1234567890Z", ".Z", "z", "Z ", ".12z", "+00:00", ".\uff11Z", ".1 Z",
                "..1Z", ".-1Z", "ZZ", ".12"]
    for tail, millis in accepted.items():
        assert timestamp_fast(head + tail) == second + millis, tail
    for tail in deferred:  # left to the full parser, as without the memo
        assert timestamp_fast(head + tail) is None, tail
