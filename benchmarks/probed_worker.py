"""`rater worker` with measuring probes, for phase f (benchmark only; never in production).

`python -m benchmarks.probed_worker` runs exactly the worker `rater worker` runs, plus:

* an event-loop lag probe: a task that sleeps `LAG_INTERVAL_S` and records how late it
  woke up; what any request arriving at that instant waited before the loop saw it;
* every callback the event loop runs is timed (`asyncio.Handle._run`), so the longest
  synchronous segments are known with the task they belong to (e.g. the CDR consumer's
  `_consume`, aiohttp's request handler), with the loop's busy share;
* garbage-collector pauses, by generation;
* per authorize request, where its time in the worker went (`_split_requests`), and that
  split for the slowest 1 %;
* the rating batch's CPU steps (`CdrBatchRater.prepare`, `finish`) and their sizes; the
  rating script call (`RedisStore.send_rating`) and the authorize's Redis read
  (`RedisStore.snapshot`) as the worker awaits them, and `RaterApi.authorize` whole.

`GET /bench/probe` answers the figures since the last `GET /bench/probe?reset=1`.
The cost, measured on an idle worker: about 0.02 of a core more than `rater worker` (the
lag probe's wake-ups), plus two clock reads per callback (about 1 % of a core at 15,000
callbacks/s).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
import time
from array import array
from asyncio import events
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

LAG_INTERVAL_S = 0.005  # 200 wake-ups a second (at 2 ms the probe cost 0.05 of a core)
SEGMENT_S = 0.002  # callbacks at least this long are named and kept
MAX_VALUES = 400_000  # per series: bounded memory however long a window runs
TOP_SEGMENTS = 12


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    ordered = sorted(values)
    n = len(ordered)

    def at(q: float) -> float | None:
        return round(ordered[min(n - 1, int(q * n))], 3) if n else None

    return {"n": n, "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999),
            "max": round(ordered[-1], 3) if n else None}


class Probe:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.since = time.monotonic()
        self.busy_s = 0.0
        self.callbacks = 0
        # arrays, not lists: the garbage collector does not walk them, so the probe's own
        # figures do not lengthen the full collections it measures
        self.series: dict[str, array[float]] = {}
        self.segments: dict[str, list[float]] = {}  # name -> [count, total ms, max ms]

    def add(self, name: str, value: float) -> None:
        values = self.series.get(name)
        if values is None:
            values = self.series[name] = array("d")
        if len(values) < MAX_VALUES:
            values.append(value)

    def segment(self, callback: Any, seconds: float) -> None:
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, asyncio.Task):
            coro = owner.get_coro()
            name = getattr(coro, "__qualname__", None) or type(coro).__name__
        else:
            name = getattr(callback, "__qualname__", None) or type(callback).__name__
        ms = seconds * 1000
        entry = self.segments.setdefault(name, [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += ms
        entry[2] = max(entry[2], ms)
        self.add("segment_ms", ms)

    def report(self) -> dict[str, Any]:
        span = max(time.monotonic() - self.since, 1e-6)
        top = sorted(self.segments.items(), key=lambda kv: -kv[1][1])[:TOP_SEGMENTS]
        return {
            "seconds": round(span, 2),
            "loop_busy_share": round(self.busy_s / span, 3),
            "callbacks_per_s": round(self.callbacks / span),
            "series_ms": {name: percentiles(v) for name, v in sorted(self.series.items())},
            "slowest_1pct_requests": split_of_slowest(self.series),
            f"segments_over_{SEGMENT_S * 1000:.0f}ms": {
                name: {"count": int(c), "total_ms": round(t, 1), "max_ms": round(m, 2)}
                for name, (c, t, m) in top},
        }


PROBE = Probe()


def _time_callbacks() -> None:
    """Every event-loop callback timed: `Handle._run` is where asyncio runs them all."""
    original = events.Handle._run
    clock = time.perf_counter
    threshold = SEGMENT_S

    def timed_run(handle: events.Handle) -> None:
        started = clock()
        try:
            original(handle)
        finally:
            elapsed = clock() - started
            PROBE.busy_s += elapsed
            PROBE.callbacks += 1
            if elapsed >= threshold:
                PROBE.segment(handle._callback, elapsed)  # type: ignore[attr-defined]

    setattr(events.Handle, "_run", timed_run)  # noqa: B010 (a patch, typed loosely)


def _timed_sync(owner: Any, name: str, series: str,
                size: Callable[[Any, Any], int] | None = None) -> None:
    original = getattr(owner, name)

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = original(self, *args, **kwargs)
        PROBE.add(series, (time.perf_counter() - started) * 1000)
        if size is not None:
            PROBE.add(series + "_size", size(args, result))
        return result

    setattr(owner, name, timed)


def _timed_steps(owner: Any, name: str, series: str,
                 size: Callable[[Any], int] | None = None) -> None:
    """A stepped computation (a generator whose value is the result): each step between
    two pauses is `<series>_step`, their sum `<series>` (the CPU of the whole batch)."""
    original = getattr(owner, name)

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        inner = original(self, *args, **kwargs)
        if size is not None:
            PROBE.add(series + "_size", size(args))
        total = 0.0
        while True:
            started = time.perf_counter()
            try:
                next(inner)
            except StopIteration as done:
                total += time.perf_counter() - started
                PROBE.add(series + "_step", (time.perf_counter() - started) * 1000)
                PROBE.add(series, total * 1000)
                return done.value
            elapsed = time.perf_counter() - started
            total += elapsed
            PROBE.add(series + "_step", elapsed * 1000)
            yield

    setattr(owner, name, timed)


def _timed_async(owner: Any, name: str, series: str) -> None:
    original = getattr(owner, name)

    async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(self, *args, **kwargs)
        finally:
            elapsed = time.perf_counter() - started
            PROBE.add(series, elapsed * 1000)
            parts = _REQUEST.get()
            if parts is not None and series.startswith("redis_"):
                parts["redis"] += elapsed

    setattr(owner, name, timed)


def _time_collections() -> None:
    """Garbage-collector pauses: they stall whatever callback happens to allocate."""
    import gc

    started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            PROBE.add(f"gc_gen{info.get('generation', 0)}",
                      (time.perf_counter() - started[0]) * 1000)

    gc.callbacks.append(on_gc)


_REQUEST: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
    "bench_request", default=None)


def _split_requests(path: str) -> None:
    """Where each request to `path` spent its time inside the worker, per request: from the
    moment the event loop read its bytes (`data_received`) to the handler's start (queued
    behind other ready work), the handler's await of its Redis read, and the rest (the
    handler's own CPU, stalls while it ran, writing the answer). The lag before the loop
    read the bytes is the loop-lag probe's. aiohttp's protocol has slots: the arrival
    stamps live in a dict keyed by the connection."""
    from aiohttp import web_protocol

    arrivals: dict[Any, float] = {}
    received = web_protocol.RequestHandler.data_received
    handle = web_protocol.RequestHandler._handle_request

    def data_received(self: Any, data: bytes) -> None:
        if len(arrivals) > 10_000:
            arrivals.clear()
        arrivals[self] = time.perf_counter()
        received(self, data)

    async def handle_request(self: Any, request: Any, *args: Any) -> Any:
        if request.path != path:
            return await handle(self, request, *args)
        started = time.perf_counter()
        arrived = arrivals.pop(self, started)
        parts = {"redis": 0.0}
        _REQUEST.set(parts)
        try:
            return await handle(self, request, *args)
        finally:
            ended = time.perf_counter()
            PROBE.add("request_in_worker", (ended - arrived) * 1000)
            PROBE.add("request_queued", (started - arrived) * 1000)
            PROBE.add("request_redis", parts["redis"] * 1000)
            PROBE.add("request_rest", (ended - started - parts["redis"]) * 1000)

    setattr(web_protocol.RequestHandler, "data_received", data_received)  # noqa: B010
    setattr(web_protocol.RequestHandler, "_handle_request", handle_request)  # noqa: B010


def split_of_slowest(series: dict[str, array[float]], share: float = 0.01
                     ) -> dict[str, float | int] | None:
    """The slowest `share` of requests (by time in the worker): mean ms of each part."""
    total = series.get("request_in_worker")
    if not total:
        return None
    order = sorted(range(len(total)), key=total.__getitem__, reverse=True)
    slow = order[:max(1, int(len(order) * share))]
    out: dict[str, float | int] = {"requests": len(slow)}
    for part in ("in_worker", "queued", "redis", "rest"):
        values = series.get(f"request_{part}")
        if values and len(values) == len(total):
            out[f"{part}_ms"] = round(sum(values[i] for i in slow) / len(slow), 2)
    return out


async def _lag_probe() -> None:
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + LAG_INTERVAL_S
        await asyncio.sleep(LAG_INTERVAL_S)
        PROBE.add("loop_lag", max(0.0, loop.time() - due) * 1000)


def install(app: Any) -> None:
    import faust
    import orjson

    from rater.service.rating import CdrBatchRater
    from rater.store import RedisStore
    from rater.web.api import RaterApi

    _time_callbacks()
    _time_collections()
    if hasattr(CdrBatchRater, "prepare_steps"):  # the consumer runs the batch in steps
        _timed_steps(CdrBatchRater, "prepare_steps", "rating_prepare", lambda args: len(args[0]))
        _timed_steps(CdrBatchRater, "finish_steps", "rating_finish")
    else:  # a rater from before the steps (BENCH_RATER_SOURCE): one segment each
        _timed_sync(CdrBatchRater, "prepare", "rating_prepare", lambda args, _: len(args[0]))
        _timed_sync(CdrBatchRater, "finish", "rating_finish")
    _timed_async(RedisStore, "send_rating", "redis_rating_call")
    _timed_async(RedisStore, "snapshot", "redis_snapshot_call")
    _timed_async(RaterApi, "authorize", "authorize_handler")
    _split_requests("/v1/authorize")
    app.task(_lag_probe)

    @app.page("/bench/probe")
    class ProbeView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any) -> Any:
            body = orjson.dumps(PROBE.report())
            if request.query.get("reset"):
                PROBE.reset()
            return self.bytes(body, content_type="application/json")


def _rater_from(source: str) -> None:
    """Import the `rater` package from `source` instead of this checkout (the editable
    install's finder comes before PYTHONPATH, so the package is loaded by hand)."""
    import importlib.util

    root = Path(source).resolve() / "rater"
    spec = importlib.util.spec_from_file_location(
        "rater", root / "__init__.py", submodule_search_locations=[str(root)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["rater"] = module
    spec.loader.exec_module(module)


def main() -> int:
    source = os.environ.get("BENCH_RATER_SOURCE")
    if source:
        _rater_from(source)
    from rater.cli import main as rater_main
    from rater.config import ConfigError

    try:
        from rater.app import app
    except ConfigError as exc:
        print(f"rater: {exc}", file=sys.stderr)
        return 2
    install(app)
    return rater_main(["worker"])


if __name__ == "__main__":
    sys.exit(main())
