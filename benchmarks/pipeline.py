"""Kafka phases: bare aiokafka passthrough (the limit), bare Faust agent (the framework's
floor), the rater end to end (each CDR-consumer mode), latency at half the peak rate,
and the worker's RSS over a soak.

Throughput is taken from the output records' own timestamps (the producer's CreateTime,
stamped in the process under test at send): from the first output record to the last,
over a backlog that was fully produced before the process started. Process start-up and
rebalancing are therefore outside the window, the same way for every contender, and the
backlog's production never competes with the process under test for the two cores.
Every run then reads every output back and checks the counts (nothing lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from benchmarks import kafka_io, procs
from benchmarks.data import DataSet, fresh_cdrs
from benchmarks.redis_step import StepResult, delete_prefix, load_subscriptions, rated_key
from rater.config import Settings
from rater.store import RedisStore
from tests.integration.harness import Deployment, Worker, free_port

REPO = Path(__file__).resolve().parent.parent
LOGS = REPO / "rater-data" / "bench-logs"


@dataclass
class Throughput:
    name: str
    records: int
    window_s: float
    wall_s: float
    cpu_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.window_s if self.window_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "records": self.records, "cdrs_per_s": round(self.rate),
                "window_s": round(self.window_s, 3), "wall_s": round(self.wall_s, 2),
                "process_cpu_s": round(self.cpu_s, 2),
                "process_cpu_share": round(self.cpu_s / self.window_s, 2)
                if self.window_s else None, **self.extra}


def run_id(tag: str) -> str:
    return f"bench{tag}{uuid.uuid4().hex[:6]}"


# ------------------------------------------------------------- passthrough ---


async def _preload(
    bootstrap: str, source: str, sink: str, data: DataSet, partitions: int
) -> None:
    """Both topics created and the whole data set waiting in `source` (a backlog run)."""
    await kafka_io.create_topics(bootstrap, [source, sink], partitions)
    await kafka_io.produce_all(bootstrap, source, data.records)


async def passthrough(settings: Settings, data: DataSet, partitions: int) -> Throughput:
    prefix = run_id("p") + "."
    bootstrap = settings.kafka_bootstrap
    source, sink = f"{prefix}in", f"{prefix}out"
    try:
        await _preload(bootstrap, source, sink, data, partitions)
        started = time.monotonic()
        process = procs.spawn(
            [sys.executable, "-m", "benchmarks.passthrough", "--bootstrap", bootstrap,
             "--input", source, "--output", sink, "--group", f"{prefix}g",
             "--count", str(len(data.records)), "--timeout", "300"],
            bench_env(), LOGS / f"{prefix}log")
        cpu = 0.0
        timeline = procs.CpuTimeline(process.pid)
        try:
            while process.poll() is None:
                cpu = procs.cpu_seconds(process.pid) or cpu
                timeline.sample()
                if time.monotonic() - started > 330:
                    raise TimeoutError("passthrough did not finish in 330 s")
                await asyncio.sleep(0.2)
        finally:
            procs.stop(process)
        if process.returncode != 0:
            raise RuntimeError(f"passthrough failed ({process.returncode}); see {LOGS}")
        wall = time.monotonic() - started
        got = await kafka_io.read_all(bootstrap, [sink], {sink: len(data.records)})
        first, last = got.first_last()
        return Throughput("bare aiokafka passthrough", len(got.values[sink]),
                          (last - first) / 1000, wall, cpu,
                          {"cpu_shares": timeline.shares(first / 1000, last / 1000)})
    finally:
        await kafka_io.delete_topics(bootstrap, prefix)


def bench_env(**more: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RATER_", "BENCH_"))}
    env["PYTHONPATH"] = str(REPO)
    for name in ("RATER_KAFKA_BOOTSTRAP", "RATER_REDIS_URL"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(more)
    return env


# ------------------------------------------------------------- faust floor ---


async def faust_floor(settings: Settings, data: DataSet, partitions: int,
                      flame: Path | None) -> Throughput:
    prefix = run_id("f") + "."
    bootstrap = settings.kafka_bootstrap
    source, sink = f"{prefix}in", f"{prefix}out"
    try:
        await _preload(bootstrap, source, sink, data, partitions)
        started = time.monotonic()
        process = procs.spawn(
            [sys.executable, "-m", "benchmarks.faust_floor"],
            bench_env(BENCH_APP_ID=prefix.rstrip("."), BENCH_WEB_PORT=str(free_port()),
                      BENCH_INPUT=source, BENCH_OUTPUT=sink,
                      RATER_TOPIC_PARTITIONS=str(partitions)),
            LOGS / f"{prefix}log")
        profiler = procs.Profiler(process.pid, flame) if flame else None
        try:
            n = len(data.records)
            cpu_probe = _CpuProbe(process.pid)
            timeline = procs.CpuTimeline(process.pid)
            _, _ = await kafka_io.wait_for_counts(
                bootstrap, [sink], lambda t: t[sink] >= n, timeout=600,
                alive=lambda: process.poll() is None and cpu_probe.sample()
                and timeline.sample())
            cpu = cpu_probe.last
        finally:
            if profiler:
                profiler.finish()
            procs.stop(process)
        wall = time.monotonic() - started
        got = await kafka_io.read_all(bootstrap, [sink], {sink: n})
        first, last = got.first_last()
        return Throughput("bare Faust agent", len(got.values[sink]), (last - first) / 1000,
                          wall, cpu, {"cpu_shares": timeline.shares(first / 1000, last / 1000)})
    finally:
        await kafka_io.delete_topics(bootstrap, prefix)
        drop_faust_datadir(prefix.rstrip("."))


class _CpuProbe:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.last = 0.0

    def sample(self) -> bool:
        self.last = procs.cpu_seconds(self.pid) or self.last
        return True


# ------------------------------------------------------------------- rater ---


def rater_deployment(partitions: int, mode: str | None, batch: int,
                     extra: dict[str, str]) -> Deployment:
    env = {"RATER_BATCH_MAX": str(batch), **extra}
    if mode:
        env["RATER_CDR_CONSUMER"] = mode
    return Deployment(name=run_id("r"), partitions=partitions, extra_env=env)


@contextlib.asynccontextmanager
async def rater_on_stack(partitions: int, mode: str | None, batch: int,
                         extra: dict[str, str], data: DataSet
                         ) -> AsyncIterator[tuple[Deployment, RedisStore]]:
    """A fresh deployment for one phase: its topics created and the data set's
    subscriptions in Redis; afterwards its Redis keys, topics and Faust data are gone."""
    deployment = rater_deployment(partitions, mode, batch, extra)
    dsettings = deployment.settings
    store = RedisStore.from_settings(dsettings)
    try:
        await deployment.create_topics()
        await load_subscriptions(store, data.subscriptions)
        yield deployment, store
    finally:
        await delete_prefix(store.client, dsettings.key_prefix)
        await store.close()
        await kafka_io.delete_topics(dsettings.kafka_bootstrap,
                                     dsettings.topics.cdr.removesuffix("calls.cdr"))
        drop_faust_datadir(dsettings.app_id)


def drop_faust_datadir(app_id: str) -> None:
    """Faust's data directory of one benchmark app (RATER_DATA_DIR/<app id>-data)."""
    import shutil

    for root in (REPO / "rater-data", REPO):
        shutil.rmtree(root / f"{app_id}-data", ignore_errors=True)


