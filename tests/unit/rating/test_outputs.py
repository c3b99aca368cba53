"""SPEC §4 / §5.7 output records: exact field lists, schema-valid, consistent with the rating."""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest

from rater.rating.clock import RatingClock
from rater.rating.model import ReferenceRater
from rater.rating.outputs import call_records, session_answer, threshold_alert
from rater.rating.results import AlertCrossing, CallRating
from rater.rating.sessions import SessionAnswer
from rater.records import Cdr, cdr_fingerprint
from rater.records.schemas import SCHEMA_DIR
from tests.builders import make_cdr, make_subscription, ms

# Field lists copied from SPEC §4 and §5.7, in the SPEC's order (`destination`: §12).
RATED_CALL_FIELDS = [
    "call_id", "subscription_id", "billing_account_id", "user_id", "started_at", "period",
    "zone", "direction", "emergency", "duration_s", "billable_s", "included_s", "overage_s",
    "unbilled_s", "outcome", "amount", "currency", "charge_id", "rated_at", "destination",
]
CHARGE_FIELDS = [
    "charge_id", "subscription_id", "billing_account_id", "user_id", "call_id", "period",
    "zone", "overage_s", "rate_per_minute", "amount", "currency", "started_at", "rated_at",
]
ALERT_FIELDS = [
    "alert_id", "subscription_id", "zone", "period", "threshold", "used_included_s",
    "included_s", "at",
]

NOW = ms("2026-01-20T12:00:00Z")
RATED_AT = ms("2026-01-20T12:00:01.250Z")


@cache
def schema_validator(name: str) -> jsonschema.protocols.Validator:
    schema = orjson.loads((SCHEMA_DIR / f"{name}.schema.json").read_bytes())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(
        schema, format_checker=cls.FORMAT_CHECKER
    )
    return validator


def rated_call(cdr: Cdr, rating: CallRating) -> dict[str, Any]:
    return call_records(cdr, rating)[0]


def overage_charge(cdr: Cdr, rating: CallRating) -> dict[str, Any] | None:
    return call_records(cdr, rating)[1]


def assert_valid(name: str, record: dict[str, Any]) -> None:
    # through JSON and back, as it leaves the process
    wire = orjson.loads(orjson.dumps(record))
    assert wire == record
    schema_validator(name).validate(wire)


def rate_all(*cdrs: Cdr, **sub: Any) -> list[CallRating]:
    rater = ReferenceRater()
    rater.upsert(make_subscription(**sub))
    out = []
    for cdr in cdrs:
        result = rater.rate(cdr, cdr_fingerprint(cdr), RatingClock(NOW), RATED_AT)
        assert isinstance(result, CallRating), result
        out.append(result)
    return out


@pytest.mark.parametrize(
    ("payg", "cdr_kwargs", "outcome"),
    [
        (False, {"duration_s": 60}, "included"),
        (False, {"duration_s": 0}, "included"),
        (False, {"duration_s": 61, "direction": "inbound"}, "free"),
        (False, {"duration_s": 61, "emergency": True, "destination": "+4930112"}, "free"),
    ],
)
def test_rated_call_without_charge(payg: bool, cdr_kwargs: dict[str, Any], outcome: str) -> None:
    cdr = make_cdr(**cdr_kwargs)
    (rating,) = rate_all(cdr, payg=payg)
    record = rated_call(cdr, rating)
    assert list(record) == RATED_CALL_FIELDS
    assert record["outcome"] == outcome
    assert record["amount"] == "0"
    assert record["charge_id"] is None
    assert overage_charge(cdr, rating) is None
    assert_valid("rated_call", record)


def test_rated_call_exhausted_and_blocked_have_no_charge() -> None:
    cdrs = (make_cdr(call_id="a", duration_s=540), make_cdr(call_id="b", duration_s=120),
            make_cdr(call_id="c", duration_s=60))
    ratings = rate_all(*cdrs)
    assert [r.outcome for r in ratings] == ["included", "exhausted", "blocked"]
    for cdr, rating in zip(cdrs, ratings, strict=True):
        record = rated_call(cdr, rating)
        assert_valid("rated_call", record)
        assert (record["amount"], record["charge_id"]) == ("0", None)
        assert overage_charge(cdr, rating) is None
    exhausted = rated_call(cdrs[1], ratings[1])
    assert (exhausted["included_s"], exhausted["unbilled_s"], exhausted["overage_s"]) == (60, 60, 0)


