"""(f) Request latency at a fixed open-loop rate: `POST /v1/authorize` on its own at each of
`ALONE_RATES`, then at `BESIDE_RATE` while the same worker rates a steady `STEADY_CDR_RATE`
CDRs/s, and a bare handler on the same web stack (Faust view on aiohttp) as the baseline.

The load comes from vegeta (compiled, `make bench` installs it; `BENCH_VEGETA` names the
binary): a JSON targets file with one body per request, sent in file order at a fixed
rate for a fixed time whatever the answers do. Latency is counted from each request's
*due* time (start + seq / rate), so a generator that fell behind could not hide it.

Every window reports the CPU share of each process over exactly that window (the worker,
vegeta, Redis, the Kafka broker, the benchmark process itself, which produces the steady
CDRs, and whatever else ran), the worker's run-queue wait (its event-loop thread runnable
but without a CPU) and the machine's CPU pressure. The worker is
`benchmarks.probed_worker` (`rater worker` plus probes), so each window also says where
the time went inside it: event-loop lag, the longest synchronous segments and whose they
are, the rating batches' CPU steps and sizes, and its Redis calls; beside it, a PING
probe (`benchmarks.redis_probe`) measures how long Redis itself keeps a request waiting.

A request load is a `TargetSet` built by one function from the running worker's URL, the
data set, a token, the window's tag and how many requests the window sends; `TARGET_SETS`
lists them (call attempts on `POST /v1/authorize`; credit-control sessions: set-up, update,
terminate), and each is measured alone and beside steady rating. Every window gets its
own targets, so a load with state (a session) never replays an earlier window's ids.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import io
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from benchmarks import kafka_io, procs
from benchmarks.data import DataSet, fresh_cdrs
from benchmarks.pipeline import LOGS, bench_env, drop_faust_datadir, rater_on_stack, run_id
from rater.config import Settings
from tests.integration.harness import Worker, free_port

SECRET = "benchmark-only-hs256-secret-0123456789abcdef"
ISSUER, AUDIENCE = "rater-bench", "rater"
ALONE_RATES = (1000.0, 2000.0)  # requests/s, the endpoint on its own
BESIDE_RATE = 1000.0  # requests/s while the same worker rates STEADY_CDR_RATE
STEADY_CDR_RATE = 5000.0  # CDRs/s: steady rating, well below the rating peak
WARMUP_S = 2.0  # load before each window, not counted: connections, caches, code paths
GOALS_MS = {"alone": 10.0, "beside": 25.0}  # p99 goals of issue 12
WINDOWS = ("alone", "beside", "bare")  # which of phase f's windows run (--f-windows)
VEGETA_VERSION = "v12.13.0"


# ------------------------------------------------------------- request loads ---


@dataclass(frozen=True)
class TargetSet:
    """One request load: vegeta targets, sent in this order at the window's rate (cycling
    when the window needs more requests than there are targets)."""

    name: str  # the table's label, e.g. "POST /v1/authorize"
    targets: list[dict[str, Any]]  # vegeta JSON targets: method, url, header, body (base64)
    kinds: list[str] | None = None  # per target, when a load mixes kinds of request

    def write(self, path: Path) -> Path:
        """The targets file for vegeta, and beside it (`kinds_path`) the kind of each."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\n".join(orjson.dumps(t) for t in self.targets) + b"\n")
        kinds_path(path).unlink(missing_ok=True)
        if self.kinds:
            kinds_path(path).write_text("\n".join(self.kinds) + "\n")
        return path


def kinds_path(targets: Path) -> Path:
    return targets.with_suffix(".kinds")


def target(method: str, url: str, body: bytes | None = None,
           token: str = "") -> dict[str, Any]:
    header = {"Content-Type": ["application/json"]}
    if token:
        header["Authorization"] = [f"Bearer {token}"]
    out: dict[str, Any] = {"method": method, "url": url, "header": header}
    if body is not None:
        out["body"] = base64.b64encode(body).decode()
    return out


