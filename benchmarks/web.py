"""(f) POST /v1/authorize under a fixed open-loop rate from a separate process, beside a
bare handler on the same web stack (Faust view on aiohttp), in the same run; then the same
load on a worker that is rating a backlog of CDRs meanwhile (same Redis, same cores)."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks import kafka_io, procs
from benchmarks.data import DataSet, fresh_cdrs
from benchmarks.pipeline import (
    LOGS,
    bench_env,
    drop_faust_datadir,
    paced_produce,
    rater_on_stack,
    run_id,
)
from rater.config import Settings
from tests.integration.harness import Worker, free_port

SECRET = "benchmark-only-hs256-secret-0123456789abcdef"
STEADY_CDR_RATE = 5000.0  # CDRs/s beside the authorize load: well below the rating peak
ISSUER, AUDIENCE = "rater-bench", "rater"


def attempt_bodies(data: DataSet, path: Path, count: int = 5000, seed: int = 3) -> Path:
    rnd = random.Random(seed)
    lines = []
    for i in range(count):
        sub = data.subscriptions[rnd.randrange(len(data.subscriptions))]
        lines.append(orjson.dumps({
            "attempt_id": f"att-{i:06d}", "subscription_id": sub["subscription_id"],
            "user_id": f"user-{rnd.randrange(4)}",
            "direction": "outbound" if rnd.random() < 0.9 else "inbound",
            "zone": "domestic" if rnd.random() < 0.8 else "international",
        }))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


async def load(url: str, bodies: Path, rate: float, seconds: float, token: str = "") -> Any:
    args = [sys.executable, "-m", "benchmarks.loadgen", "--url", url, "--bodies", str(bodies),
            "--rate", str(rate), "--seconds", str(seconds)]
    if token:
        args += ["--token", token]
    process = await asyncio.create_subprocess_exec(
        *args, env=bench_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=seconds + 90)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"loadgen failed: {err.decode()[-2000:]}")
    return orjson.loads(out.splitlines()[-1])


async def authorize_under_load(data: DataSet, partitions: int, rate: float,
                               seconds: float, flame: Path | None = None) -> dict[str, Any]:
    from rater.web.tokens import issue_token

    result: dict[str, Any] = {}
    bodies = attempt_bodies(data, LOGS / "authorize-bodies.jsonl")
    jwt_env = {"RATER_JWT_ALGORITHM": "HS256", "RATER_JWT_KEY": SECRET,
               "RATER_JWT_ISSUER": ISSUER, "RATER_JWT_AUDIENCE": AUDIENCE}
    batch = Settings.from_env({}).batch_max
    async with rater_on_stack(partitions, None, batch, jwt_env, data) as (deployment, _):
        token = issue_token(SECRET, subject="bench-authorizer", scope="call_authorizer",
                            issuer=ISSUER, audience=AUDIENCE, algorithm="HS256",
                            expires_in=3600)
        worker = Worker(deployment).start(wait_ready=True)
        assert worker.process is not None
        profiler = procs.Profiler(worker.process.pid, flame) if flame else None
        timeline = procs.CpuTimeline(worker.process.pid)
        try:
            started = time.time()
            result["authorize"] = await load(f"{worker.url}/v1/authorize", bodies, rate,
                                             seconds, token)
            timeline.sample()
            result["authorize"]["cpu_shares"] = timeline.shares(started, time.time())
            if flame is not None:
                result["authorize"]["flame_graph"] = flame.name
        finally:
            if profiler:
                profiler.finish()
            worker.stop()
    for key, api_only, steady in (("while_rating", False, None),
                                  ("api_worker_while_rating", True, None),
                                  ("while_rating_steady", False, STEADY_CDR_RATE)):
        result[key] = await _while_rating(partitions, jwt_env, data, bodies, rate, seconds,
                                          token, api_only, steady)
    port = free_port()
    app_id = run_id("w")
    idle = f"{app_id}.idle"
    bootstrap = deployment.settings.kafka_bootstrap
    await kafka_io.create_topics(bootstrap, [idle], 1)
    process = procs.spawn([sys.executable, "-m", "benchmarks.bare_web"],
                          bench_env(BENCH_APP_ID=app_id, BENCH_WEB_PORT=str(port),
                                    BENCH_IDLE_TOPIC=idle),
                          LOGS / f"{app_id}.log")
    try:
        procs.wait_port(port, 60, process)
        await asyncio.sleep(3.0)  # past Faust's start-up (rebalance) before loading it
        result["bare"] = await load(f"http://127.0.0.1:{port}/bare", bodies, rate, seconds)
    finally:
        procs.stop(process)
        await kafka_io.delete_topics(bootstrap, app_id)
        drop_faust_datadir(app_id)
    return result


async def _while_rating(partitions: int, jwt_env: dict[str, str], data: DataSet,
                        bodies: Path, rate: float, seconds: float, token: str,
                        api_only: bool = False,
                        steady_rate: float | None = None) -> dict[str, Any]:
    """The authorize load while CDRs are rated: the data set twice over (new CDRs, then
    their replays) as a backlog, by the worker that serves the load itself or
    (`api_only`) by a second worker beside one started with RATER_CDR_CONSUMER=off; or
    (`steady_rate`) fresh CDRs produced at that rate during the window, rated by the
    worker that serves the load. With the CDRs rated during the load's window."""
    batch = Settings.from_env({}).batch_max
    async with rater_on_stack(partitions, None, batch, jwt_env, data) as (deployment, _):
        dsettings = deployment.settings
        bootstrap, rated = dsettings.kafka_bootstrap, dsettings.topics.rated
        workers: list[Worker] = []
        probe = None
        try:
            if steady_rate is None:
                await kafka_io.produce_all(bootstrap, dsettings.topics.cdr, data.records * 2)
            probe = await kafka_io.offsets_probe(bootstrap, [rated])
            if api_only:
                workers.append(Worker(deployment, RATER_CDR_CONSUMER="off").start(wait_ready=True))
            workers.append(Worker(deployment).start(wait_ready=True))
            before = (await kafka_io.end_offsets(probe, [rated]))[rated]
            started = time.monotonic()
            authorize = load(f"{workers[0].url}/v1/authorize", bodies, rate, seconds, token)
            if steady_rate is None:
                result: dict[str, Any] = await authorize
            else:
                source = fresh_cdrs(data.subscriptions, seed=7, prefix="web-")
                result, _ = await asyncio.gather(authorize, paced_produce(
                    bootstrap, dsettings.topics.cdr, source, steady_rate, seconds))
            window = time.monotonic() - started
            after = (await kafka_io.end_offsets(probe, [rated]))[rated]
            result["cdrs_rated_in_window"] = after - before
            result["rating_cdrs_per_s"] = round((after - before) / window)
            if steady_rate is None:  # still rating when the load ended: the backlog outlasted it
                result["rating_throughout"] = after < 2 * data.valid
            else:
                result["steady_rate"] = steady_rate
        finally:
            for worker in workers:
                worker.stop()
            if probe is not None:
                await probe.stop()
    return result