def test_overage_rated_call_and_charge() -> None:
    cdr = make_cdr(call_id="call-9", user_id="alice", duration_s=61,
                   started_at="2026-01-15T12:00:00.123+01:00")
    (rating,) = rate_all(cdr, payg=True, licenses=0, increment="1/1")
    record = rated_call(cdr, rating)
    charge = overage_charge(cdr, rating)
    assert charge is not None
    assert list(record) == RATED_CALL_FIELDS
    assert list(charge) == CHARGE_FIELDS
    assert_valid("rated_call", record)
    assert_valid("overage_charge", charge)
    expected_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "sub-1/call-9"))
    assert charge == {
        "charge_id": expected_id,
        "subscription_id": "sub-1",
        "billing_account_id": "ba-1",
        "user_id": "alice",
        "call_id": "call-9",
        "period": "2026-01-01",
        "zone": "domestic",
        "overage_s": 61,
        "rate_per_minute": "0.025",
        "amount": "0.025417",
        "currency": "EUR",
        "started_at": "2026-01-15T11:00:00.123Z",
        "rated_at": "2026-01-20T12:00:01.250Z",
    }
    assert record == {
        "call_id": "call-9",
        "subscription_id": "sub-1",
        "billing_account_id": "ba-1",
        "user_id": "alice",
        "started_at": "2026-01-15T11:00:00.123Z",
        "period": "2026-01-01",
        "zone": "domestic",
        "direction": "outbound",
        "emergency": False,
        "duration_s": 61,
        "billable_s": 61,
        "included_s": 0,
        "overage_s": 61,
        "unbilled_s": 0,
        "outcome": "overage",
        "amount": "0.025417",
        "currency": "EUR",
        "charge_id": expected_id,
        "rated_at": "2026-01-20T12:00:01.250Z",
        "destination": cdr.destination,
    }


def test_replayed_rating_yields_identical_records() -> None:
    cdr = make_cdr(duration_s=700)
    rater = ReferenceRater()
    rater.upsert(make_subscription(payg=True))
    first = rater.rate(cdr, cdr_fingerprint(cdr), RatingClock(NOW), RATED_AT)
    again = rater.rate(cdr, cdr_fingerprint(cdr), RatingClock(NOW + 10), RATED_AT + 9_000)
    assert isinstance(first, CallRating) and isinstance(again, CallRating)
    assert rated_call(cdr, again) == rated_call(cdr, first)
    assert overage_charge(cdr, again) == overage_charge(cdr, first) is not None
    assert [threshold_alert("sub-1", a) for a in again.alerts] == [
        threshold_alert("sub-1", a) for a in first.alerts]
    assert len(first.alerts) == 2


@pytest.mark.parametrize("threshold", [80, 100])
def test_threshold_alert_record(threshold: int) -> None:
    crossing = AlertCrossing("international", "2026-01-01", threshold, 480, 600, RATED_AT)
    record = threshold_alert("sub-1", crossing)
    assert list(record) == ALERT_FIELDS
    assert_valid("alert", record)
    assert record == {
        "alert_id": str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"sub-1/international/2026-01-01/{threshold}")
        ),
        "subscription_id": "sub-1",
        "zone": "international",
        "period": "2026-01-01",
        "threshold": threshold,
        "used_included_s": 480,
        "included_s": 600,
        "at": "2026-01-20T12:00:01.250Z",
    }


def test_alerts_from_rating_validate() -> None:
    (rating,) = rate_all(make_cdr(duration_s=600))
    records = [threshold_alert("sub-1", a) for a in rating.alerts]
    assert [r["threshold"] for r in records] == [80, 100]
    for record in records:
        assert_valid("alert", record)


@pytest.mark.parametrize("rate", ["1", "0.000001", "999999.999999", "12.5"])
def test_charge_rate_and_amount_formats_validate(rate: str) -> None:
    cdr = make_cdr(duration_s=3600)
    (rating,) = rate_all(cdr, payg=True, licenses=0, domestic_rate=rate)
    charge = overage_charge(cdr, rating)
    assert charge is not None
    assert charge["rate_per_minute"] == rate
    assert_valid("overage_charge", charge)
    assert_valid("rated_call", rated_call(cdr, rating))


def test_schemas_reject_a_record_with_a_missing_or_extra_field() -> None:
    """The schema check above could fail: it is strict about the field list."""
    cdr = make_cdr()
    (rating,) = rate_all(cdr)
    record = rated_call(cdr, rating)
    with pytest.raises(jsonschema.ValidationError):
        schema_validator("rated_call").validate({**record, "extra": 1})
    with pytest.raises(jsonschema.ValidationError):  # formats are checked too
        schema_validator("rated_call").validate({**record, "charge_id": "not-a-uuid"})
    del record["rated_at"]
    with pytest.raises(jsonschema.ValidationError):
        schema_validator("rated_call").validate(record)


SESSION_ANSWER_FIELDS = ["session_id", "subscription_id", "decision", "granted_s", "final",
                         "validity_s", "reason", "expires_at"]  # SPEC §11


@pytest.mark.parametrize("answer", [
    SessionAnswer("permit", 300, False, 600, "included", NOW + 600_000),
    SessionAnswer("permit", None, False, 600, "free", NOW + 600_000),
    SessionAnswer("block", 0, True, 0, "exhausted", NOW),
    SessionAnswer("permit", 301, True, 0, "terminated", NOW),
])
def test_session_answers(answer: SessionAnswer) -> None:
    record = session_answer("call-1", "sub-1", answer)
    assert list(record) == SESSION_ANSWER_FIELDS
    assert record["expires_at"].endswith("Z")
    assert_valid("session_answer", record)
    with pytest.raises(jsonschema.ValidationError):
        schema_validator("session_answer").validate({**record, "reason": "maybe"})