def attempt_bodies(data: DataSet, count: int = 5000, seed: int = 3) -> list[bytes]:
    rnd = random.Random(seed)
    bodies = []
    for i in range(count):
        sub = data.subscriptions[rnd.randrange(len(data.subscriptions))]
        bodies.append(orjson.dumps({
            "attempt_id": f"att-{i:06d}", "subscription_id": sub["subscription_id"],
            "user_id": f"user-{rnd.randrange(4)}",
            "direction": "outbound" if rnd.random() < 0.9 else "inbound",
            "zone": "domestic" if rnd.random() < 0.8 else "international",
        }))
    return bodies


def authorize_targets(base_url: str, data: DataSet, token: str, tag: str,
                      requests: int) -> TargetSet:
    """Call attempts over the data set's subscriptions, one body per request (attempts
    keep no state: the window cycles through 5000 of them)."""
    return TargetSet("POST /v1/authorize",
                     [target("POST", f"{base_url}/v1/authorize", body, token)
                      for body in attempt_bodies(data)])


SESSION_STEP_GAP = 50  # sessions between a call's set-up and its update, and its terminate


def session_targets(base_url: str, data: DataSet, token: str, tag: str,
                    requests: int, seed: int = 5) -> TargetSet:
    """Credit-control sessions, each a set-up, an update and a terminate, interleaved so
    that every request slot carries one of each kind: a call's update comes
    `SESSION_STEP_GAP` sessions (3 x that many requests) after its set-up, its terminate as
    much later again. The session ids carry the window's tag: unique per window.
    The calls go to subscriptions with PAYG on, as a switch's would be connected: a call
    refused at set-up gets no update (it would be answered 409)."""
    rnd = random.Random(seed)
    count = requests // 3 + 1
    subs = [s for s in data.subscriptions if s.get("payg_enabled")] or data.subscriptions
    calls = []
    for i in range(count):
        sub = subs[rnd.randrange(len(subs))]
        calls.append((f"{tag}-s{i:07d}", orjson.dumps({
            "session_id": f"{tag}-s{i:07d}", "subscription_id": sub["subscription_id"],
            "user_id": f"user-{rnd.randrange(4)}",
            "direction": "outbound" if rnd.random() < 0.9 else "inbound",
            "zone": "domestic" if rnd.random() < 0.8 else "international",
            "requested_s": 120, "request_number": 0})))
    gap = SESSION_STEP_GAP
    targets, kinds = [], []
    for step in range(count + 2 * gap):
        if step < count:
            targets.append(target("POST", f"{base_url}/v1/sessions", calls[step][1], token))
            kinds.append("initial")
        if 0 <= step - gap < count:
            session_id, _ = calls[step - gap]
            targets.append(target(
                "POST", f"{base_url}/v1/sessions/{session_id}/update",
                orjson.dumps({"used_s": 45, "requested_s": 120, "request_number": 1}), token))
            kinds.append("update")
        if 0 <= step - 2 * gap < count:
            session_id, _ = calls[step - 2 * gap]
            targets.append(target(
                "POST", f"{base_url}/v1/sessions/{session_id}/terminate",
                orjson.dumps({"used_s": 95, "request_number": 2}), token))
            kinds.append("terminate")
    return TargetSet("POST /v1/sessions (set-up, update, terminate)", targets, kinds)


# Each builder makes one load for a running worker:
# (worker URL, data set, token, window tag, requests in the window) -> targets.
# Each is measured alone at ALONE_RATES and beside steady rating at BESIDE_RATE.
TargetBuilder = Callable[[str, DataSet, str, str, int], TargetSet]
TARGET_SETS: list[TargetBuilder] = [authorize_targets, session_targets]


def bare_targets(base_url: str, data: DataSet, token: str = "", tag: str = "",
                 requests: int = 0) -> TargetSet:
    return TargetSet("bare handler, same web stack",
                     [target("POST", f"{base_url}/bare", body) for body in attempt_bodies(data)])


def targets_writer(build: TargetBuilder, base_url: str, data: DataSet,
                   token: str) -> Callable[[str, int], Path]:
    """(window tag, requests) -> a targets file of that window's own."""
    def write(tag: str, requests: int) -> Path:
        return build(base_url, data, token, tag, requests).write(LOGS / f"{tag}-targets.json")
    return write


