"""Decoding input records: valid ones decode; every kind of bad input is an InvalidRecord."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rater.rating.outputs import subscription_document
from rater.rating.periods import period_of
from rater.records import (
    CallAttempt,
    Cdr,
    Increment,
    InvalidRecord,
    PaygChange,
    Subscription,
    cdr_fingerprint,
    decode_attempt,
    decode_cdr,
    decode_subscription_event,
    parse_timestamp,
    subscription_from_document,
)
from tests.builders import (
    attempt_doc,
    cdr_doc,
    make_cdr,
    make_subscription,
    ms,
    subscription_doc,
)


def enc(doc: Any) -> bytes:
    return orjson.dumps(doc)


def invalid(decoder: Any, raw: bytes, *fragments: str, **kwargs: Any) -> str:
    """Decoding fails with InvalidRecord whose detail mentions every fragment."""
    with pytest.raises(InvalidRecord) as caught:
        decoder(raw, **kwargs)
    detail = str(caught.value)
    assert detail.strip(), "the detail must say something"
    for fragment in fragments:
        assert fragment in detail, detail
    return detail


def test_invalid_record_is_a_value_error() -> None:
    assert issubclass(InvalidRecord, ValueError)


# --- valid inputs -----------------------------------------------------------------------


def test_valid_cdr_with_defaults() -> None:
    cdr = decode_cdr(enc(cdr_doc()))
    assert cdr == make_cdr()
    assert cdr.emergency is False
    assert cdr.destination is None


def test_valid_cdr_with_every_field() -> None:
    doc = cdr_doc(call_id="x" * 128, user_id="u-9", started_at="2026-03-01T10:20:30.456+02:00",
                  duration_s=86_400, direction="inbound", zone="international", emergency=True,
                  destination="+4930123456")
    cdr = decode_cdr(enc(doc))
    assert cdr == Cdr(
        call_id="x" * 128, subscription_id="sub-1", user_id="u-9",
        started_at_ms=ms("2026-03-01T08:20:30.456Z"), duration_s=86_400, direction="inbound",
        zone="international", emergency=True, destination="+4930123456",
    )
    assert cdr.is_free


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ("2026-01-01t00:00:00z", "2026-01-01T00:00:00Z"),
        ("2026-01-01 00:00:00Z", "2026-01-01T00:00:00Z"),
        ("2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00Z"),
        ("2025-12-31T19:00:00-05:00", "2026-01-01T00:00:00Z"),
        ("2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00.500Z"),
        ("2026-01-01T00:00:00.123456789Z", "2026-01-01T00:00:00.123Z"),  # sub-ms dropped
        ("2026-01-01T00:00:00.999999+00:00", "2026-01-01T00:00:00.999Z"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),
    ],
)
def test_timestamps(text: str, expected: str) -> None:
    assert parse_timestamp(text, "started_at") == ms(expected)
    assert decode_cdr(enc(cdr_doc(started_at=text))).started_at_ms == ms(expected)


def test_valid_attempt_with_and_without_at() -> None:
    assert decode_attempt(enc(attempt_doc())) == CallAttempt(
        "att-1", "sub-1", "user-1", "outbound", "domestic", False, None
    )
    attempt = decode_attempt(enc(attempt_doc(at="2026-01-01T00:00:00Z", emergency=True,
                                             direction="inbound", zone="international")))
    assert attempt.at_ms == ms("2026-01-01T00:00:00Z")
    assert attempt.emergency is True
    assert attempt.is_free


def test_valid_subscription_upserted_event() -> None:
    event = {"type": "subscription.upserted", "at": "2026-01-01T00:00:00Z",
             "subscription": subscription_doc(licenses=3, increment="30/6", anchor_day=31,
                                              payg=True, international_rate="1.5")}
    sub = decode_subscription_event(enc(event))
    assert isinstance(sub, Subscription)
    assert sub == make_subscription(licenses=3, increment="30/6", anchor_day=31, payg=True,
                                    international_rate="1.5")
    assert sub.plan.billing_increment == Increment(30, 6)
    assert sub.plan.payg_rate_per_minute["international"] == Decimal("1.5")
    assert isinstance(sub.plan.payg_rate_per_minute["domestic"], Decimal)
    assert sub.included_s("domestic") == 3 * 10 * 60


def test_subscription_payg_defaults_to_off() -> None:
    doc = subscription_doc()
    del doc["payg_enabled"]
    assert subscription_from_document(doc).payg_enabled is False


def test_subscription_document_round_trip() -> None:
    doc = subscription_doc(licenses=4, domestic_rate="0.000001", increment="1/1", payg=True)
    sub = subscription_from_document(doc)
    assert subscription_document(sub) == doc
    assert subscription_from_document(subscription_document(sub)) == sub


def test_valid_payg_changed_event() -> None:
    event = {"type": "payg.changed", "subscription_id": "sub-1", "enabled": True,
             "previous": False, "actor": "alice", "role": "owner", "at": "2026-01-01T00:00:00Z"}
    assert decode_subscription_event(enc(event)) == PaygChange(
        "sub-1", True, False, "alice", "owner", "2026-01-01T00:00:00Z"
    )
    minimal = {"type": "payg.changed", "subscription_id": "sub-1", "enabled": False}
    assert decode_subscription_event(enc(minimal)) == PaygChange(
        "sub-1", False, None, None, None, None
    )


# --- not JSON, wrong shape, oversized -----------------------------------------------------

DECODERS = [decode_cdr, decode_attempt, decode_subscription_event]


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"{", b'{"a": 1,}', b"{'a': 1}", b"NaN", b'{"duration_s": Infinity}',
     b"\xff\xfe\x00", b'{"call_id": "\xc3\x28"}', b'"\xed\xa0\x80"'],
    ids=["empty", "text", "truncated", "trailing-comma", "single-quotes", "nan", "infinity",
         "bad-bytes", "bad-utf8-in-string", "surrogate"],
)
def test_not_json(decoder: Any, raw: bytes) -> None:
    invalid(decoder, raw, "not JSON")


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("doc", [[], [cdr_doc()], "a string", 42, None, True])
def test_json_that_is_not_an_object(decoder: Any, doc: Any) -> None:
    invalid(decoder, enc(doc))


def test_array_of_a_valid_cdr_is_invalid() -> None:
    invalid(decode_cdr, enc([cdr_doc()]), "must be object")


def test_oversized_against_max_bytes() -> None:
    raw = enc(cdr_doc(call_id="x" * 1_000_000))
    invalid(decode_cdr, raw, "exceeds", "65536")
    invalid(decode_cdr, enc(cdr_doc()), "exceeds", max_bytes=50)
    # within a raised limit the same record is still too long for the schema
    invalid(decode_cdr, raw, "call_id", max_bytes=2_000_000)


@pytest.mark.parametrize("decoder", DECODERS)
def test_deep_nesting(decoder: Any) -> None:
    invalid(decoder, b"[" * 10_000 + b"]" * 10_000, max_bytes=100_000)
    invalid(decoder, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, max_bytes=100_000)


def test_deep_nesting_inside_a_field() -> None:
    deep = b'{"call_id":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    invalid(decode_cdr, deep, max_bytes=100_000)


# --- fields: types, missing, ranges -------------------------------------------------------

WRONG_TYPES: list[tuple[str, Any]] = [
    ("call_id", 123), ("call_id", None), ("call_id", ""), ("call_id", ["c"]),
    ("subscription_id", 1), ("subscription_id", ""), ("subscription_id", "has space"),
    ("subscription_id", "{tag}"),
    ("user_id", None), ("user_id", {}),
    ("started_at", 1767225600000), ("started_at", None),
    ("duration_s", "60"), ("duration_s", True), ("duration_s", 1.5), ("duration_s", None),
    ("direction", 1), ("direction", "sideways"), ("direction", "OUTBOUND"),
    ("zone", 0), ("zone", "mars"), ("zone", "Domestic"),
    ("emergency", "yes"), ("emergency", 1), ("emergency", None),
    ("destination", 4930123), ("destination", "030 123"),
]


@pytest.mark.parametrize(("field", "value"), WRONG_TYPES)
def test_cdr_wrong_type_or_value_names_the_field(field: str, value: Any) -> None:
    doc = {**cdr_doc(), field: value}
    invalid(decode_cdr, enc(doc), field)


CDR_REQUIRED = ["call_id", "subscription_id", "user_id", "started_at", "duration_s", "direction",
                "zone"]


@pytest.mark.parametrize("field", CDR_REQUIRED)
def test_cdr_missing_field(field: str) -> None:
    doc = cdr_doc()
    del doc[field]
    invalid(decode_cdr, enc(doc), field)


def test_cdr_unknown_field() -> None:
    invalid(decode_cdr, enc({**cdr_doc(), "cost": "1.00"}), "cost")


@pytest.mark.parametrize(("duration", "fragment"), [(-1, "bigger"), (86_401, "smaller"),
                                                     (10**100, "smaller"), (-(10**100), "bigger"),
                                                     (2**64, "smaller")])
def test_negative_or_absurd_duration(duration: int, fragment: str) -> None:
    invalid(decode_cdr, enc(cdr_doc()).replace(b'"duration_s":60', b'"duration_s":%d' % duration),
            "duration_s", fragment)


def test_huge_integer_literal_text() -> None:
    raw = enc(cdr_doc()).replace(b'"duration_s":60', b'"duration_s":1' + b"0" * 100)
    invalid(decode_cdr, raw, "duration_s")
    raw = enc(cdr_doc()).replace(b'"duration_s":60', b'"duration_s":1e400')
    invalid(decode_cdr, raw)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2026-13-01T00:00:00Z", "not an RFC 3339 timestamp"),
        ("2026-02-30T00:00:00Z", "not an RFC 3339 timestamp"),
        ("2026-01-01T24:00:00Z", "not an RFC 3339 timestamp"),
        ("2026-12-31T23:59:60Z", "not an RFC 3339 timestamp"),
        ("2026-01-01T00:00:00+25:00", "not an RFC 3339 timestamp"),
        ("2026-01-01T00:00:00", "started_at"),  # no offset
        ("2026-01-01T00:00:00.000", "started_at"),  # no offset, with fraction
        ("2026-01-01", "started_at"),
        ("20260101T000000Z", "started_at"),
        ("2026-01-01T00:00Z", "started_at"),
        ("2026-01-01T00:00:00+0100", "started_at"),
        ("2026-01-01T00:00:00 UTC", "started_at"),
        ("yesterday", "started_at"),
        ("\uff12\uff10\uff12\uff16-01-01T00:00:00Z", "started_at"),  # full-width digits
        ("0001-01-01T00:00:00+01:00", "out of range"),  # before datetime.min in UTC
        ("9999-12-31T23:59:59-01:00", "out of range"),  # after datetime.max in UTC
        ("0001-01-01T00:00:00Z", "out of range"),
        ("1969-12-31T23:59:59.999Z", "out of range"),
        ("9999-06-01T00:00:00Z", "out of range"),
    ],
)
def test_bad_timestamps(text: str, fragment: str) -> None:
    detail = invalid(decode_cdr, enc(cdr_doc(started_at=text)), fragment)
    assert "started_at" in detail
    invalid(decode_attempt, enc(attempt_doc(at=text)), "at")


def test_every_accepted_timestamp_has_a_billing_period() -> None:
    """The range guard: the extremes that decode can be assigned a period without error."""
    for text in ("1970-01-01T00:00:00Z", "9998-12-31T23:59:59.999Z"):
        at = decode_cdr(enc(cdr_doc(started_at=text))).started_at_ms
        for anchor in (1, 15, 31):
            period = period_of(at, anchor)
            assert period.start_ms <= at < period.end_ms


def test_integral_floats_become_ints() -> None:
    """JSON Schema's integer admits 61.0; the rater must still see (and fingerprint) an int."""
    raw = enc(cdr_doc()).replace(b'"duration_s":60', b'"duration_s":61.0')
    cdr = decode_cdr(raw)
    assert cdr.duration_s == 61 and type(cdr.duration_s) is int
    assert cdr_fingerprint(cdr) == cdr_fingerprint(decode_cdr(enc(cdr_doc(duration_s=61))))
    doc = subscription_doc()
    doc.update(licenses=2.0, billing_anchor_day=15.0)
    doc["plan"]["included_minutes_per_license"]["domestic"] = 1e1
    sub = subscription_from_document(doc)
    assert type(sub.licenses) is int and sub.licenses == 2
    assert type(sub.billing_anchor_day) is int and sub.billing_anchor_day == 15
    assert type(sub.plan.included_minutes_per_license["domestic"]) is int
    assert sub.included_s("domestic") == 2 * 10 * 60
    assert period_of(ms("2026-01-20T00:00:00Z"), sub.billing_anchor_day).name == "2026-01-15"