async def rater_end_to_end(settings: Settings, data: DataSet, expected: StepResult,
                           partitions: int, mode: str, batch: int,
                           flame: Path | None, extra: dict[str, str] | None = None) -> Throughput:
    """Backlog produced first, then `rater worker` started; all four outputs checked."""
    async with rater_on_stack(partitions, mode, batch, extra or {}, data) as (deployment, _):
        topics = deployment.settings.topics
        bootstrap = deployment.settings.kafka_bootstrap
        want = {
            topics.rated: expected.per_topic[settings.topics.rated],
            topics.charges: expected.per_topic[settings.topics.charges],
            topics.alerts: expected.per_topic[settings.topics.alerts],
            topics.dlq: expected.per_topic[settings.topics.dlq],
        }
        outputs = list(want)
        await kafka_io.produce_all(bootstrap, topics.cdr, data.records)
        started = time.monotonic()
        worker = Worker(deployment).start(wait_ready=False)
        assert worker.process is not None
        pid = worker.process.pid
        profiler = procs.Profiler(pid, flame) if flame else None
        cpu_probe = _CpuProbe(pid)
        timeline = procs.CpuTimeline(pid)
        rss_peak = 0

        def alive() -> bool:
            nonlocal rss_peak
            rss_peak = max(rss_peak, procs.rss_bytes(pid))
            timeline.sample()
            return worker.process is not None and worker.process.poll() is None \
                and cpu_probe.sample()

        try:
            await kafka_io.wait_for_counts(
                bootstrap, outputs, lambda t: all(t[k] >= v for k, v in want.items()),
                timeout=600, alive=alive)
            cpu = cpu_probe.last
        finally:
            if profiler:
                profiler.finish()
            worker.stop()
        wall = time.monotonic() - started
        got = await kafka_io.read_all(bootstrap, outputs, want)
        first, last = got.first_last()
        check = verify(got, topics, want, expected)
        return Throughput(f"rater end-to-end ({mode})", len(data.records), (last - first) / 1000,
                          wall, cpu, {"mode": mode, "batch_max": batch, "outputs": want,
                                      "verified": check, "rss_peak_mb": round(rss_peak / 2**20, 1),
                                      "cpu_shares": timeline.shares(first / 1000, last / 1000),
                                      "log": str(worker.log_path)})