# ------------------------------------------------------------------ vegeta ---


def vegeta_binary() -> str:
    found = os.environ.get("BENCH_VEGETA") or shutil.which("vegeta")
    if not found or not Path(found).exists():
        raise RuntimeError(f"vegeta not found: `make bench` installs it (BENCH_VEGETA), or "
                           f"go install github.com/tsenart/vegeta/v12@{VEGETA_VERSION}")
    return found


def percentile(ordered: Sequence[float], q: float) -> float | None:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def summarise(csv_text: str, rate: float, kinds: Sequence[str] = ()) -> dict[str, Any]:
    """vegeta's results (CSV: timestamp ns, code, latency ns, bytes out, bytes in, error,
    body, attack, seq, ...) -> achieved rate, status codes, latency from the due time;
    with `kinds` (the kind of each target, in file order), the latency of each kind."""
    rows = [(int(r[0]), r[1], int(r[2]), int(r[8]), r[5])
            for r in csv.reader(io.StringIO(csv_text)) if r]
    if not rows:
        return {"sent": 0, "ok": 0, "statuses": {}, "achieved_rate": 0.0}
    rows.sort(key=lambda r: r[3])
    # the schedule's start: the earliest that any request's send time implies (request
    # seq is due at start + seq / rate); the first request itself may have left late
    first = min(stamp - seq * 1e9 / rate for stamp, _, _, seq, _ in rows)
    statuses: dict[str, int] = {}
    from_due: list[float] = []
    from_send: list[float] = []
    send_late: list[float] = []
    errors: dict[str, int] = {}
    by_kind: dict[str, list[float]] = {}
    end = first
    for stamp, code, latency, seq, error in rows:
        label = code if code != "0" else "no answer"
        statuses[label] = statuses.get(label, 0) + 1
        if error:
            errors[error[:80]] = errors.get(error[:80], 0) + 1
        end = max(end, stamp + latency)
        if code == "200":
            due = first + seq * 1e9 / rate
            from_due.append((stamp + latency - due) / 1e6)
            if kinds:  # vegeta cycles through the targets in file order (it may swap two
                # requests due within the same instant: a kind's figures are not moved)
                by_kind.setdefault(kinds[seq % len(kinds)], []).append(from_due[-1])
            from_send.append(latency / 1e6)
            send_late.append(max(0.0, stamp - due) / 1e6)
    from_due.sort()
    from_send.sort()
    send_late.sort()
    window = max((end - first) / 1e9, 1e-6)
    first = int(first)
    return {
        "target_rate": rate, "sent": len(rows), "ok": len(from_due), "statuses": statuses,
        "errors": errors, "achieved_rate": round(len(from_due) / window, 1),
        "window_s": round(window, 2), "started_epoch": first / 1e9, "ended_epoch": end / 1e9,
        "p50_ms": percentile(from_due, 0.5), "p90_ms": percentile(from_due, 0.9),
        "p99_ms": percentile(from_due, 0.99), "max_ms": from_due[-1] if from_due else None,
        # vegeta's own view (from the moment it sent), and how late it sent: near zero
        # when the generator kept its schedule
        "p99_from_send_ms": percentile(from_send, 0.99),
        "send_late_p99_ms": percentile(send_late, 0.99),
        "by_kind": {kind: {"ok": len(ms), "p50_ms": percentile(ms, 0.5),
                           "p99_ms": percentile(ms, 0.99), "max_ms": ms[-1]}
                    for kind, ms in ((k, sorted(v)) for k, v in by_kind.items())},
    }