@pytest.mark.parametrize(("field", "value"), [
    ("attempt_id", ""), ("attempt_id", 1), ("subscription_id", None), ("user_id", 5),
    ("direction", "sideways"), ("zone", "mars"), ("emergency", "no"), ("at", 0),
])
def test_attempt_wrong_fields(field: str, value: Any) -> None:
    invalid(decode_attempt, enc({**attempt_doc(), field: value}), field)


@pytest.mark.parametrize("field", ["attempt_id", "subscription_id", "user_id", "direction",
                                   "zone"])
def test_attempt_missing_field(field: str) -> None:
    doc = attempt_doc()
    del doc[field]
    invalid(decode_attempt, enc(doc), field)


# --- subscriptions ------------------------------------------------------------------------


def upsert(doc: dict[str, Any]) -> bytes:
    return enc({"type": "subscription.upserted", "subscription": doc})


@pytest.mark.parametrize(
    "changes",
    [
        {"domestic_rate": "0.0250001"},  # 7 decimal places
        {"international_rate": "0.1234567"},
        {"domestic_rate": "-0.025"},
        {"domestic_rate": "1e-3"},
        {"domestic_rate": "1000000"},
        {"domestic_rate": ".5"},
        {"domestic_rate": "NaN"},
        {"increment": "0/60"},
        {"increment": "60/0"},
        {"increment": "60"},
        {"increment": "a/b"},
        {"increment": "60/60/60"},
        {"increment": "-1/60"},
        {"anchor_day": 0},
        {"anchor_day": 32},
        {"licenses": -1},
        {"licenses": 1_000_001},
        {"domestic_minutes": -5},
        {"currency": "eur"},
        {"currency": "EURO"},
        {"subscription_id": ""},
        {"subscription_id": "sub {1}"},
    ],
)
def test_bad_subscription(changes: dict[str, Any]) -> None:
    raw_doc = subscription_doc(**changes)
    with pytest.raises(InvalidRecord) as caught:
        subscription_from_document(raw_doc)
    assert str(caught.value)
    invalid(decode_subscription_event, upsert(raw_doc))


