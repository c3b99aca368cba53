"""Property test: `rater.store.rebuild` writes the very state the Lua scripts wrote.

Random CDR sequences are rated by the Lua in a real Redis; the records the rater
would have put on the topics (subscription events, rated calls, charges, alerts,
the CDRs themselves) are handed to `rebuild_state`, and every hash it computes must
equal the hash the scripts left in Redis, key for key and field for field: the
subscription plan, the period counters and alert flags, the per-user seconds, and
the call memory with its fingerprints. (The PAYG revision fields are the API's and
are not rebuilt; expiries are checked by tests/faults/test_rebuild.py in real time.)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rater.rating import outputs
from rater.rating.clock import RatingClock, format_ms
from rater.rating.results import CallRating
from rater.records import Cdr, cdr_fingerprint
from rater.store import RatingInput, RedisStore
from rater.store.rebuild import Report, apply_events, cdr_fingerprints, rebuild_state
from tests.builders import make_cdr, make_subscription, ms

NOW = ms("2026-03-30T12:00:00Z")
DAY = 86_400_000
GRACE_MS = 259_200_000
NOT_REBUILT = ("payg_rev", "payg_next")


@dataclass
class Message:
    """What rebuild reads of a Kafka record."""

    value: bytes


calls = st.tuples(
    st.integers(0, 1),  # subscription
    st.integers(0, 15),  # call id: duplicates and conflicts
    st.sampled_from([0, 1, 30, 59, 61, 120, 600, 1800]),
    st.sampled_from(["outbound", "outbound", "outbound", "inbound"]),
    st.sampled_from(["domestic", "domestic", "international"]),
    st.sampled_from([False, False, False, True]),  # emergency
    st.integers(-35 * DAY, 0),  # started before the clock
    st.integers(0, 2),  # user
)
limit_changes = st.one_of(st.none(), st.tuples(
    st.integers(0, 2),  # user
    st.sampled_from([None, 0, 1_500_000, 25_000_000]),  # the limit, micro-units
    st.sampled_from(["api", "api", "external"])))  # with a reserved revision, or without
batches = st.lists(st.tuples(st.lists(calls, min_size=1, max_size=10),
                             st.sampled_from([None, "payg_on", "payg_off"]), limit_changes),
                   min_size=1, max_size=5)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=batches, anchor=st.sampled_from([1, 15, 31]),
       increment=st.sampled_from(["60/60", "30/6", "1/1"]), licenses=st.integers(0, 2))
async def test_rebuild_writes_what_the_scripts_wrote(
    store: RedisStore, script: list[Any], anchor: int, increment: str, licenses: int
) -> None:
    tag = uuid.uuid4().hex[:8]
    subs = [make_subscription(subscription_id=f"{tag}-s{i}", anchor_day=anchor,
                              increment=increment, licenses=licenses, domestic_minutes=3,
                              international_minutes=1, payg=i == 0)
            for i in range(2)]
    events: list[Message] = []
    for sub in subs:
        await store.upsert_subscription(sub)
        events.append(Message(orjson.dumps(outputs.subscription_upserted(sub, NOW))))
    rated, charges, alerts, cdrs = [], [], [], []
    payg = {sub.subscription_id: sub.payg_enabled for sub in subs}
    clock = RatingClock(NOW, GRACE_MS)
    previous_limits: dict[tuple[str, str], int | None] = {}
    for number, (batch, change, limit_change) in enumerate(script):
        target = subs[number % 2].subscription_id
        if limit_change is not None:
            events.append(Message(orjson.dumps(await change_limit(
                store, target, f"u{limit_change[0]}", limit_change[1],
                limit_change[2] == "api", previous_limits))))
        if change is not None:
            switch = await store.set_payg(target, change == "payg_on")
            assert switch is not None
            events.append(Message(orjson.dumps(outputs.payg_changed(
                target, change == "payg_on", payg[target], switch.revision, "t", "owner",
                NOW))))
            payg[target] = change == "payg_on"
        items = []
        for sub_i, call, duration, direction, zone, emergency, offset, user in batch:
            cdr = make_cdr(call_id=f"c{call}", subscription_id=subs[sub_i].subscription_id,
                           user_id=f"u{user}", started_at=NOW + offset, duration_s=duration,
                           direction=direction, zone=zone, emergency=emergency)
            items.append(RatingInput(cdr, cdr_fingerprint(cdr)))
            cdrs.append(Message(orjson.dumps(_cdr_document(cdr))))
        for item, result in zip(items, await store.rate_batch(items, clock, NOW), strict=True):
            if not isinstance(result, CallRating):
                continue
            record, charge = outputs.call_records(item.cdr, result)
            rated.append(Message(orjson.dumps(record)))
            if charge is not None:
                charges.append(Message(orjson.dumps(charge)))
            alerts += [Message(orjson.dumps(outputs.threshold_alert(item.cdr.subscription_id, c)))
                       for c in result.alerts]

    report = Report()
    state = rebuild_state(store.keys, GRACE_MS, apply_events(events, report), rated, charges,
                          alerts, cdr_fingerprints(cdrs), report, NOW)
    assert report.rated_conflicts == 0 and report.fingerprints_guessed == 0
    scripted = {}
    async for key in store.client.scan_iter(match=f"{store.prefix}:{{{tag}-*", count=1000):
        fields = await store.client.hgetall(key)
        scripted[key] = {k: v for k, v in fields.items() if k not in NOT_REBUILT}
    rebuilt = {key: fields for key, fields in state.hashes.items() if tag in key}
    assert rebuilt.keys() == scripted.keys()
    for key, fields in scripted.items():
        assert rebuilt[key] == fields, key


async def change_limit(store: RedisStore, sub: str, user: str, limit: int | None, api: bool,
                       previous: dict[tuple[str, str], int | None]) -> dict[str, Any]:
    """A limit change as the API makes it (reserve a revision, then apply the event's), or
    as another producer's event without revision; the event the topic would carry."""
    revision = None
    if api:
        reserved = await store.reserve_spend_limit_revision(sub, user)
        assert reserved is not None
        revision = reserved[1]
    changed = await store.set_spend_limit(sub, user, limit, revision)
    assert changed is not None and changed.applied
    event = outputs.spend_limit_changed(sub, user, limit, previous.get((sub, user)),
                                        changed.revision, "t", "owner", NOW)
    previous[(sub, user)] = limit
    if not api:
        del event["revision"]
    return event


def _cdr_document(cdr: Cdr) -> dict[str, Any]:
    return {"call_id": cdr.call_id, "subscription_id": cdr.subscription_id,
            "user_id": cdr.user_id, "started_at": format_ms(cdr.started_at_ms),
            "duration_s": cdr.duration_s, "direction": cdr.direction, "zone": cdr.zone,
            "emergency": cdr.emergency, **({"destination": cdr.destination}
                                           if cdr.destination else {})}