async def attack(targets: Path, rate: float, seconds: float, timeline: procs.CpuTimeline,
                 out: Path) -> dict[str, Any]:
    """One fixed-rate window; the timeline samples every process meanwhile."""
    vegeta = vegeta_binary()
    results = out.with_suffix(".bin")
    process = await asyncio.create_subprocess_exec(
        vegeta, "attack", "-format=json", f"-targets={targets}", f"-rate={rate:.0f}/1s",
        f"-duration={seconds}s", "-timeout=10s", "-keepalive=true", "-workers=16",
        "-max-workers=2000", "-max-body=0", f"-output={results}",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    name = f"loadgen-{process.pid}"  # one name per process: a timeline outlives several
    timeline.add(name, process.pid)
    deadline = time.monotonic() + seconds + 60
    try:
        while process.returncode is None:
            timeline.sample()
            if time.monotonic() > deadline:
                raise TimeoutError(f"vegeta did not finish {seconds}s of load in time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 0.25)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    timeline.sample()
    if process.returncode != 0:
        err = await process.stderr.read() if process.stderr else b""
        raise RuntimeError(f"vegeta attack failed: {err.decode()[-2000:]}")
    encoded = subprocess.run([vegeta, "encode", "--to=csv", str(results)], check=True,
                             capture_output=True, timeout=120).stdout.decode()
    results.unlink(missing_ok=True)
    kinds = kinds_path(targets)
    summary = summarise(encoded, rate, kinds.read_text().split() if kinds.exists() else ())
    summary["cpu_shares"] = timeline.shares(summary["started_epoch"], summary["ended_epoch"])
    shares = summary["cpu_shares"]
    shares["loadgen"] = shares.pop(name, 0.0)
    probes = [k for k in shares if k.startswith("redis_probe-")]
    shares["redis_probe"] = round(sum(shares.pop(k) for k in probes), 2)
    for earlier in [k for k in shares if k.startswith("loadgen-")]:
        shares.pop(earlier)  # a warm-up's generator, gone when this window started
    return summary


# ---------------------------------------------------------------- windows ---


def probe_report(base_url: str, reset: bool = False) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/bench/probe{'?reset=1' if reset else ''}",
                                timeout=10) as answer:
        report: dict[str, Any] = orjson.loads(answer.read())
        return report


async def redis_evalsha(client: Any) -> tuple[int, int, dict[int, int]]:
    """Script calls so far: count, µs inside them, and Redis's own histogram of their
    durations (LATENCY HISTOGRAM: calls per power-of-two µs bucket, cumulative)."""
    stats = await client.info("commandstats")
    entry = stats.get("cmdstat_evalsha", {})
    buckets: dict[int, int] = {}
    try:
        reply = await client.execute_command("LATENCY", "HISTOGRAM", "evalsha")
        flat = reply[1] if isinstance(reply, list) else reply.get("evalsha", {})
        if isinstance(flat, list):
            flat = dict(zip(flat[::2], flat[1::2], strict=True))
        pairs = flat.get("histogram_usec", [])
        if isinstance(pairs, dict):
            pairs = [x for kv in pairs.items() for x in kv]
        buckets = {int(pairs[i]): int(pairs[i + 1]) for i in range(0, len(pairs), 2)}
    except Exception:  # Redis < 7: no histogram
        buckets = {}
    return int(entry.get("calls", 0)), int(entry.get("usec", 0)), buckets


def bucket_percentiles(before: dict[int, int], after: dict[int, int]) -> dict[str, int | None]:
    """Upper bounds (µs) of the buckets holding p50 / p99 / the longest script of the
    window, from the cumulative histograms before and after it."""
    counts = sorted((edge, after.get(edge, 0) - before.get(edge, 0)) for edge in after)
    total = counts[-1][1] if counts else 0
    out: dict[str, int | None] = {"p50_us_under": None, "p99_us_under": None,
                                  "max_us_under": None}
    if total <= 0:
        return out
    for name, q in (("p50_us_under", 0.5), ("p99_us_under", 0.99), ("max_us_under", 1.0)):
        out[name] = next(edge for edge, cumulative in counts if cumulative >= q * total)
    return out


@contextlib.asynccontextmanager
async def fsync_monitor(client: Any) -> Any:
    """Redis's latency monitor on for the window when it was off (1 ms threshold), so the
    AOF fsyncs that `appendfsync always` does in Redis's one thread are seen; the
    previous setting is put back afterwards. Yields a list that receives, at the end,
    the per-second maxima (ms) of `aof-fsync-always` events inside the window."""
    found: list[int] = []
    previous = None
    try:
        previous = (await client.config_get("latency-monitor-threshold")).get(
            "latency-monitor-threshold")
        if previous == "0":
            await client.config_set("latency-monitor-threshold", 1)
    except Exception:
        previous = None
    started = time.time()
    try:
        yield found
    finally:
        try:
            history = await client.execute_command("LATENCY", "HISTORY", "aof-fsync-always")
            found.extend(int(ms) for stamp, ms in history if int(stamp) >= int(started))
        except Exception:
            pass
        if previous == "0":
            await client.config_set("latency-monitor-threshold", 0)


@dataclass
class Window:
    """Everything measured around one fixed-rate window of one process under test."""

    pid: int
    probe_url: str | None = None
    timeline: procs.CpuTimeline = field(init=False)

    def __post_init__(self) -> None:
        self.timeline = procs.CpuTimeline(self.pid, {"bench": os.getpid()})

    async def run(self, targets_for: Callable[[str, int], Path], rate: float, seconds: float,
                  tag: str, store: Any = None) -> dict[str, Any]:
        warmup = f"{tag}-warmup"
        await attack(targets_for(warmup, int(rate * WARMUP_S) + 1), rate, WARMUP_S,
                     self.timeline, LOGS / warmup)
        targets = targets_for(tag, int(rate * seconds) + 1)
        if self.probe_url:
            probe_report(self.probe_url, reset=True)
        evalsha = await redis_evalsha(store.client) if store is not None else None
        redis_port = int((Settings.from_env().redis_url.rsplit(":", 1)[1]).split("/")[0])
        prober = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.redis_probe", "--port", str(redis_port),
            "--seconds", str(seconds), env=bench_env(), stdout=subprocess.PIPE)
        self.timeline.add(f"redis_probe-{prober.pid}", prober.pid)
        if store is not None:
            async with fsync_monitor(store.client) as fsyncs:
                result = await attack(targets, rate, seconds, self.timeline, LOGS / tag)
            result["redis_fsync_ms_per_second_max"] = sorted(fsyncs)
        else:
            result = await attack(targets, rate, seconds, self.timeline, LOGS / tag)
        out, _ = await asyncio.wait_for(prober.communicate(), 60)
        result["redis_ping_ms"] = orjson.loads(out.splitlines()[-1]) if out else None
        if self.probe_url:
            result["worker_probe"] = probe_report(self.probe_url)
        if evalsha is not None:
            calls, usec, buckets = await redis_evalsha(store.client)
            calls, usec = calls - evalsha[0], usec - evalsha[1]
            # every script of every client of this Redis: rating, snapshots, others' tests
            result["redis_evalsha"] = {"calls": calls,
                                       "usec_per_call": round(usec / calls, 1) if calls else None,
                                       "busy_share": round(usec / 1e6 / result["window_s"], 3),
                                       **bucket_percentiles(evalsha[2], buckets)}
        return result


    async def run_profiled(self, flame: Path, targets_for: Callable[[str, int], Path],
                           rate: float, seconds: float, tag: str,
                           store: Any = None) -> str | None:
        """One more window with py-spy on the process (a window of its own: py-spy costs
        CPU too); the flame graph's file name, when py-spy wrote one."""
        profiler = procs.Profiler(self.pid, flame)
        try:
            await self.run(targets_for, rate, seconds, tag, store)
        finally:
            profiler.finish()
        return flame.name if flame.exists() else None