def test_subscription_with_huge_integers() -> None:
    huge = b'"licenses":1' + b"0" * 100
    raw = upsert(subscription_doc(licenses=7)).replace(b'"licenses":7', huge)
    invalid(decode_subscription_event, raw)
    with pytest.raises(InvalidRecord, match="licenses"):
        subscription_from_document(subscription_doc(licenses=10**100))


def test_bad_subscription_detail_names_the_problem() -> None:
    with pytest.raises(InvalidRecord, match="billing_increment"):
        subscription_from_document(subscription_doc(increment="0/60"))
    with pytest.raises(InvalidRecord, match="domestic"):
        subscription_from_document(subscription_doc(domestic_rate="0.0250001"))


@pytest.mark.parametrize("path", [("licenses",), ("plan",), ("plan", "billing_increment"),
                                  ("plan", "payg_rate_per_minute", "international"),
                                  ("plan", "included_minutes_per_license", "domestic")])
def test_subscription_missing_field(path: tuple[str, ...]) -> None:
    doc = subscription_doc()
    holder = doc
    for key in path[:-1]:
        holder = holder[key]
    del holder[path[-1]]
    with pytest.raises(InvalidRecord, match=path[-1]):
        subscription_from_document(doc)


@pytest.mark.parametrize(
    "event",
    [
        {"type": "subscription.deleted", "subscription_id": "sub-1"},
        {"type": "payg.changed", "subscription_id": "sub-1"},  # no enabled
        {"type": "payg.changed", "subscription_id": "sub-1", "enabled": "yes"},
        {"type": "payg.changed", "enabled": True},
        {"type": "subscription.upserted"},
        {"type": "subscription.upserted", "subscription": None},
        {"subscription": subscription_doc()},
        {"type": "payg.changed", "subscription_id": "sub-1", "enabled": True, "x": 1},
    ],
)
def test_bad_subscription_events(event: dict[str, Any]) -> None:
    invalid(decode_subscription_event, enc(event))


