"""`rater ...`: the worker and the operator commands (SPEC §10)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from rater.config import ConfigError, Settings
from rater.history.cli import add_history_commands
from rater.ops_cli import add_operator_commands
from rater.rebuild import add_rebuild_command


def _fail(message: str) -> int:
    print(f"rater: {message}", file=sys.stderr)
    return 2


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    import logging

    from rater.kafka import ensure_topics, wait_for_kafka
    from rater.logs import configure_logging, logging_config
    from rater.store import RedisStore

    log = logging.getLogger("rater")
    # the preflight retries quietly (aiokafka logs every failed connect as an ERROR,
    # which Python's last-resort handler would print): a refusal is one line, below
    logging.getLogger().addHandler(logging.NullHandler())

    async def preflight() -> None:
        await wait_for_kafka(settings)
        store = RedisStore.from_settings(settings)
        deadline = time.monotonic() + settings.startup_retry_s
        try:
            while True:
                try:
                    await store.ping()
                    break
                except Exception as exc:
                    if time.monotonic() > deadline:
                        raise ConnectionError(
                            f"Redis at {settings.redis_url} unreachable after "
                            f"{settings.startup_retry_s:.0f}s: {exc}"
                        ) from None
                    await asyncio.sleep(1.0)
        finally:
            await store.close()
        if args.create_topics:
            await ensure_topics(settings)

    def refuse(message: str) -> int:
        """The one line a refused start prints: JSON like every other line in json mode."""
        if settings.log_format != "json":
            return _fail(message)
        configure_logging(settings)
        log.error("rater: %s", message)
        return 2

    try:
        asyncio.run(preflight())
    except ConnectionError as exc:
        return refuse(str(exc))
    # only now: the preflight's retries stay quiet, a refusal is one line (above)
    configure_logging(settings)
    from faust import Worker

    try:
        from rater.app import app
    except ConfigError as exc:  # e.g. RATER_JWT_KEY that is not a usable key
        return refuse(str(exc))

    if not settings.auth_configured:
        log.warning(
            "RATER_JWT_KEY is not set: protected HTTP endpoints answer 503 auth_not_configured"
        )
    options: dict[str, Any] = {}
    if settings.log_format == "json":
        # Faust (mode) replaces the root logger's handlers when the worker starts;
        # hand it ours, or its coloured plain-text lines would come out instead
        options["logging_config"] = logging_config(settings)
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True, **options)
    # No progress spinner: it writes raw text to a terminal, and at log level WARNING or
    # above it sets the root logger to DEBUG for itself, so every aiokafka debug call
    # builds a log record (a tenth of the worker's CPU at full load; docs/performance.md)
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from rater.kafka import ensure_topics

    created = asyncio.run(ensure_topics(settings, replication=args.replication))
    print(f"topics: created {len(created)}, {len(settings.topics.all()) - len(created)} existed")
    for name in created:
        print(f"  + {name}")
    return 0


async def _produce(settings: Settings, records: Sequence[tuple[bytes | None, bytes]],
                   topic: str, progress: bool) -> None:
    from rater.kafka import producer

    out = producer(settings)
    await out.start()
    try:
        pending = []
        for i, (key, value) in enumerate(records, 1):
            pending.append(await out.send(topic, value=value, key=key))
            if progress and (i % 1000 == 0 or i == len(records)):
                width = 30
                done = width * i // len(records)
                print(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{len(records)}",
                      end="", file=sys.stderr, flush=True)
        await asyncio.gather(*pending)
        if progress:
            print(file=sys.stderr)
    finally:
        await out.stop()


def upsert_events(documents: list[Any]) -> list[tuple[bytes | None, bytes]]:
    from rater.codec import subscription_from_document, subscription_to_document
    from rater.rating.clock import format_ms, now_ms

    events: list[tuple[bytes | None, bytes]] = []
    for doc in documents:
        sub = subscription_from_document(doc)
        event = {"type": "subscription.upserted", "subscription": subscription_to_document(sub),
                 "at": format_ms(now_ms())}
        events.append((sub.subscription_id.encode(), orjson.dumps(event)))
    return events


def cmd_subscriptions_load(settings: Settings, args: argparse.Namespace) -> int:
    from rater.codec import InvalidRecord

    try:
        documents = orjson.loads(Path(args.file).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        return _fail(f"cannot read {args.file}: {exc}")
    if not isinstance(documents, list):
        return _fail(f"{args.file}: expected a JSON array of subscriptions")
    try:
        events = upsert_events(documents)
    except InvalidRecord as exc:
        return _fail(f"{args.file}: invalid subscription: {exc}")
    asyncio.run(_produce(settings, events, settings.topics.subscription_events, False))
    print(f"published {len(events)} subscription.upserted events "
          f"to {settings.topics.subscription_events}")
    if args.wait:
        ids = [key.decode() for key, _ in events if key is not None]
        missing = asyncio.run(_wait_applied(settings, ids, args.wait))
        if missing:
            return _fail(f"{len(missing)} subscriptions not applied by a worker after "
                         f"{args.wait:.0f}s (is `rater worker` running?), e.g. {missing[0]!r}")
        print(f"all {len(ids)} subscriptions applied in Redis")
    return 0


async def _wait_applied(settings: Settings, ids: list[str], timeout_s: float) -> list[str]:
    """Poll Redis until a worker has applied every subscription; returns those still missing."""
    from rater.rating.clock import now_ms
    from rater.store import RedisStore

    store = RedisStore.from_settings(settings)
    deadline = time.monotonic() + timeout_s
    pending = list(ids)
    try:
        while pending and time.monotonic() < deadline:
            pending = [i for i in pending if await store.snapshot(i, now_ms()) is None]
            if pending:
                await asyncio.sleep(0.2)
    finally:
        await store.close()
    return pending


def _key_of(line: bytes) -> bytes | None:
    try:
        doc = orjson.loads(line)
        sub = doc.get("subscription_id") if isinstance(doc, dict) else None
        return sub.encode() if isinstance(sub, str) else None
    except orjson.JSONDecodeError:
        return None


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    try:
        lines = [line for line in Path(args.file).read_bytes().splitlines() if line.strip()]
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc}")
    records = [(_key_of(line), line) for line in lines]
    asyncio.run(_produce(settings, records, settings.topics.cdr, not args.quiet))
    print(f"produced {len(records)} CDRs to {settings.topics.cdr}")
    return 0


def cmd_demo_generate(settings: Settings, args: argparse.Namespace) -> int:
    from rater import demo

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subs = demo.subscriptions()
    (out / "subscriptions.json").write_bytes(orjson.dumps(subs, option=orjson.OPT_INDENT_2))
    (out / "cdrs.jsonl").write_bytes(b"\n".join(demo.cdr_lines(subs, args.cdrs)) + b"\n")
    print(f"wrote {out}/subscriptions.json ({len(subs)}) and {out}/cdrs.jsonl")
    return 0


async def _read_topics(
    settings: Settings, topics: list[str], idle_s: float
) -> dict[str, list[Any]]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen: dict[str, list[Any]] = {t: [] for t in topics}
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000), max_records=5000)
            if not batch:
                return seen
            for tp, messages in batch.items():
                seen[tp.topic] += [orjson.loads(m.value) for m in messages]
    finally:
        await consumer.stop()


def cmd_demo_report(settings: Settings, args: argparse.Namespace) -> int:
    topics = settings.topics
    deadline = time.monotonic() + args.wait
    want = args.expect
    while True:
        seen = asyncio.run(_read_topics(settings, [topics.rated, topics.charges, topics.dlq,
                                                   topics.alerts], 2.0))
        handled = len({(r["subscription_id"], r["call_id"]) for r in seen[topics.rated]})
        handled += len(seen[topics.dlq])
        if handled >= want or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    rated = {(r["subscription_id"], r["call_id"]): r for r in seen[topics.rated]}
    outcomes = Counter(r["outcome"] for r in rated.values())
    charges = {c["charge_id"]: c for c in seen[topics.charges]}
    totals: Counter[str] = Counter()
    amount: dict[str, Decimal] = {}
    for charge in charges.values():
        totals[charge["currency"]] += 1
        amount[charge["currency"]] = amount.get(charge["currency"], Decimal(0)) + Decimal(
            charge["amount"])
    print(f"rated calls ({topics.rated}): {len(rated)} distinct")
    for outcome, n in sorted(outcomes.items()):
        print(f"  {outcome:<10} {n}")
    print(f"overage charges ({topics.charges}): {len(charges)} distinct")
    for currency in sorted(amount):
        print(f"  {currency} {amount[currency]} over {totals[currency]} charges")
    print(f"blocked calls (PAYG off, pool empty): {outcomes.get('blocked', 0)}")
    print(f"threshold alerts ({topics.alerts}): {len(seen[topics.alerts])}")
    reasons = Counter(d["reason"] for d in seen[topics.dlq])
    print(f"dead letters ({topics.dlq}): {sum(reasons.values())} "
          + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rater", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run one worker: agents, HTTP API, /metrics")
    worker.add_argument("--create-topics", action="store_true",
                        help="create missing topics before starting")
    worker.set_defaults(func=cmd_worker)
    topics = sub.add_parser("topics", help="topic administration")
    topics_sub = topics.add_subparsers(dest="action", required=True)
    create = topics_sub.add_parser("create", help="create the topics of SPEC §3 if missing")
    create.add_argument("--replication", type=int, default=1)
    create.set_defaults(func=cmd_topics)
    subs = sub.add_parser("subscriptions", help="subscription events")
    subs_sub = subs.add_subparsers(dest="action", required=True)
    load = subs_sub.add_parser("load", help="publish subscription.upserted from a JSON array")
    load.add_argument("file")
    load.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                      help="then wait until a worker has applied them all in Redis")
    load.set_defaults(func=cmd_subscriptions_load)
    replay = sub.add_parser("replay", help="produce CDRs from a JSON-lines file")
    replay.add_argument("file")
    replay.add_argument("--quiet", action="store_true")
    replay.set_defaults(func=cmd_replay)
    demo = sub.add_parser("demo", help="demo data and report for `make run`")
    demo_sub = demo.add_subparsers(dest="action", required=True)
    generate = demo_sub.add_parser("generate")
    generate.add_argument("--out", default="rater-data/demo")
    generate.add_argument("--cdrs", type=int, default=2000)
    generate.set_defaults(func=cmd_demo_generate)
    report = demo_sub.add_parser("report")
    report.add_argument("--wait", type=float, default=60.0)
    report.add_argument("--expect", type=int, default=0,
                        help="wait until this many records were handled")
    report.set_defaults(func=cmd_demo_report)
    add_operator_commands(sub)
    add_rebuild_command(sub)
    add_history_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return _fail(str(exc))
    if args.command == "worker":
        sys.argv = [sys.argv[0], "worker"]  # Faust's worker parses argv itself
    result: int = args.func(settings, args)
    return result


if __name__ == "__main__":
    sys.exit(main())