def token_for_bench() -> str:
    from rater.web.tokens import issue_token

    return issue_token(SECRET, subject="bench-authorizer", scope="call_authorizer",
                       issuer=ISSUER, audience=AUDIENCE, algorithm="HS256", expires_in=3600)


def probed_worker(deployment: Any) -> Worker:
    """`rater worker` with the probes. BENCH_RATER_SOURCE=DIR runs the `rater` package found
    in DIR instead of this checkout's (e.g. `git archive <commit> rater | tar -x -C DIR`):
    before/after comparisons back to back, with the same benchmark code."""
    env = {}
    source = os.environ.get("BENCH_RATER_SOURCE")
    if source:
        env["BENCH_RATER_SOURCE"] = str(Path(source).resolve())
    return Worker(deployment, command=[sys.executable, "-m", "benchmarks.probed_worker"], **env)


def steady_records(data: DataSet, count: int) -> list[kafka_io.Record]:
    source: Iterator[kafka_io.Record] = fresh_cdrs(data.subscriptions, seed=7, prefix="web-")
    return [next(source) for _ in range(count)]


async def steady_produce(bootstrap: str, topic: str, records: Sequence[kafka_io.Record],
                         rate: float, stop: asyncio.Event) -> int:
    """`rate` records/s until `stop` (or the records run out), pre-built, one record batch
    per partition every few ms: the CDR source's own CPU stays small."""
    producer = kafka_io.fast_producer(bootstrap, linger_ms=1)
    await producer.start()
    sent = 0
    pending: list[Any] = []
    try:
        partitions = sorted(await producer.partitions_for(topic))
        started = time.monotonic()
        while not stop.is_set() and sent < len(records):
            due = min(len(records), int(rate * (time.monotonic() - started)))
            builders: dict[int, Any] = {}
            for key, value in records[sent:due]:
                partition = partitions[(murmur2(key or b"") & 0x7FFFFFFF) % len(partitions)]
                builder = builders.get(partition)
                if builder is None:
                    builder = builders[partition] = producer.create_batch()
                if builder.append(timestamp=None, key=key, value=value) is None:
                    pending.append(await producer.send_batch(builder, topic, partition=partition))
                    builder = builders[partition] = producer.create_batch()
                    builder.append(timestamp=None, key=key, value=value)
            for partition, builder in builders.items():
                pending.append(await producer.send_batch(builder, topic, partition=partition))
            sent = max(sent, due)
            if len(pending) > 500:
                await asyncio.gather(*pending)
                pending = []
            await asyncio.sleep(0.005)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def authorize_under_load(data: DataSet, partitions: int, seconds: float,
                               flame: Path | None = None,
                               alone_rates: Sequence[float] = ALONE_RATES,
                               beside_rate: float = BESIDE_RATE,
                               steady_rate: float = STEADY_CDR_RATE,
                               windows: Sequence[str] = WINDOWS) -> dict[str, Any]:
    result: dict[str, Any] = {"goals_p99_ms": GOALS_MS, "steady_cdr_rate": steady_rate,
                              "warmup_s": WARMUP_S, "loads": {}}
    if os.environ.get("BENCH_RATER_SOURCE"):
        result["rater_source"] = os.environ["BENCH_RATER_SOURCE"]
    jwt_env = {"RATER_JWT_ALGORITHM": "HS256", "RATER_JWT_KEY": SECRET,
               "RATER_JWT_ISSUER": ISSUER, "RATER_JWT_AUDIENCE": AUDIENCE}
    token = token_for_bench()
    for build in TARGET_SETS:
        load: dict[str, Any] = {}
        name = build("http://127.0.0.1", data, token, "name", 3).name
        # one flame graph per load and window: flame-<run>-authorize.svg, -session-beside.svg
        slug = build.__name__.removesuffix("_targets")
        own_flame = flame.with_name(f"{flame.stem}-{slug}{flame.suffix}") if flame else None
        if "alone" in windows:
            load.update(await _alone(build, partitions, jwt_env, data, token, alone_rates,
                                     seconds, own_flame))
        # beside: the same worker rates steady CDRs meanwhile
        beside_flame = (own_flame.with_name(f"{own_flame.stem}-beside{own_flame.suffix}")
                        if own_flame else None)
        if "beside" in windows:
            load[f"beside_{beside_rate:.0f}"] = await _beside_rating(
                build, partitions, jwt_env, data, token, beside_rate, seconds, steady_rate,
                beside_flame)
        result["loads"][name] = load
    if "bare" in windows:
        result["bare"] = await _bare(data, partitions, alone_rates, seconds)
    return result


