"""Commands that put input records on the topics: `rater subscriptions load FILE` and
`rater replay FILE.jsonl` (SPEC §10)."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from rater.cli.errors import CliError
from rater.config import Settings
from rater.progress import ProgressBar

KeyedValue = tuple[bytes | None, bytes]


def add_commands(commands: Any) -> None:
    subs = commands.add_parser("subscriptions", help="subscription events")
    actions = subs.add_subparsers(dest="action", required=True)
    load = actions.add_parser("load", help="publish subscription.upserted from a JSON array")
    load.add_argument("file")
    load.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                      help="then wait until a worker has applied them all in Redis")
    load.set_defaults(func=load_subscriptions)
    replay = commands.add_parser("replay", help="produce CDRs from a JSON-lines file")
    replay.add_argument("file")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(func=replay_cdrs)


async def produce(settings: Settings, records: Sequence[KeyedValue], topic: str,
                  progress: bool) -> None:
    """Send every record and wait until the broker has them all (acks=all); CliError when
    the broker refuses (a missing topic, say)."""
    from aiokafka.errors import KafkaError

    from rater.kafka import producer

    bar = ProgressBar(len(records)) if progress else None
    out = producer(settings)
    await out.start()
    try:
        if topic not in (await out.client.fetch_all_metadata()).topics():
            raise CliError(f"topic {topic} does not exist (`rater topics create` makes it)")
        pending = []
        for key, value in records:
            pending.append(await out.send(topic, value=value, key=key))
            if bar is not None:
                bar.advance()
        await asyncio.gather(*pending)
        if bar is not None:
            bar.finish()
    except KafkaError as exc:
        raise CliError(f"cannot produce to {topic}: {type(exc).__name__} (does the topic "
                       "exist? `rater topics create` makes it)") from None
    finally:
        await out.stop()


def upsert_events(documents: list[Any]) -> list[KeyedValue]:
    """`subscription.upserted` events for a JSON array of Subscriptions (InvalidRecord for
    the first that is not one)."""
    from rater.rating.clock import now_ms
    from rater.rating.outputs import subscription_upserted
    from rater.records import subscription_from_document

    at = now_ms()
    events: list[KeyedValue] = []
    for doc in documents:
        sub = subscription_from_document(doc)
        events.append((sub.subscription_id.encode(),
                       orjson.dumps(subscription_upserted(sub, at))))
    return events


def load_subscriptions(settings: Settings, args: argparse.Namespace) -> int:
    from rater.records import InvalidRecord

    try:
        documents = orjson.loads(Path(args.file).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise CliError(f"cannot read {args.file}: {exc}") from None
    if not isinstance(documents, list):
        raise CliError(f"{args.file}: expected a JSON array of subscriptions")
    try:
        events = upsert_events(documents)
    except InvalidRecord as exc:
        raise CliError(f"{args.file}: invalid subscription: {exc}") from None
    asyncio.run(produce(settings, events, settings.topics.subscription_events, False))
    print(f"published {len(events)} subscription.upserted events "
          f"to {settings.topics.subscription_events}")
    if args.wait:
        ids = [key.decode() for key, _ in events if key is not None]
        missing = asyncio.run(_wait_applied(settings, ids, args.wait))
        if missing:
            raise CliError(f"{len(missing)} subscriptions not applied by a worker after "
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
    """A CDR's subscription id, its Kafka key (SPEC §3); None when the line is not one."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    sub = doc.get("subscription_id") if isinstance(doc, dict) else None
    return sub.encode() if isinstance(sub, str) else None


def replay_cdrs(settings: Settings, args: argparse.Namespace) -> int:
    try:
        lines = [line for line in Path(args.file).read_bytes().splitlines() if line.strip()]
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc}") from None
    records = [(_key_of(line), line) for line in lines]
    asyncio.run(produce(settings, records, settings.topics.cdr, not args.quiet))
    print(f"produced {len(records)} CDRs to {settings.topics.cdr}")
    return 0
