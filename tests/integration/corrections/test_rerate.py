"""`rater rerate` (SPEC §13) against a real worker, broker, Redis and PostgreSQL.

A worker rates a period's CDRs (history sink on); the period is then re-rated with a
changed rate, a changed increment and a changed licence count. Every adjustment must
equal the reference model's re-rating to the micro-unit; original charges plus
adjustments must equal what the live Lua path charges for the same CDRs under the
corrected plan; the counters become the rerated ones; a second run emits identical
adjustments and changes nothing; a run killed mid-way and run again completes with
nothing doubled; live rating beside a rerate counts nothing twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from rater.cli.inputs import upsert_events
from rater.config import Settings
from rater.kafka import read_to_end
from rater.rating.clock import RatingClock, format_ms, now_ms
from rater.rating.model import ReferenceRater
from rater.rating.money import format_micro
from rater.rating.outputs import subscription_document
from rater.rating.periods import period_of
from rater.rating.results import CallRating, ZoneCounters
from rater.records import Cdr, Subscription, cdr_fingerprint, decode_cdr
from rater.store import RatingInput, RedisStore
from rater.web.tokens import issue_token
from tests.builders import cdr_doc, make_subscription
from tests.integration.harness import REPO, Deployment, Worker, produce
from tests.integration.history.support import admin_connection, drop_schema, new_schema, sink_env

pytestmark = pytest.mark.integration

ACCOUNT = "ba-rerate"
JWT_SECRET = "rerate-test-hs256-secret-0123456789abcdef"
JWT_ENV = {"RATER_JWT_ALGORITHM": "HS256", "RATER_JWT_KEY": JWT_SECRET,
           "RATER_JWT_ISSUER": "rerate-test", "RATER_JWT_AUDIENCE": "rater"}
GRACE_S = 45 * 86_400  # the previous calendar month's calls are still accepted
BEFORE = {"licenses": 2, "domestic_minutes": 10, "international_minutes": 2,
          "domestic_rate": "0.025", "international_rate": "0.10", "increment": "60/60"}
AFTER = {"licenses": 1, "domestic_minutes": 10, "international_minutes": 2,
         "domestic_rate": "0.04", "international_rate": "0.10", "increment": "30/6"}


def plan(sub: str, **values: Any) -> Subscription:
    return make_subscription(subscription_id=sub, billing_account_id=ACCOUNT, payg=True,
                             currency="EUR" if sub.endswith("a") else "USD", **values)


@dataclass
class Rerated:
    deployment: Deployment
    settings: Settings
    period: str
    cdrs: list[Cdr]
    worker: Worker


def previous_period_start() -> int:
    now = now_ms()
    this = period_of(now, 1)
    return period_of(this.start_ms - 1, 1).start_ms


def period_cdrs(period_start: int, subs: list[str], count: int, tag: str,
                seed: int) -> list[Cdr]:
    rnd = random.Random(seed)
    cdrs = []
    for i in range(count):
        doc = cdr_doc(call_id=f"{tag}-{i:05d}", subscription_id=subs[i % len(subs)],
                      user_id=f"user-{rnd.randrange(3)}",
                      started_at=format_ms(period_start + rnd.randrange(60_000, 27 * 86_400_000)),
                      duration_s=rnd.choice([0, 20, 45, 61, 119, 300, 901]),
                      direction="outbound" if rnd.random() < 0.9 else "inbound",
                      zone="domestic" if rnd.random() < 0.8 else "international")
        cdrs.append(decode_cdr(orjson.dumps(doc)))
    return cdrs


async def history_count(settings: Settings, table: str) -> int:
    conn = await admin_connection()
    try:
        return int(await conn.fetchval(
            f"SELECT count(*) FROM {settings.history_schema}.{table}"))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def wait_history(settings: Settings, table: str, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while (have := await history_count(settings, table)) < count:
        assert time.monotonic() < deadline, f"{table}: {have} of {count} rows"
        await asyncio.sleep(0.5)


async def rate_cdrs(settings: Settings, cdrs: list[Cdr]) -> None:
    records = [(c.subscription_id.encode(), orjson.dumps(_document(c))) for c in cdrs]
    await produce(settings, settings.topics.cdr, records)


def _document(cdr: Cdr) -> dict[str, Any]:
    return {"call_id": cdr.call_id, "subscription_id": cdr.subscription_id,
            "user_id": cdr.user_id, "started_at": format_ms(cdr.started_at_ms),
            "duration_s": cdr.duration_s, "direction": cdr.direction, "zone": cdr.zone,
            "emergency": cdr.emergency}


def rerate_command(rated: Rerated, plan_file: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rater.cli", "rerate", "--period", rated.period,
            "--billing-account", ACCOUNT, "--plan", str(plan_file), "--reason", "tariff fix",
            "--json", "--quiet", *extra]


def run_rerate(rated: Rerated, plan_file: Path, *extra: str) -> dict[str, Any]:
    result = subprocess.run(rerate_command(rated, plan_file, *extra),
                            env=rated.deployment.env(), cwd=REPO, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = orjson.loads(result.stdout)
    return summary


@pytest.fixture
async def rated(tmp_path: Path) -> AsyncIterator[Rerated]:
    schema = new_schema()
    deployment = Deployment(extra_env={**sink_env(schema),
                                       "RATER_LATE_GRACE_S": str(GRACE_S), **JWT_ENV})
    settings = deployment.settings
    await deployment.create_topics()
    worker = Worker(deployment).start()
    try:
        subs = [plan("sub-a", **BEFORE), plan("sub-b", **BEFORE)]
        await produce(settings, settings.topics.subscription_events,
                      upsert_events([subscription_document(s) for s in subs]))
        store = RedisStore.from_settings(settings)
        try:
            for _ in range(100):
                if all([await store.snapshot(s.subscription_id, now_ms()) for s in subs]):
                    break
                await asyncio.sleep(0.1)
        finally:
            await store.close()
        start = previous_period_start()
        cdrs = period_cdrs(start, ["sub-a", "sub-b"], 400, "c", seed=5)
        await rate_cdrs(settings, cdrs)
        await wait_history(settings, "rated_calls", len(cdrs))
        yield Rerated(deployment, settings, datetime.fromtimestamp(start / 1000, UTC)
                      .date().isoformat(), cdrs, worker)
    finally:
        worker.stop()
        await drop_schema(schema)


def corrected_plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "plans.json"
    path.write_bytes(orjson.dumps([subscription_document(plan(s, **AFTER))
                                   for s in ("sub-a", "sub-b")]))
    return path


def model_amounts(cdrs: list[Cdr], values: dict[str, Any],
                  by_start: bool = True) -> dict[str, int]:
    """The reference model's rating of the CDRs (in started_at order, as a rerate rates
    them, or in the order given, as the worker met them): call -> amount."""
    model = ReferenceRater()
    for sub in ("sub-a", "sub-b"):
        model.upsert(plan(sub, **values))
    amounts = {}
    ordered = sorted(cdrs, key=lambda c: (c.started_at_ms, c.call_id)) if by_start else cdrs
    for cdr in ordered:
        rating = model.rate(cdr, cdr_fingerprint(cdr), RatingClock(cdr.started_at_ms, 10**12),
                            now_ms())
        assert isinstance(rating, CallRating)
        amounts[cdr.call_id] = rating.amount_micro
    return amounts


async def lua_fresh(settings: Settings, cdrs: list[Cdr]) -> tuple[
        dict[str, Decimal], dict[str, ZoneCounters], dict[tuple[str, str], int]]:
    """The live Lua path rating the same CDRs afresh under the corrected plan, in
    started_at order: charges by currency, the domestic counters and the users' overage
    amounts."""
    store = RedisStore.from_settings(settings.with_overrides(app_id=f"f{uuid.uuid4().hex[:8]}"))
    try:
        await store.upsert_subscriptions([plan(s, **AFTER) for s in ("sub-a", "sub-b")])
        ordered = sorted(cdrs, key=lambda c: (c.started_at_ms, c.call_id))
        clock = RatingClock(now_ms(), GRACE_S * 1000)
        results = await store.rate_batch([RatingInput(c, cdr_fingerprint(c)) for c in ordered],
                                         clock, clock.now_ms)
        charges: dict[str, Decimal] = {}
        for result in results:
            assert isinstance(result, CallRating)
            charges[result.currency] = charges.get(result.currency, Decimal(0)) + (
                Decimal(result.amount_micro) / 1_000_000)
        counters = {}
        for sub in ("sub-a", "sub-b"):
            snapshot = await store.snapshot(sub, ordered[0].started_at_ms)
            assert snapshot is not None
            counters[sub] = snapshot.zones["domestic"]
        return charges, counters, await user_amounts(store, snapshot.period)
    finally:
        await store.close()


async def user_amounts(store: RedisStore, period: str) -> dict[tuple[str, str], int]:
    """Each user's overage amount in the period, as a spend limit weighs it (SPEC §14)."""
    found = {}
    for sub in ("sub-a", "sub-b"):
        for user, usage in (await store.user_report(sub, period)).items():
            found[(sub, user)] = usage.spent_micro
    return found


