"""Session request bodies (schemas/session_*.schema.json): defaults, limits, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from rater.records import (
    InvalidRecord,
    SessionInitial,
    SessionTerminate,
    SessionUpdate,
    session_initial_from_document,
    session_terminate_from_document,
    session_update_from_document,
)

INITIAL = {"session_id": "call-1", "subscription_id": "sub-1", "user_id": "u1",
           "direction": "outbound", "zone": "domestic"}


def test_initial_defaults() -> None:
    assert session_initial_from_document(INITIAL, 300) == SessionInitial(
        "call-1", "sub-1", "u1", "outbound", "domestic", False, 300, None)
    full = {**INITIAL, "emergency": True, "requested_s": 60.0, "request_number": 0}
    decoded = session_initial_from_document(full, 300)
    assert (decoded.emergency, decoded.requested_s, decoded.request_number) == (True, 60, 0)
    assert decoded.is_free and type(decoded.requested_s) is int


def test_update_and_terminate() -> None:
    assert session_update_from_document({"used_s": 0}, 120) == SessionUpdate(0, 120, None, None)
    assert session_update_from_document(
        {"used_s": 5, "requested_s": 7, "request_number": 2, "subscription_id": "s"}, 120
    ) == SessionUpdate(5, 7, 2, "s")
    assert session_terminate_from_document({"used_s": 86400, "request_number": 9}) == (
        SessionTerminate(86400, 9, None))


@pytest.mark.parametrize("change", [
    {"session_id": ""}, {"session_id": "x" * 129}, {"subscription_id": "a{b}"},
    {"direction": "sideways"}, {"zone": "mars"}, {"emergency": "yes"},
    {"requested_s": 0}, {"requested_s": 86401}, {"requested_s": "60"}, {"requested_s": True},
    {"request_number": -1}, {"request_number": 1.5}, {"colour": "red"},
])
def test_initial_refusals(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidRecord):
        session_initial_from_document({**INITIAL, **change}, 300)


@pytest.mark.parametrize("body", [
    {}, {"used_s": -1}, {"used_s": 86401}, {"used_s": "5"}, {"used_s": None},
    {"used_s": False}, {"used_s": 1, "requested_s": 0}, {"used_s": 1, "extra": 1}, [1], "x",
])
def test_update_and_terminate_refusals(body: Any) -> None:
    with pytest.raises(InvalidRecord):
        session_update_from_document(body, 300)
    if "requested_s" not in (body if isinstance(body, dict) else {}):
        with pytest.raises(InvalidRecord):
            session_terminate_from_document(body)