def verify(got: kafka_io.Collected, topics: Any, want: dict[str, int],
           expected: StepResult) -> dict[str, Any]:
    """Exactly the records the in-process rating of the same stream produced."""
    counts = {t: len(v) for t, v in got.values.items()}
    rated = Counter(rated_key(orjson.loads(v)) for v in got.values[topics.rated])
    dead = Counter(orjson.loads(v)["reason"] for v in got.values[topics.dlq])
    ok = counts == want and rated == expected.rated_digest and dead == expected.dead
    if not ok:
        missing = sum((expected.rated_digest - rated).values())
        extra = sum((rated - expected.rated_digest).values())
        raise AssertionError(f"outputs differ from the in-process rating: counts {counts} vs "
                             f"{want}; rated missing {missing}, unexpected {extra}; "
                             f"dead {dict(dead)} vs {dict(expected.dead)}")
    return {"identical_to_in_process_rating": True, "counts": counts}


# ------------------------------------------------------- latency and soak ---


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def paced_produce(bootstrap: str, topic: str, source: Any, rate: float,
                        seconds: float, on_tick: Any = None) -> dict[str, int]:
    """Produce `rate` records/s for `seconds`; returns call_id -> produce timestamp (ms)."""
    producer = kafka_io.fast_producer(bootstrap, linger_ms=1)
    await producer.start()
    sent: dict[str, int] = {}
    pending = []
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(rate * elapsed) - len(sent)
            for _ in range(due):
                key, value = next(source)
                stamp = int(time.time() * 1000)
                pending.append(await producer.send(topic, value=value, key=key,
                                                   timestamp_ms=stamp))
                sent[orjson.loads(value)["call_id"]] = stamp
            if len(pending) > 5000:
                await asyncio.gather(*pending)
                pending = []
            if on_tick is not None:
                on_tick()
            await asyncio.sleep(0.002)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def latency_and_soak(settings: Settings, data: DataSet, partitions: int, mode: str,
                           batch: int, rate: float, seconds: float, soak_rate: float,
                           soak_s: float) -> dict[str, Any]:
    """(e) CDR produced -> rated call / charge on the output topic, paced at `rate`;
    then (h) the same worker soaked at `soak_rate` for `soak_s`, RSS sampled each second."""
    result: dict[str, Any] = {}
    async with rater_on_stack(partitions, mode, batch, {}, data) as (deployment, _):
        topics = deployment.settings.topics
        bootstrap = deployment.settings.kafka_bootstrap
        worker = Worker(deployment).start(wait_ready=True)
        assert worker.process is not None
        pid = worker.process.pid
        try:
            await asyncio.sleep(2.0)  # let the assignment settle
            source = fresh_cdrs(data.subscriptions, seed=5, prefix="lat-")
            sent = await paced_produce(bootstrap, topics.cdr, source, rate, seconds)
            want = {topics.rated: len(sent)}
            await kafka_io.wait_for_counts(bootstrap, [topics.rated],
                                           lambda t: t[topics.rated] >= len(sent), timeout=120)
            charges_total = (await kafka_io.wait_for_counts(
                bootstrap, [topics.charges], lambda t: True, timeout=10))[0][topics.charges]
            want[topics.charges] = charges_total
            got = await kafka_io.read_all(bootstrap, [topics.rated, topics.charges], want)
            result["latency"] = {"rate_per_s": rate, "seconds": seconds, "cdrs": len(sent),
                                 **latencies(got, sent, topics.rated, topics.charges)}
            if soak_s > 0:
                result["soak"] = await soak(bootstrap, topics.cdr, data, pid, soak_rate,
                                            soak_s, worker)
        finally:
            worker.stop()
    return result