# --- fingerprints -------------------------------------------------------------------------


def test_fingerprint_identifies_content() -> None:
    base = make_cdr()
    assert cdr_fingerprint(base) == cdr_fingerprint(make_cdr())
    assert cdr_fingerprint(base) == cdr_fingerprint(make_cdr(call_id="other"))  # id is the key
    variants = [
        make_cdr(user_id="user-2"), make_cdr(started_at="2026-01-15T12:00:00.001Z"),
        make_cdr(duration_s=61), make_cdr(direction="inbound"), make_cdr(zone="international"),
        make_cdr(emergency=True), make_cdr(destination="+15551234567"),
    ]
    prints = {cdr_fingerprint(v) for v in variants}
    assert len(prints) == len(variants)
    assert cdr_fingerprint(base) not in prints


def test_fingerprint_ignores_the_timestamp_spelling() -> None:
    a = decode_cdr(enc(cdr_doc(started_at="2026-01-15T13:00:00+01:00")))
    b = decode_cdr(enc(cdr_doc(started_at="2026-01-15T12:00:00.000Z")))
    assert cdr_fingerprint(a) == cdr_fingerprint(b)


# --- fuzz: nothing but InvalidRecord ever escapes ------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


def _mutated_cdrs() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "call_id": json_values, "subscription_id": json_values, "user_id": json_values,
            "started_at": json_values | st.datetimes().map(lambda d: d.isoformat() + "Z"),
            "duration_s": json_values, "direction": json_values, "zone": json_values,
            "emergency": json_values, "destination": json_values,
        },
    ).map(lambda extra: {**cdr_doc(), **extra})


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200))
def test_random_bytes_never_crash(raw: bytes) -> None:
    for decoder in DECODERS:
        try:
            decoder(raw)
        except InvalidRecord as exc:
            assert str(exc)


@settings(max_examples=300, deadline=None)
@given(doc=json_values | _mutated_cdrs())
def test_random_documents_never_crash(doc: Any) -> None:
    try:
        raw = orjson.dumps(doc)
    except orjson.JSONEncodeError:  # integers beyond 64 bits: not producible as JSON here
        return
    for decoder in DECODERS:
        try:
            result = decoder(raw)
        except InvalidRecord as exc:
            assert str(exc)
        else:
            assert isinstance(result, (Cdr, CallAttempt, Subscription, PaygChange))