async def _alone(build: TargetBuilder, partitions: int,
                 jwt_env: dict[str, str], data: DataSet, token: str, rates: Sequence[float],
                 seconds: float, flame: Path | None) -> dict[str, Any]:
    """The load at each rate on an idle worker (no CDRs); then, with `flame`, one more
    window at the highest rate under py-spy (a window of its own: py-spy costs CPU too)."""
    out: dict[str, Any] = {}
    batch = Settings.from_env({}).batch_max
    async with rater_on_stack(partitions, None, batch, jwt_env, data) as (deployment, store):
        worker = probed_worker(deployment).start(wait_ready=True)
        assert worker.process is not None
        path = targets_writer(build, worker.url, data, token)
        try:
            window = Window(worker.process.pid, worker.url)
            for rate in rates:
                out[f"alone_{rate:.0f}"] = await window.run(
                    path, rate, seconds, f"{deployment.name}-{rate:.0f}", store)
            if flame is not None and rates:
                drawn = await window.run_profiled(flame, path, max(rates), seconds,
                                                  f"{deployment.name}-flame", store)
                if drawn:
                    out["flame_graph"] = drawn
        finally:
            worker.stop()
    return out


async def _beside_rating(build: TargetBuilder, partitions: int,
                         jwt_env: dict[str, str], data: DataSet, token: str, rate: float,
                         seconds: float, steady_rate: float,
                         flame: Path | None = None) -> dict[str, Any]:
    """The load at `rate` while the worker that serves it rates `steady_rate` fresh CDRs/s,
    produced from the benchmark process from before the warm-up to the window's end."""
    batch = Settings.from_env({}).batch_max
    async with rater_on_stack(partitions, None, batch, jwt_env, data) as (deployment, store):
        dsettings = deployment.settings
        bootstrap, rated = dsettings.kafka_bootstrap, dsettings.topics.rated
        windows = 2 if flame is not None else 1
        records = steady_records(data, int(steady_rate * windows * (seconds + WARMUP_S + 30)))
        worker = probed_worker(deployment).start(wait_ready=True)
        assert worker.process is not None
        probe = await kafka_io.offsets_probe(bootstrap, [rated])
        stop = asyncio.Event()
        producing = asyncio.ensure_future(steady_produce(
            bootstrap, dsettings.topics.cdr, records, steady_rate, stop))
        try:
            path = targets_writer(build, worker.url, data, token)
            await asyncio.sleep(2.0)  # rating under way and settled before the warm-up
            window = Window(worker.process.pid, worker.url)
            before = (await kafka_io.end_offsets(probe, [rated]))[rated]
            started = time.monotonic()
            result = await window.run(path, rate, seconds, f"{deployment.name}-beside", store)
            elapsed = time.monotonic() - started
            after = (await kafka_io.end_offsets(probe, [rated]))[rated]
            # the warm-up is inside [before, after]: the rate is over both
            result["rating_cdrs_per_s"] = round((after - before) / elapsed)
            result["steady_rate"] = steady_rate
            if flame is not None:
                drawn = await window.run_profiled(flame, path, rate, seconds,
                                                  f"{deployment.name}-flame", store)
                if drawn:
                    result["flame_graph"] = drawn
        finally:
            stop.set()
            await producing
            worker.stop()
            await probe.stop()
    return result


