"""`python -m benchmarks` (make bench): every figure of issue 7 in one bounded run.

Phases (all on one generated data set, each with its own topics / key prefix):
  a  Redis rating step alone: one Lua call per batch vs one call per CDR; the whole
     in-process rating step (decode + Redis + output records) by batch size (PNG)
  b  bare aiokafka consume -> orjson decode -> produce (the limit)
  c  bare Faust agent doing the same (the framework's floor)
  d  the rater end to end, `rater worker` subprocess, per CDR-consumer mode; flame graphs
  e  end-to-end latency at half the measured peak, paced
  f  POST /v1/authorize at fixed rates (vegeta) alone and beside steady rating of CDRs by
     the same worker, with where the time went; a bare handler as the baseline
  g  Redis bytes per rated CDR after rating --memory-cdrs CDRs
  h  worker RSS over a soak of --soak-s seconds
  i  the call history: the sink's lag while the worker rates flat out; the calls query
     over --history-calls calls of one subscription (first and deep pages, user filter);
     a 100,000-row CSV export's memory (benchmarks/history.py)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from benchmarks import data as datagen
from benchmarks import pipeline, redis_step
from rater.config import Settings

RESULTS = Path(__file__).resolve().parent / "results"
PHASES = "abcdefghi"
SWEEP = (1, 10, 50, 100, 250, 500, 1000, 2000)


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    return {"nproc": os.cpu_count(), "cpu_model": model, "ram_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "kernel": platform.release()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cdrs", type=int, default=200_000, help="records in the data set")
    p.add_argument("--subs", type=int, default=10_000, help="subscriptions")
    p.add_argument("--quick", action="store_true",
                   help="smoke sizes: 20k CDRs, 2k subscriptions, short phases")
    p.add_argument("--phases", default=PHASES, help="subset of letters a-h to run")
    p.add_argument("--modes", default="faust,direct",
                   help="CDR-consumer modes for phase d (RATER_CDR_CONSUMER values)")
    p.add_argument("--batch", type=int, default=Settings.from_env({}).batch_max,
                   help="RATER_BATCH_MAX for the rater (default: the rater's own)")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--memory-cdrs", type=int, default=1_000_000)
    p.add_argument("--latency-s", type=float, default=15.0)
    p.add_argument("--soak-s", type=float, default=60.0)
    p.add_argument("--soak-rate", type=float, default=2000.0)
    p.add_argument("--web-rates", default="1000,2000",
                   help="f: requests/s of the windows with the endpoint on its own")
    p.add_argument("--web-beside-rate", type=float, default=1000.0,
                   help="f: requests/s beside steady rating")
    p.add_argument("--steady-cdr-rate", type=float, default=5000.0,
                   help="f: CDRs/s the same worker rates meanwhile")
    p.add_argument("--web-s", type=float, default=10.0)
    p.add_argument("--history-rate", type=float, default=4000.0,
                   help="phase i: the steady CDR rate the sink's lag is watched at")
    p.add_argument("--history-calls", type=int, default=1_000_000,
                   help="phase i: calls of one subscription in the history table")
    p.add_argument("--f-windows", default="alone,beside,bare",
                   help="f: which windows run (alone, beside, bare)")
    p.add_argument("--no-flame", action="store_true", help="skip py-spy flame graphs")
    p.add_argument("--name", default=None, help="result file name (default: UTC time)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if args.quick:
        args.cdrs, args.subs = min(args.cdrs, 20_000), min(args.subs, 2_000)
        args.memory_cdrs = min(args.memory_cdrs, 100_000)
        args.latency_s, args.soak_s, args.web_s = 5.0, min(args.soak_s, 10.0), 5.0
        args.history_calls = min(args.history_calls, 200_000)
    if args.cdrs < 1000 or args.subs < 10:
        p.error("--cdrs must be >= 1000 and --subs >= 10")
    if not set(args.phases) <= set(PHASES):
        p.error(f"--phases takes letters of {PHASES}")
    if not 200_000 <= args.history_calls <= 5_000_000:
        p.error("--history-calls must be 200000..5000000")
    if args.soak_s > 3600 or args.latency_s > 600 or args.web_s > 600:
        p.error("phases are bounded: --soak-s <= 3600, --latency-s/--web-s <= 600")
    try:
        args.web_rates = [float(r) for r in str(args.web_rates).split(",") if r]
    except ValueError:
        p.error("--web-rates takes rates separated by commas, e.g. 1000,2000")
    if not all(0 < r <= 20_000 for r in [*args.web_rates, args.web_beside_rate]) \
            or not 0 < args.steady_cdr_rate <= 50_000:
        p.error("request rates must be in (0, 20000], --steady-cdr-rate in (0, 50000]")
    args.name = args.name or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return args


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def phase_a(settings: Settings, data: datagen.DataSet, args: argparse.Namespace,
                  out: dict[str, Any]) -> redis_step.StepResult:
    inputs = redis_step.decoded_inputs(data)
    figures: dict[str, Any] = {"cdrs": len(inputs)}

    async def fresh(fn: Any) -> Any:
        prefix = f"bench-a-{uuid.uuid4().hex[:8]}"
        store = redis_step.store_for(settings, prefix)
        try:
            await redis_step.load_subscriptions(store, data.subscriptions)
            return await fn(store)
        finally:
            await redis_step.delete_prefix(store.client, prefix)
            await store.close()

    figures["lua_batch_500"] = round(await fresh(
        lambda s: redis_step.redis_batched(s, inputs, 500, settings)))
    figures["lua_per_cdr_pipelined"] = round(await fresh(
        lambda s: redis_step.redis_per_cdr(s, inputs, 500, settings)))
    say(f"a: Lua batch {figures['lua_batch_500']}/s, per CDR {figures['lua_per_cdr_pipelined']}/s")
    step: redis_step.StepResult = await fresh(
        lambda s: redis_step.rating_step(s, settings, data, args.batch, keep=True))
    figures["rating_step"] = round(step.rate)
    say(f"a: in-process rating step (decode+Redis+records) {step.rate:.0f}/s")
    sweep: dict[str, dict[int, float]] = {"rating_step": {}, "lua_only": {}}
    sub = data.records[: min(len(data.records), 20_000)]
    small = datagen.DataSet(data.subscriptions, sub, data.now_ms)
    small_inputs = redis_step.decoded_inputs(small)
    for size in SWEEP:
        n = len(sub) if size >= 50 else min(len(sub), 2000 * max(size, 1))
        part = datagen.DataSet(data.subscriptions, sub[:n], data.now_ms)
        res = await fresh(lambda s, p=part, b=size: redis_step.rating_step(s, settings, p, b))
        sweep["rating_step"][size] = round(res.rate)
        sweep["lua_only"][size] = round(await fresh(
            lambda s, b=size, k=n: redis_step.redis_batched(s, small_inputs[:k], b, settings)))
    figures["batch_sweep"] = sweep
    out["a_redis_step"] = figures
    return step


def plot_sweep(sweep: dict[str, Any], e2e: dict[int, float], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, label in (("lua_only", "Redis Lua step only (RedisStore.rate_batch)"),
                        ("rating_step", "in-process rating step (decode + Redis + records)")):
        points = sorted((int(k), v) for k, v in sweep[name].items())
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    if e2e:
        points = sorted(e2e.items())
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="s",
                label="rater end to end (Kafka -> worker -> Kafka)")
    ax.set_xscale("log")
    ax.set_xlabel("batch size (CDRs per Lua call / RATER_BATCH_MAX)")
    ax.set_ylabel("CDRs/s")
    ax.set_title("Rating throughput vs batch size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def cpu_line(shares: dict[str, float]) -> str:
    return " / ".join(f"{shares.get(k, 0):.2f}" for k in ("process", "kafka", "redis",
                                                          "other_cores"))


def _ms(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def window_rows(label: str, w: dict[str, Any], goal: float | None) -> list[tuple[str, str, str]]:
    """One fixed-rate window of phase f: latency, then every process's CPU, then (probed
    workers) where the time went inside the worker and in Redis."""
    met = ""
    if goal is not None and w.get("p99_ms") is not None:
        met = f"  [goal p99 <= {goal:.0f} ms: {'met' if w['p99_ms'] <= goal else 'NOT met'}]"
    bad = {k: v for k, v in w.get("statuses", {}).items() if k != "200"}
    rows = [("f", f"{label}: achieved, p50 / p90 / p99 / max",
             f"{w['achieved_rate']:,.0f}/s of {w['target_rate']:,.0f}, {_ms(w['p50_ms'], 2)} / "
             f"{_ms(w['p90_ms'], 2)} / {_ms(w['p99_ms'], 2)} / {_ms(w['max_ms'])} ms{met}"
             + (f"; not 200: {bad}" if bad else ""))]
    for kind, k in (w.get("by_kind") or {}).items():
        rows.append(("f", f"  {kind}: count, p50 / p99 / max",
                     f"{k['ok']:,}, {_ms(k['p50_ms'], 2)} / {_ms(k['p99_ms'], 2)} / "
                     f"{_ms(k['max_ms'])} ms"))
    if "rating_cdrs_per_s" in w:
        rows.append(("f", "  CDRs rated meanwhile (same worker)",
                     f"{w['rating_cdrs_per_s']:,}/s of {w['steady_rate']:,.0f}"))
    c = w.get("cpu_shares") or {}
    rows.append(("f", "  CPU cores: worker / loadgen / Redis / Kafka / bench / other",
                 " / ".join(f"{c.get(k, 0):.2f}" for k in
                            ("process", "loadgen", "redis", "kafka", "bench", "other_cores"))
                 + f" (busy {c.get('machine_busy_cores', 0):.2f} of "
                 f"{c.get('machine_cores', 0):.2f})"))
    rows.append(("f", "  run-queue wait: worker / Redis; machine CPU pressure",
                 f"{c.get('process_run_queue_wait', 0):.1%} / "
                 f"{c.get('redis_run_queue_wait', 0):.1%}; {c.get('cpu_pressure', 0):.1%} "
                 "of the window"))
    probe = w.get("worker_probe")
    if probe:
        series = probe["series_ms"]
        lag = series.get("loop_lag", {})
        seg = series.get("segment_ms", {})
        rows.append(("f", "  worker loop lag p50 / p99 / max; loop busy",
                     f"{_ms(lag.get('p50'), 2)} / {_ms(lag.get('p99'), 2)} / "
                     f"{_ms(lag.get('max'))} ms; {probe['loop_busy_share']:.0%}"))
        named = next((v for k, v in probe.items() if k.startswith("segments_over")), {})
        top = ", ".join(f"{name} {v['count']}x max {v['max_ms']:.1f}"
                        for name, v in list(named.items())[:3])
        rows.append(("f", "  loop segments >= 2 ms: count, max; the largest owners",
                     f"{seg.get('n', 0)}, {_ms(seg.get('max'))} ms; {top or '-'}"))
        slow = probe.get("slowest_1pct_requests")
        inside = series.get("request_in_worker")
        if slow and inside and inside.get("n"):
            rows.append(("f", "  request in worker p50 / p99 / max (read to answer)",
                         f"{_ms(inside['p50'], 2)} / {_ms(inside['p99'], 2)} / "
                         f"{_ms(inside['max'])} ms"))
            rows.append(("f", "  its slowest 1 %: queued + Redis read + rest = in worker",
                         f"{_ms(slow.get('queued_ms'))} + {_ms(slow.get('redis_ms'))} + "
                         f"{_ms(slow.get('rest_ms'))} = {_ms(slow.get('in_worker_ms'))} ms"))
        for key, text in (("authorize_handler", "authorize handler in worker"),
                          ("redis_snapshot_call", "its Redis read, as awaited"),
                          ("rating_prepare", "rating batch prepare (CPU)"),
                          ("rating_finish", "rating batch finish (CPU)"),
                          ("rating_prepare_step", "  its longest steps: prepare"),
                          ("rating_finish_step", "  its longest steps: finish"),
                          ("redis_rating_call", "rating script call, as awaited")):
            v = series.get(key)
            if v and v.get("n"):
                rows.append(("f", f"  {text} p50 / p99 / max",
                             f"{_ms(v['p50'], 2)} / {_ms(v['p99'], 2)} / {_ms(v['max'])} ms "
                             f"({v['n']:,})"))
        gcs = [(k, v) for k, v in series.items() if k.startswith("gc_gen") and v.get("n")]
        if gcs:
            rows.append(("f", "  GC pauses by generation: count, max",
                         ", ".join(f"{k[2:]} {v['n']}x {_ms(v['max'], 2)} ms" for k, v in gcs)))
        size = series.get("rating_prepare_size")
        if size and size.get("n"):
            rows.append(("f", "  rating batch size p50 / max",
                         f"{size['p50']:.0f} / {size['max']:.0f} CDRs"))
    ping = w.get("redis_ping_ms")
    if ping:
        rows.append(("f", "  Redis PING from an idle process p50 / p99 / max",
                     f"{_ms(ping['p50'], 2)} / {_ms(ping['p99'], 2)} / {_ms(ping['max'])} ms"))
    ev = w.get("redis_evalsha")
    if ev and ev.get("calls"):
        rows.append(("f", "  Redis scripts: calls, mean, p99 / max under, busy",
                     f"{ev['calls']:,}, {ev['usec_per_call']:.0f} us, "
                     f"{ev.get('p99_us_under') or 0:,} / {ev.get('max_us_under') or 0:,} us, "
                     f"{ev['busy_share']:.1%}"))
    fs = w.get("redis_fsync_ms_per_second_max")
    if fs is not None:
        rows.append(("f", "  Redis AOF fsync >= 1 ms: seconds with one, worst",
                     f"{len(fs)} of {w['window_s']:.0f}, {max(fs) if fs else 0} ms"))
    return rows


def f_rows(f: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    if not f:
        return []
    rows: list[tuple[str, str, str]] = []
    goals = f.get("goals_p99_ms", {})
    for name, load in f.get("loads", {}).items():
        for key, w in load.items():
            if not isinstance(w, dict):
                continue
            if key.startswith("alone_"):
                rows += window_rows(f"{name} alone @ {w['target_rate']:.0f}/s", w,
                                    goals.get("alone") if key == "alone_1000" else None)
            elif key.startswith("beside_"):
                rows += window_rows(f"{name} @ {w['target_rate']:.0f}/s beside "
                                    f"{w['steady_rate']:.0f} CDRs/s", w, goals.get("beside"))
    for w in (f.get("bare") or {}).values():
        rows += window_rows(f"bare handler, same web stack @ {w['target_rate']:.0f}/s", w, None)
    return rows


def table(res: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []
    a = res.get("a_redis_step")
    if a:
        rows += [("a", "Redis step: one Lua call per 500 CDRs", fmt(a["lua_batch_500"], " CDR/s")),
                 ("a", "Redis step: one Lua call per CDR (pipelined)",
                  fmt(a["lua_per_cdr_pipelined"], " CDR/s")),
                 ("a", "in-process rating step (decode+Redis+records)",
                  fmt(a["rating_step"], " CDR/s"))]
    for key, label, name in (("b_passthrough", "b", "bare aiokafka consume->decode->produce"),
                             ("c_faust_floor", "c", "bare Faust agent (same work)")):
        if key in res:
            rows.append((label, name, fmt(res[key]["cdrs_per_s"], " rec/s")))
            shares = res[key].get("cpu_shares")
            if shares:
                rows.append((label, "  CPU cores: process / Kafka / Redis / other",
                             cpu_line(shares)))
    for mode, d in res.get("d_rater", {}).items():
        rows.append(("d", f"rater end to end, RATER_CDR_CONSUMER={mode}",
                     fmt(d["cdrs_per_s"], " CDR/s")))
        shares = d.get("cpu_shares")
        if shares:
            rows.append(("d", "  CPU cores: worker / Kafka / Redis / other",
                         cpu_line(shares)))
            rate = d["cdrs_per_s"] or 1
            rows.append(("d", "  CPU per CDR: worker / Redis",
                         f"{shares.get('process', 0) / rate * 1e6:.0f} / "
                         f"{shares.get('redis', 0) / rate * 1e6:.0f} us"))
        if "ratio_to_passthrough" in d:
            rows.append(("d", f"  ratio d/b ({mode})", f"{d['ratio_to_passthrough']:.2f}"))
        if "ratio_to_faust_floor" in d:
            rows.append(("d", f"  ratio d/c ({mode})", f"{d['ratio_to_faust_floor']:.2f}"))
    e = res.get("e_latency")
    if e:
        lat = e["latency"]
        rows.append(("e", f"latency at {lat['rate_per_s']:.0f}/s ({e['mode']}): rated p50/p99",
                     f"{lat['rated']['p50_ms']:.0f} / {lat['rated']['p99_ms']:.0f} ms"))
        if lat["charge"]["n"]:
            rows.append(("e", "  charge p50/p99",
                         f"{lat['charge']['p50_ms']:.0f} / {lat['charge']['p99_ms']:.0f} ms"))
    for algorithm, check in (res.get("f_token_check") or {}).items():
        if isinstance(check, dict):
            rows.append(("f", f"bearer-token check {algorithm}: first / remembered p50, p99",
                         f"{check['first']['p50_us']:.0f}, {check['first']['p99_us']:.0f} / "
                         f"{check['remembered']['p50_us']:.1f}, "
                         f"{check['remembered']['p99_us']:.1f} us"))
    rows += f_rows(res.get("f_authorize"))
    g = res.get("g_memory")
    if g:
        rows.append(("g", f"Redis bytes per rated CDR ({g['cdrs']:,} CDRs)",
                     f"{g['bytes_per_cdr']:.0f} B (dedupe {g['bytes_per_cdr_dedupe']:.0f}"
                     f" + counters {g['bytes_per_cdr_counters']:.0f})"))
    h = res.get("h_soak")
    if h:
        rows.append(("h", f"worker RSS over {h['seconds']:.0f}s soak @ {h['rate_per_s']:.0f}/s",
                     f"{h['rss_start_mb']} -> {h['rss_end_mb']} MB (max {h['rss_max_mb']})"))
    i = res.get("i_history")
    if i:
        for sink in i["sinks"]:
            rows.append(("i", f"sink {sink['sink']}: rating CDR/s, max sink lag",
                         f"{sink['rating_cdrs_per_s']:,}/s, {sink['max_lag_records']:,} records "
                         f"({sink['max_lag_share_of_output']:.0%} of the output)"))
            rows.append(("i", "  sink rows/s, caught up after rating ended",
                         f"{sink['sink_rows_per_s']:,}/s, {sink['catch_up_after_rating_s']} s"))
            rows.append(("i", "  CPU cores: worker / the rest of the machine",
                         f"{sink['cpu_shares'].get('process', 0):.2f} / "
                         f"{sink['cpu_shares'].get('other_cores', 0):.2f}"))
        steady = i["steady"]
        rows.append(("i", f"sink inside the worker at {steady['rate_per_s']:,.0f} CDR/s for "
                          f"{steady['seconds']:.0f} s: max lag, 2nd half",
                     f"{steady['max_lag_records']:,} / {steady['max_lag_second_half']:,} records,"
                     f" zero {steady['drained_after_s']} s after"))
        q = i["query"]
        for key, label in (("first_page", "first page"), ("deep_pages", "deep pages (cursor)"),
                           ("first_page_user", "first page, user filter"),
                           ("deep_pages_user", "deep pages, user filter")):
            rows.append(("i", f"calls query, {q['calls']:,} calls: {label} p50/p99",
                         f"{q[key]['p50_ms']:.2f} / {q[key]['p99_ms']:.2f} ms"))
        for key in ("csv_small", "csv_100k"):
            c = q[key]
            rows.append(("i", f"CSV export of {c['rows']:,} rows: tracemalloc peak, time",
                         f"{c['tracemalloc_peak_kb']:,} KiB, {c['seconds']} s"))
    width = max(len(r[1]) for r in rows) if rows else 10
    lines = [f"{'':2} {'figure':<{width}}  value", f"{'':2} {'-' * width}  {'-' * 28}"]
    lines += [f"{p:2} {name:<{width}}  {value}" for p, name, value in rows]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.from_env()
    res: dict[str, Any] = {"name": args.name, "machine": machine(),
                           "args": {k: v for k, v in vars(args).items()},
                           "started": datetime.now(UTC).isoformat()}
    say(f"generating {args.cdrs:,} records over {args.subs:,} subscriptions")
    data = datagen.generate(args.cdrs, args.subs, seed=args.seed)
    res["data"] = data.summary()
    RESULTS.mkdir(parents=True, exist_ok=True)
    step = None
    if "a" in args.phases or "d" in args.phases:
        say("a: Redis rating step")
        step = await phase_a(settings, data, args, res)
    if "b" in args.phases:
        say("b: bare aiokafka passthrough")
        res["b_passthrough"] = (await pipeline.passthrough(settings, data, args.partitions)
                                ).as_dict()
        say(f"b: {res['b_passthrough']['cdrs_per_s']:,}/s")
    if "c" in args.phases:
        say("c: bare Faust agent")
        flame = None if args.no_flame else RESULTS / f"flame-{args.name}-faust-floor.svg"
        res["c_faust_floor"] = (await pipeline.faust_floor(settings, data, args.partitions,
                                                           flame)).as_dict()
        if flame and flame.exists():
            res["c_faust_floor"]["flame_graph"] = flame.name
        say(f"c: {res['c_faust_floor']['cdrs_per_s']:,}/s")
    peak = 0.0
    best_mode = None
    if "d" in args.phases and step is not None:
        res["d_rater"] = {}
        for mode in [m for m in args.modes.split(",") if m]:
            say(f"d: rater end to end, mode {mode}")
            flame = None if args.no_flame else RESULTS / f"flame-{args.name}-rater-{mode}.svg"
            t = await pipeline.rater_end_to_end(settings, data, step, args.partitions, mode,
                                                args.batch, flame)
            d = t.as_dict()
            if flame and flame.exists():
                d["flame_graph"] = flame.name
            if "b_passthrough" in res:
                d["ratio_to_passthrough"] = round(t.rate / res["b_passthrough"]["cdrs_per_s"], 3)
            if "c_faust_floor" in res:
                d["ratio_to_faust_floor"] = round(t.rate / res["c_faust_floor"]["cdrs_per_s"], 3)
            res["d_rater"][mode] = d
            say(f"d: {mode}: {d['cdrs_per_s']:,}/s (verified identical to in-process rating)")
            if t.rate > peak:
                peak, best_mode = t.rate, mode
    if "e" in args.phases or "h" in args.phases:
        # the fastest mode measured in d, else the worker's default consumer
        mode = best_mode or Settings.from_env({}).cdr_consumer
        rate = peak / 2 if peak else 5000.0
        say(f"e/h: latency at {rate:.0f}/s for {args.latency_s:.0f}s, then soak "
            f"{args.soak_s:.0f}s @ {args.soak_rate:.0f}/s (mode {mode})")
        lh = await pipeline.latency_and_soak(
            settings, data, args.partitions, mode, args.batch, rate,
            args.latency_s if "e" in args.phases else 1.0, args.soak_rate,
            args.soak_s if "h" in args.phases else 0.0)
        if "e" in args.phases:
            res["e_latency"] = {"mode": mode, "peak_basis": round(peak), **lh}
            res["e_latency"].pop("soak", None)
        if "soak" in lh:
            res["h_soak"] = {"mode": mode, **lh["soak"]}
    if "f" in args.phases:
        from benchmarks import verifier, web

        res["f_token_check"] = verifier.measure()

        say(f"f: authorize and sessions alone at {args.web_rates} req/s, at "
            f"{args.web_beside_rate:.0f}/s beside {args.steady_cdr_rate:.0f} CDRs/s, then the "
            f"bare handler ({args.web_s:.0f}s windows)")
        flame = None if args.no_flame else RESULTS / f"flame-{args.name}.svg"
        res["f_authorize"] = await web.authorize_under_load(
            data, args.partitions, args.web_s, flame, args.web_rates, args.web_beside_rate,
            args.steady_cdr_rate, [w for w in args.f_windows.split(",") if w])
    if "g" in args.phases:
        say(f"g: Redis memory after rating {args.memory_cdrs:,} CDRs")
        res["g_memory"] = await redis_step.memory_per_cdr(
            settings, data.subscriptions, args.memory_cdrs, f"bench-g-{uuid.uuid4().hex[:8]}")
    if "i" in args.phases:
        from benchmarks import history

        say(f"i: history sink beside rating ({len(data.records):,} CDRs), then the calls "
            f"query over {args.history_calls:,} calls and a 100,000-row CSV export")
        res["i_history"] = {
            "sinks": [await history.sink_keeps_up(settings, data, args.partitions, args.batch,
                                                  separate)
                      for separate in (False, True)],
            "steady": await history.sink_at_steady_rate(settings, data, args.partitions,
                                                        args.batch, args.history_rate,
                                                        30.0 if not args.quick else 10.0),
            "query": await history.calls_query(settings, args.history_calls, args.seed),
        }
    if "a" in args.phases and "a_redis_step" in res:
        png = plot_sweep(res["a_redis_step"]["batch_sweep"], {},
                         RESULTS / f"batch-size-{args.name}.png")
        if png:
            res["a_redis_step"]["plot"] = png.name
    res["finished"] = datetime.now(UTC).isoformat()
    return res


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    res = asyncio.run(main_async(args))
    res["elapsed_s"] = round(time.monotonic() - started, 1)
    text = table(res)
    print(text)
    blob = orjson.dumps(res, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    (RESULTS / f"{args.name}.json").write_bytes(blob)
    (RESULTS / "latest.json").write_bytes(blob)
    print(f"\nwritten: {RESULTS / (args.name + '.json')} (and latest.json); "
          f"{res['elapsed_s']:.0f}s", file=sys.stderr)
    return 0
