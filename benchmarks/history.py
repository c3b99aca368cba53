"""Phase i: the call history (SPEC §12, issue 13).

1. The sink keeps up with rating at full speed: a worker with `RATER_HISTORY_SINK=on`
   rates a backlog flat out while the lag of its `<app_id>-history` group (end offsets
   of calls.rated, billing.overage-charges and subscriptions.events minus the group's
   committed offsets) is sampled; max lag, rows/s and the catch-up time are reported.
2. The calls query of one subscription with `--history-calls` (1,000,000) calls in the
   period, the rows COPYed in directly: first page and deep pages (through a cursor),
   with and without a user filter, p50/p99 over repeated runs.
3. A CSV export of 100,000 of those rows through `iter_calls_csv`, with tracemalloc's
   peak beside the peak of a 10,000-row export (flat memory: the peaks match).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import tracemalloc
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks import kafka_io, pipeline, procs
from benchmarks.data import DataSet, fresh_cdrs
from rater.config import Settings
from rater.history import db
from rater.history.calls import call_filter, iter_calls_csv, list_calls
from rater.history.cursor import Position, encode_cursor
from rater.history.migrations import migrate
from rater.history.rows import COLUMNS, rated_call_row
from rater.history.writer import RowWriter
from tests.integration.harness import Worker

PERIOD = date(2026, 11, 1)
SUB = "bench-history-sub"
USERS = 50
COPY_CHUNK = 50_000
RUNS = 300
LAG_SAMPLE_S = 0.5
MAX = 65_536


def quiet_port() -> int:
    """A free port below the ephemeral range: a port `free_port` hands out can be taken by
    an outgoing connection's local end before the worker binds it (seen here twice)."""
    import socket

    rnd = random.Random()
    for _ in range(200):
        port = rnd.randrange(20_000, 30_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-29999")


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(ordered), "p50_ms": round(pipeline.percentile(ordered, 0.50), 2),
            "p99_ms": round(pipeline.percentile(ordered, 0.99), 2),
            "max_ms": round(ordered[-1], 2)}


# ------------------------------------------------------------- the sink ---

async def committed(admin: AIOKafkaAdminClient, group: str, topics: set[str]) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(meta.offset for tp, meta in offsets.items()
               if tp.topic in topics and meta.offset >= 0)


