"""SPEC §4, §5.7: deterministic UUIDv5 ids, so replays yield the same ids."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from rater.rating.ids import alert_id, charge_id, uuid5_url


def test_charge_id_is_uuid5_of_sub_slash_call() -> None:
    expected = str(uuid.uuid5(uuid.NAMESPACE_URL, "sub-1/call-1"))
    assert charge_id("sub-1", "call-1") == expected
    # a fixed value guards against a change of namespace or separator
    assert expected == "5b7f32a3-2129-5210-8f62-dc1ef4cac176"
    assert uuid.UUID(charge_id("sub-1", "call-1")).version == 5


def test_charge_id_separates_subscription_and_call() -> None:
    assert charge_id("sub-1", "call-1") != charge_id("sub-2", "call-1")
    assert charge_id("sub-1", "call-1") != charge_id("sub-1", "call-2")
    assert charge_id("sub-1", "call-1") != charge_id("call-1", "sub-1")


def test_alert_id_is_uuid5_of_sub_zone_period_threshold() -> None:
    expected = str(uuid.uuid5(uuid.NAMESPACE_URL, "sub-1/domestic/2026-01-01/80"))
    assert alert_id("sub-1", "domestic", "2026-01-01", 80) == expected
    assert uuid.UUID(expected).version == 5


def test_alert_ids_differ_per_component() -> None:
    base = alert_id("sub-1", "domestic", "2026-01-01", 80)
    assert base != alert_id("sub-1", "domestic", "2026-01-01", 100)
    assert base != alert_id("sub-1", "international", "2026-01-01", 80)
    assert base != alert_id("sub-1", "domestic", "2026-02-01", 80)
    assert base != alert_id("sub-2", "domestic", "2026-01-01", 80)


@settings(max_examples=200, deadline=None)
@given(sub=st.text(min_size=1, max_size=40), call=st.text(min_size=1, max_size=40))
def test_charge_id_is_deterministic(sub: str, call: str) -> None:
    first = charge_id(sub, call)
    assert first == charge_id(sub, call)
    assert first == str(uuid.uuid5(uuid.NAMESPACE_URL, f"{sub}/{call}"))


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=300))
def test_uuid5_url_is_the_standard_uuid5(name: str) -> None:
    assert uuid5_url(name) == str(uuid.uuid5(uuid.NAMESPACE_URL, name))