async def _bare(data: DataSet, partitions: int, rates: Sequence[float],
                seconds: float) -> dict[str, Any]:
    """The same load shape on a bare handler (no auth, no Redis) on the same web stack."""
    out: dict[str, Any] = {}
    port = free_port()
    app_id = run_id("w")
    idle = f"{app_id}.idle"
    bootstrap = Settings.from_env().kafka_bootstrap
    await kafka_io.create_topics(bootstrap, [idle], 1)
    process = procs.spawn([sys.executable, "-m", "benchmarks.bare_web"],
                          bench_env(BENCH_APP_ID=app_id, BENCH_WEB_PORT=str(port),
                                    BENCH_IDLE_TOPIC=idle),
                          LOGS / f"{app_id}.log")
    try:
        procs.wait_port(port, 60, process)
        await asyncio.sleep(3.0)  # past Faust's start-up (rebalance) before loading it
        path = targets_writer(bare_targets, f"http://127.0.0.1:{port}", data, "")
        window = Window(process.pid)
        for rate in rates:
            out[f"alone_{rate:.0f}"] = await window.run(path, rate, seconds,
                                                        f"{app_id}-{rate:.0f}")
    finally:
        procs.stop(process)
        await kafka_io.delete_topics(bootstrap, app_id)
        drop_faust_datadir(app_id)
    return out