def latencies(got: kafka_io.Collected, sent: dict[str, int], rated: str,
              charges: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, topic in (("rated", rated), ("charge", charges)):
        values = sorted(
            float(ts - sent[orjson.loads(v)["call_id"]])
            for v, ts in zip(got.values[topic], got.timestamps[topic], strict=True)
            if orjson.loads(v)["call_id"] in sent)
        out[name] = {"n": len(values), "p50_ms": percentile(values, 0.5),
                     "p99_ms": percentile(values, 0.99), "max_ms": values[-1] if values else None}
    return out


async def soak(bootstrap: str, topic: str, data: DataSet, pid: int, rate: float,
               seconds: float, worker: Worker) -> dict[str, Any]:
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    last = [0.0]

    def tick() -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            samples.append((now - started, procs.rss_bytes(pid)))

    source = fresh_cdrs(data.subscriptions, seed=6, prefix="soak-")
    sent = await paced_produce(bootstrap, topic, source, rate, seconds, on_tick=tick)
    tick()
    rated = topic.removesuffix("calls.cdr") + "calls.rated"
    try:  # every soaked CDR rated (on top of the latency phase's)
        await kafka_io.wait_for_counts(bootstrap, [rated], lambda t: t[rated] >= len(sent),
                                       timeout=120)
        kept_up = True
    except TimeoutError:
        kept_up = False
    alive = worker.process is not None and worker.process.poll() is None
    mb = [s[1] / 2**20 for s in samples]
    n = len(mb)
    half = max(1, n // 2)
    return {
        "seconds": seconds, "rate_per_s": rate, "cdrs": len(sent), "worker_alive": alive,
        "all_rated": kept_up,
        "rss_start_mb": round(mb[0], 1) if mb else None,
        "rss_end_mb": round(mb[-1], 1) if mb else None,
        "rss_max_mb": round(max(mb), 1) if mb else None,
        # growth over the second half, where warm-up (caches, buffers) is behind us
        "rss_second_half_growth_mb": round(mb[-1] - mb[n - half], 1) if mb else None,
        "samples_mb": [round(x, 1) for x in mb[:: max(1, n // 60)]],
    }
