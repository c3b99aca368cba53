"""The pure re-rating of SPEC §13 (rater.corrections.rerate) against the reference model."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rater.corrections.rerate import PaygChangeAt, rerate, rerate_id_for
from rater.rating.clock import RatingClock
from rater.rating.ids import uuid5_url
from rater.rating.model import ReferenceRater
from rater.rating.outputs import call_records
from rater.rating.results import CallRating
from rater.records import Cdr, Subscription, cdr_fingerprint
from tests.builders import make_cdr, make_subscription, ms

NOW = ms("2026-11-20T12:00:00Z")
RERATE = "00000000-0000-5000-8000-000000000001"


def live_records(plan: Subscription, cdrs: list[Cdr]) -> list[dict[str, Any]]:
    """The rated-call records the live path would have emitted, in the order given."""
    model = ReferenceRater()
    model.upsert(plan)
    records = []
    for cdr in cdrs:
        rating = model.rate(cdr, cdr_fingerprint(cdr), RatingClock(NOW), NOW)
        assert isinstance(rating, CallRating)
        records.append(call_records(cdr, rating)[0])
    return records


def calls_for(seed: int, n: int = 40) -> list[Cdr]:
    rnd = random.Random(seed)
    cdrs = [make_cdr(call_id=f"c{i:03d}", user_id=f"u{rnd.randrange(3)}",
                     started_at=ms("2026-11-02T00:00:00Z") + rnd.randrange(0, 15 * 86_400_000),
                     duration_s=rnd.choice([0, 20, 61, 119, 300, 901]),
                     direction="outbound" if rnd.random() < 0.9 else "inbound",
                     zone="domestic" if rnd.random() < 0.8 else "international")
            for i in range(n)]
    return sorted(cdrs, key=lambda c: (c.started_at_ms, c.call_id))


def fresh_charges(plan: Subscription, cdrs: list[Cdr]) -> Decimal:
    return sum((Decimal(r["amount"]) for r in live_records(plan, cdrs)), Decimal(0))


def test_the_same_plan_changes_nothing() -> None:
    plan = make_subscription(payg=True, licenses=1, domestic_minutes=20)
    result = rerate(live_records(plan, calls_for(1)), {"sub-1": plan}, {}, RERATE, "r", NOW)
    assert result.calls == 40 and result.adjustments == [] and result.diffs == []
    for counters in result.deltas["sub-1"].zones.values():
        assert (counters.used_included_s, counters.overage_s, counters.unbilled_s,
                counters.overage_micro) == (0, 0, 0, 0)
    assert set(result.deltas["sub-1"].user_seconds.values()) == {0}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000),
       rate=st.sampled_from(["0.025", "0.01", "0.333333", "1.5"]),
       increment=st.sampled_from(["60/60", "30/6", "1/1"]),
       licenses=st.integers(0, 3))
def test_original_charges_plus_adjustments_equal_a_fresh_rating(
    seed: int, rate: str, increment: str, licenses: int
) -> None:
    before = make_subscription(payg=True, licenses=2, domestic_minutes=10)
    after = make_subscription(payg=True, licenses=licenses, domestic_minutes=10,
                              domestic_rate=rate, increment=increment)
    cdrs = calls_for(seed)
    records = live_records(before, cdrs)
    result = rerate(records, {"sub-1": after}, {}, RERATE, "tariff", NOW)
    original = sum((Decimal(r["amount"]) for r in records), Decimal(0))
    adjusted = sum((Decimal(a["delta"]) for a in result.adjustments), Decimal(0))
    assert original + adjusted == fresh_charges(after, cdrs)
    fresh = {r["call_id"]: r["amount"] for r in live_records(after, cdrs)}
    for adjustment in result.adjustments:  # each to the micro-unit
        assert adjustment["new_amount"] == f"{Decimal(fresh[adjustment['call_id']]):.6f}"
        assert adjustment["adjustment_id"] == uuid5_url(f"{RERATE}/{adjustment['call_id']}")
        assert Decimal(adjustment["new_amount"]) - Decimal(adjustment["original_amount"]) == (
            Decimal(adjustment["delta"]))
    deltas = result.deltas["sub-1"]
    # the users' overage amounts (what a spend limit weighs) move by their calls' deltas
    by_user: dict[str, Decimal] = {}
    for adjustment in result.adjustments:
        user = next(r["user_id"] for r in records if r["call_id"] == adjustment["call_id"])
        by_user[user] = by_user.get(user, Decimal(0)) + Decimal(adjustment["delta"])
    assert {u: Decimal(n) / 1_000_000 for u, n in deltas.user_amounts.items() if n} == {
        u: d for u, d in by_user.items() if d}
    for zone, change in deltas.zones.items():
        fresh_total = deltas.totals[zone]
        original_used = sum(r["included_s"] for r in records
                            if r["zone"] == zone and r["outcome"] != "free")
        assert original_used + change.used_included_s == fresh_total.used_included_s


def test_payg_is_what_it_was_when_the_call_was_rated() -> None:
    plan = make_subscription(payg=False, licenses=1, domestic_minutes=1)
    cdrs = [make_cdr(call_id=f"c{i}", started_at=ms("2026-11-03T10:00:00Z") + i * 1000,
                     duration_s=60) for i in range(3)]
    records = live_records(make_subscription(payg=False, licenses=5), cdrs)  # all included
    for i, record in enumerate(records):
        record["rated_at"] = f"2026-11-0{3 + i}T11:00:00Z"
    # switched on between the second and the third call's rating
    trail = {"sub-1": [PaygChangeAt(ms("2026-11-04T12:00:00Z"), True)]}
    result = rerate(records, {"sub-1": plan}, trail, RERATE, "licences", NOW)
    outcomes = {d.call_id: d.after[3] for d in result.diffs}
    assert outcomes == {"c1": "blocked", "c2": "overage"}  # c0 still fits the one minute
    assert [a["call_id"] for a in result.adjustments] == ["c2"]


def test_the_rerate_id_is_the_correction_itself() -> None:
    one = rerate_id_for("2026-11-01", ["b", "a"], "digest", "tariff")
    assert one == rerate_id_for("2026-11-01", ["a", "b"], "digest", "tariff")
    assert one != rerate_id_for("2026-11-01", ["a", "b"], "other-digest", "tariff")
    assert one != rerate_id_for("2026-11-01", ["a", "b"], "digest", "another reason")