async def sink_keeps_up(settings: Settings, data: DataSet, partitions: int, batch: int,
                        separate: bool, timeout_s: float = 900.0) -> dict[str, Any]:
    """The sink inside the rating worker (`RATER_HISTORY_SINK=on`), or `separate`: a
    `rater history-sink` process of its own beside a worker that only rates."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    extra = {"RATER_HISTORY_SINK": "off" if separate else "on",
             "RATER_HISTORY_SCHEMA": schema, "RATER_HISTORY_DSN": settings.history_dsn}
    try:
        async with pipeline.rater_on_stack(partitions, "direct", batch, extra, data) as (
                deployment, _):
            return {"sink": "separate process" if separate else "inside the worker",
                    **await _rate_and_watch(deployment, data, separate, timeout_s)}
    finally:
        await _drop_schema(settings, schema)


async def _rate_and_watch(deployment: Any, data: DataSet, separate: bool,
                          timeout_s: float) -> dict[str, Any]:
    dsettings = deployment.settings
    topics = dsettings.topics
    sunk = [topics.rated, topics.charges, topics.subscription_events]
    bootstrap = dsettings.kafka_bootstrap
    await kafka_io.produce_all(bootstrap, topics.cdr, data.records)
    probe = await kafka_io.offsets_probe(bootstrap, sunk)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    sink = Worker(deployment, port=quiet_port(),
                  command=[sys.executable, "-m", "rater.cli", "history-sink"]
                  ).start(wait_ready=False) if separate else None
    worker = Worker(deployment, port=quiet_port()).start(wait_ready=False)
    assert worker.process is not None
    timeline = procs.CpuTimeline(worker.process.pid)
    started, wall_start = time.monotonic(), time.time()
    samples: list[tuple[float, int, int]] = []  # (s since start, rated so far, sink lag)
    rated_done_at = caught_up_at = first_commit_at = rating_from = None
    last_rated, still = -1, 0
    try:
        while time.monotonic() - started < timeout_s:
            ends = await kafka_io.end_offsets(probe, sunk)
            done = await committed(admin, dsettings.history_group, set(sunk))
            now = time.monotonic() - started
            lag = sum(ends.values()) - done
            samples.append((round(now, 2), ends[topics.rated], lag))
            timeline.sample()
            if done > 0 and first_commit_at is None:
                first_commit_at = now
            if ends[topics.rated] > 0 and rating_from is None:
                rating_from = now - LAG_SAMPLE_S  # the worker's start-up is not rating
            still = still + 1 if ends[topics.rated] == last_rated and last_rated > 0 else 0
            last_rated = ends[topics.rated]
            if still >= 6 and rated_done_at is None:  # 3 s without a new rated call
                rated_done_at = now - still * LAG_SAMPLE_S
            if rated_done_at is not None and lag == 0:
                caught_up_at = now
                break
            if worker.process is not None and worker.process.poll() is not None:
                raise RuntimeError(f"worker exited: {worker.tail()}")
            await asyncio.sleep(LAG_SAMPLE_S)
        else:
            raise TimeoutError(f"sink not caught up after {timeout_s:.0f}s: {samples[-1]}")
        rows = await _row_counts(dsettings)
    finally:
        worker.stop()
        if sink is not None:
            sink.stop()
        await admin.close()
        await probe.stop()
    assert rated_done_at is not None and caught_up_at is not None
    assert first_commit_at is not None and rating_from is not None
    rated_total = samples[-1][1]
    rating_s = max(rated_done_at - rating_from, 0.001)
    at_rating_end = [lag for at, _, lag in samples if at <= rated_done_at]
    max_lag = max(lag for _, _, lag in samples)
    return {
        "cdrs": len(data.records), "rated_calls": rated_total, "rows": rows,
        "rating_s": round(rating_s, 1),
        "rating_cdrs_per_s": round(len(data.records) / rating_s),
        "lag_when_rating_ended": at_rating_end[-1] if at_rating_end else 0,
        "sink_rows_per_s": round(sum(rows.values()) / max(caught_up_at - first_commit_at, 0.001)),
        "max_lag_records": max_lag,
        "max_lag_share_of_output": round(max_lag / max(rated_total, 1), 3),
        "catch_up_after_rating_s": round(caught_up_at - rated_done_at, 1),
        # the machine's other work over the rating window (other engineers' runs, say)
        "cpu_shares": timeline.shares(wall_start + rating_from, wall_start + rated_done_at),
        "lag_samples": samples[:: max(1, len(samples) // 60)],
    }


async def sink_at_steady_rate(settings: Settings, data: DataSet, partitions: int, batch: int,
                              rate: float, seconds: float) -> dict[str, Any]:
    """The worker (sink inside) ready first, then CDRs at a steady `rate` for `seconds`:
    the sink's lag sampled throughout, and after, until it is zero."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    extra = {"RATER_HISTORY_SINK": "on", "RATER_HISTORY_SCHEMA": schema,
             "RATER_HISTORY_DSN": settings.history_dsn}
    try:
        async with pipeline.rater_on_stack(partitions, "direct", batch, extra, data) as (
                deployment, _):
            dsettings = deployment.settings
            topics = dsettings.topics
            sunk = [topics.rated, topics.charges, topics.subscription_events]
            probe = await kafka_io.offsets_probe(dsettings.kafka_bootstrap, sunk)
            admin = AIOKafkaAdminClient(bootstrap_servers=dsettings.kafka_bootstrap)
            await admin.start()
            worker = Worker(deployment, port=quiet_port()).start(wait_ready=True)
            lags: list[tuple[float, int]] = []
            started = time.monotonic()

            async def lag_now() -> int:
                ends = await kafka_io.end_offsets(probe, sunk)
                return sum(ends.values()) - await committed(admin, dsettings.history_group,
                                                            set(sunk))

            async def sample_until(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    lags.append((round(time.monotonic() - started, 2), await lag_now()))
                    await asyncio.sleep(LAG_SAMPLE_S)

            try:
                stop = asyncio.Event()
                sampler = asyncio.ensure_future(sample_until(stop))
                sent = await pipeline.paced_produce(
                    dsettings.kafka_bootstrap, topics.cdr,
                    fresh_cdrs(data.subscriptions, 11, "hist"), rate, seconds)
                stop.set()
                await sampler
                produced_for = time.monotonic() - started
                for _ in range(int(120 / LAG_SAMPLE_S)):  # bounded: two minutes to drain
                    lag = await lag_now()
                    lags.append((round(time.monotonic() - started, 2), lag))
                    if lag == 0:
                        break
                    await asyncio.sleep(LAG_SAMPLE_S)
            finally:
                worker.stop()
                await admin.close()
                await probe.stop()
            during = [lag for at, lag in lags if at <= produced_for]
            second_half = [lag for at, lag in lags if produced_for / 2 <= at <= produced_for]
            return {"rate_per_s": rate, "seconds": seconds, "cdrs": len(sent),
                    "max_lag_records": max(during),
                    "max_lag_second_half": max(second_half) if second_half else 0,
                    "drained_after_s": round(lags[-1][0] - produced_for, 1),
                    "final_lag": lags[-1][1],
                    "lag_samples": lags[:: max(1, len(lags) // 60)]}
    finally:
        await _drop_schema(settings, schema)


async def _row_counts(settings: Settings) -> dict[str, int]:
    conn = await db.connect(settings)
    try:
        return {table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
                for table in ("rated_calls", "overage_charges", "audit_events")}
    finally:
        await conn.close()


async def _drop_schema(settings: Settings, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(settings.history_dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


# -------------------------------------------------------------- the query ---

def _record(i: int, rnd: random.Random, span_s: int) -> bytes:
    started = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=rnd.randrange(span_s))
    billable = rnd.choice((60, 120, 180, 600))
    return orjson.dumps({
        "call_id": f"bench-{i:08d}", "subscription_id": SUB,
        "billing_account_id": "bench-ba", "user_id": f"user-{i % USERS:02d}",
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "period": PERIOD.isoformat(),
        "zone": "domestic", "direction": "outbound", "emergency": False,
        "duration_s": billable - 7, "billable_s": billable, "included_s": billable,
        "overage_s": 0, "unbilled_s": 0, "outcome": "included", "amount": "0",
        "currency": "EUR", "charge_id": None,
        "rated_at": (started + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "destination": f"+4930{i % 1_000_000:07d}",
    })


async def _fill(conn: Any, calls: int, seed: int) -> float:
    rnd = random.Random(seed)
    span_s = 28 * 86_400
    started = time.perf_counter()
    first = rated_call_row(_record(0, rnd, span_s), MAX)
    await RowWriter().write(conn, [first])  # creates the month's partition
    columns = list(COLUMNS["rated_calls"])
    for start in range(1, calls, COPY_CHUNK):
        rows = [rated_call_row(_record(i, rnd, span_s), MAX).values
                for i in range(start, min(calls, start + COPY_CHUNK))]
        await conn.copy_records_to_table("rated_calls", records=rows, columns=columns)
    await conn.execute("ANALYZE rated_calls")
    return time.perf_counter() - started


async def _cursors(conn: Any, user: str | None, depths: list[int]) -> list[str]:
    where = "subscription_id = $1" + (" AND user_id = $2" if user else "")
    args: list[Any] = [SUB, *([user] if user else [])]
    found = []
    for depth in depths:
        row = await conn.fetchrow(
            f"SELECT started_at, call_id FROM rated_calls WHERE {where} "
            f"ORDER BY started_at DESC, call_id DESC OFFSET {depth} LIMIT 1", *args)
        found.append(encode_cursor(Position(row["started_at"], row["call_id"])))
    return found


async def _timed(conn: Any, runs: int, cursors: list[str | None], user: str | None,
                 limit: int = 100) -> dict[str, float]:
    selection = call_filter(SUB, user_id=user)
    took = []
    for run in range(runs):
        cursor = cursors[run % len(cursors)]
        begun = time.perf_counter()
        page = await list_calls(conn, selection, cursor, limit)
        took.append((time.perf_counter() - begun) * 1000)
        assert len(page.records) == limit
    return percentiles(took)


async def _csv_peak(conn: Any, start: str, end: str) -> dict[str, Any]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    begun = time.perf_counter()
    rows = size = 0
    async for chunk in iter_calls_csv(conn, call_filter(SUB, start, end)):
        size += len(chunk)
        rows += chunk.count(b"\r\n")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"rows": rows - 1, "bytes": size, "seconds": round(time.perf_counter() - begun, 2),
            "tracemalloc_peak_kb": round(peak / 1024)}


async def calls_query(settings: Settings, calls: int, seed: int) -> dict[str, Any]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    qsettings = settings.with_overrides(history_schema=schema)
    conn = await db.connect(qsettings)
    try:
        await migrate(conn, schema)
        fill_s = await _fill(conn, calls, seed)
        rnd = random.Random(seed)
        deep = sorted(rnd.randrange(calls // 10, calls - 200) for _ in range(30))
        user_rows = calls // USERS
        user_deep = sorted(rnd.randrange(user_rows // 10, user_rows - 200) for _ in range(30))
        result: dict[str, Any] = {
            "calls": calls, "users": USERS, "fill_s": round(fill_s, 1),
            "first_page": await _timed(conn, RUNS, [None], None),
            "deep_pages": await _timed(conn, RUNS, list(await _cursors(conn, None, deep)),
                                       None),
            "first_page_user": await _timed(conn, RUNS, [None], "user-07"),
            "deep_pages_user": await _timed(
                conn, RUNS, list(await _cursors(conn, "user-07", user_deep)), "user-07"),
            "page_size": 100,
        }
        # a window holding ~100,000 calls (the calls are spread evenly over 28 days)
        window_s = int(28 * 86_400 * 100_000 / calls)
        start = datetime(2026, 11, 3, tzinfo=UTC)
        small_s = window_s // 10

        def iso(moment: datetime) -> str:
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

        result["csv_small"] = await _csv_peak(
            conn, iso(start), iso(start + timedelta(seconds=small_s)))
        result["csv_100k"] = await _csv_peak(
            conn, iso(start), iso(start + timedelta(seconds=window_s)))
        return result
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