async def counters(settings: Settings, rated: Rerated) -> dict[str, ZoneCounters]:
    store = RedisStore.from_settings(settings)
    try:
        found = {}
        for sub in ("sub-a", "sub-b"):
            snapshot = await store.snapshot(sub, min(c.started_at_ms for c in rated.cdrs))
            assert snapshot is not None and snapshot.period == rated.period
            found[sub] = snapshot.zones["domestic"]
        return found
    finally:
        await store.close()


def without_at(adjustments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A dry run is not a run: it shares everything with the run but the run's instant."""
    return [{k: v for k, v in a.items() if k != "at"} for a in adjustments]


async def adjustments_on_topic(settings: Settings) -> list[dict[str, Any]]:
    return [orjson.loads(m.value)
            for m in await read_to_end(settings.kafka_bootstrap, [settings.topics.adjustments])]


async def test_rerate_with_a_changed_rate_increment_and_licence_count(
    rated: Rerated, tmp_path: Path
) -> None:
    settings = rated.settings
    plan_file = corrected_plan_file(tmp_path)
    dry = run_rerate(rated, plan_file, "--dry-run")
    assert dry["calls"] == len(rated.cdrs) and dry["adjustments"]
    assert await adjustments_on_topic(settings) == []  # the dry run touched nothing
    before_counters = await counters(settings, rated)

    first = run_rerate(rated, plan_file)
    assert without_at(first["adjustments"]) == without_at(dry["adjustments"])
    assert set(first["counters_applied"].values()) == {True}

    original = {c.call_id: c for c in rated.cdrs}
    new_amounts = model_amounts(rated.cdrs, AFTER)
    old_amounts = model_amounts(rated.cdrs, BEFORE, by_start=False)  # as rated live
    adjusted = {a["call_id"]: a for a in first["adjustments"]}
    assert set(adjusted) == {call for call in original
                             if new_amounts[call] != old_amounts[call]}
    for call, adjustment in adjusted.items():  # to the micro-unit
        assert adjustment["new_amount"] == format_micro(new_amounts[call])
        assert adjustment["original_amount"] == format_micro(old_amounts[call])

    # original charges + adjustments == what the live path charges under the new plan
    fresh_charges, fresh_counters, fresh_users = await lua_fresh(settings, rated.cdrs)
    charged = await read_to_end(settings.kafka_bootstrap, [settings.topics.charges])
    totals: dict[str, Decimal] = {}
    for charge in {orjson.loads(m.value)["charge_id"]: orjson.loads(m.value)
                   for m in charged}.values():
        totals[charge["currency"]] = totals.get(charge["currency"], Decimal(0)) + Decimal(
            charge["amount"])
    for adjustment in first["adjustments"]:
        totals[adjustment["currency"]] = totals.get(adjustment["currency"], Decimal(0)) + (
            Decimal(adjustment["delta"]))
    assert {c: t for c, t in totals.items() if t} == {c: t for c, t in fresh_charges.items()
                                                      if t}
    # the period's counters are the rerated ones, the users' overage amounts too
    after_counters = await counters(settings, rated)
    assert after_counters == fresh_counters and after_counters != before_counters
    store = RedisStore.from_settings(settings)
    try:
        assert await user_amounts(store, rated.period) == fresh_users
        assert any(fresh_users.values())
    finally:
        await store.close()

    # the same correction again: identical adjustments, nothing more changes
    second = run_rerate(rated, plan_file)
    assert second["rerate_id"] == first["rerate_id"] and second["resumed"] is True
    assert second["adjustments"] == first["adjustments"]
    assert set(second["counters_applied"].values()) == {False}
    assert await counters(settings, rated) == after_counters
    emitted = await adjustments_on_topic(settings)
    copies = Counter(a["adjustment_id"] for a in emitted)
    assert set(copies.values()) == {2} and len(copies) == len(first["adjustments"])
    await wait_history(settings, "adjustments", len(first["adjustments"]))

    # beside the charges they correct, in the charges endpoint (and the console's cost
    # management, which reads the same view)
    owner = issue_token(JWT_SECRET, subject="owner", roles={ACCOUNT: "owner"},
                        issuer="rerate-test", audience="rater", algorithm="HS256")
    request = urllib.request.Request(
        f"{rated.worker.url}/v1/billing-accounts/{ACCOUNT}/charges?period={rated.period}",
        headers={"Authorization": f"Bearer {owner}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        document = orjson.loads(answer.read())
    by_currency = {c["currency"]: c for c in document["currencies"]}
    for currency, fresh in fresh_charges.items():
        if not fresh:
            continue
        deltas = [Decimal(a["delta"]) for a in first["adjustments"] if a["currency"] == currency]
        entry = by_currency[currency]
        assert Decimal(entry["adjustments"]["delta"]) == sum(deltas, Decimal(0))
        assert entry["adjustments"]["adjustments"] == len(deltas)
        assert Decimal(entry["amount_after_adjustments"]) == fresh


async def test_a_killed_rerate_run_again_completes_with_nothing_doubled(
    rated: Rerated, tmp_path: Path
) -> None:
    settings = rated.settings
    plan_file = corrected_plan_file(tmp_path)
    _, fresh_counters, _ = await lua_fresh(settings, rated.cdrs)
    kills = 0
    for delay in (0.4, 0.9, 1.6):  # wherever each kill lands, the next run resumes
        process = subprocess.Popen(rerate_command(rated, plan_file), env=rated.deployment.env(),
                                   cwd=REPO, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(timeout=30)
    final = run_rerate(rated, plan_file)
    assert kills >= 1
    assert await counters(settings, rated) == fresh_counters
    emitted = await adjustments_on_topic(settings)
    by_id: dict[str, set[bytes]] = {}
    for adjustment in emitted:
        by_id.setdefault(adjustment["adjustment_id"], set()).add(orjson.dumps(adjustment))
    assert all(len(versions) == 1 for versions in by_id.values())  # copies are identical
    assert set(by_id) == {a["adjustment_id"] for a in final["adjustments"]}


async def test_live_rating_beside_a_rerate_counts_nothing_twice(
    rated: Rerated, tmp_path: Path
) -> None:
    settings = rated.settings
    plan_file = corrected_plan_file(tmp_path)
    later = period_cdrs(previous_period_start(), ["sub-a", "sub-b"], 300, "live", seed=9)
    live = asyncio.create_task(rate_cdrs(settings, later))
    summary = await asyncio.to_thread(run_rerate, rated, plan_file)
    await live
    await wait_history(settings, "rated_calls", len(rated.cdrs) + len(later))
    cutoff = datetime.fromisoformat(summary["cutoff"])
    conn = await admin_connection()
    try:
        rows = await conn.fetch(
            f"SELECT record::text AS record, rated_at FROM {settings.history_schema}.rated_calls")
    finally:
        await conn.close()
    records = [(orjson.loads(r["record"]), r["rated_at"]) for r in rows]
    rerated = {r["call_id"] for r, at in records if at <= cutoff}
    assert len(rerated) == summary["calls"]
    # the counters hold the live contributions of the calls rated after the cutoff, and
    # the rerated contributions of those before it, each exactly once
    new_amount = {a["call_id"]: Decimal(a["new_amount"]) for a in summary["adjustments"]}
    expected = {sub: Decimal(0) for sub in ("sub-a", "sub-b")}
    for record, _ in records:
        if record["zone"] != "domestic":
            continue
        amount = new_amount.get(record["call_id"], Decimal(record["amount"]))
        expected[record["subscription_id"]] += amount
    found = await counters(settings, rated)
    assert {sub: Decimal(c.overage_micro) / 1_000_000 for sub, c in found.items()} == expected
