"""`rater rebuild --from-rated`: rebuild a lost or damaged Redis from the Kafka topics
(the work itself is `rater.store.rebuild`; docs/operations.md says when to run it)."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from rater.cli.errors import CliError
from rater.config import Settings


def add_commands(commands: Any) -> None:
    rebuild = commands.add_parser(
        "rebuild", help="rebuild Redis (subscriptions, counters, call memory) from Kafka")
    rebuild.add_argument("--from-rated", action="store_true",
                         help="from calls.rated and the other topics (required)")
    rebuild.add_argument("--force", action="store_true",
                         help="even while workers are members of the consumer groups")
    rebuild.set_defaults(func=rebuild_redis)


def rebuild_redis(settings: Settings, args: argparse.Namespace) -> int:
    if not args.from_rated:
        raise CliError("rebuild needs --from-rated (the only source there is)")
    try:
        report = asyncio.run(rebuild(settings, force=args.force))
    except (RuntimeError, TimeoutError) as exc:
        raise CliError(str(exc)) from None
    for line in report.lines():
        print(line)
    return 0


async def rebuild(settings: Settings, force: bool = False) -> Any:
    from rater.kafka import group_members, read_to_end
    from rater.rating.clock import now_ms
    from rater.store import RedisStore
    from rater.store.rebuild import (
        Report,
        apply_events,
        cdr_fingerprints,
        rebuild_state,
        write_state,
    )

    started = time.monotonic()
    report = Report()
    try:
        members = await group_members(settings.kafka_bootstrap,
                                      [settings.app_id, settings.cdr_group])
    except Exception as exc:
        raise RuntimeError(f"cannot tell whether workers are running ({exc!r}); stop every "
                           "worker and pass --force") from None
    busy = {group: n for group, n in members.items() if n}
    if busy and not force:
        raise RuntimeError(f"workers are running (consumer group members: {busy}); stop every "
                           "worker first, or pass --force")
    topics, bootstrap = settings.topics, settings.kafka_bootstrap
    events, rated, charges, alerts, cdrs = await asyncio.gather(
        read_to_end(bootstrap, [topics.subscription_events]),
        read_to_end(bootstrap, [topics.rated]), read_to_end(bootstrap, [topics.charges]),
        read_to_end(bootstrap, [topics.alerts]), read_to_end(bootstrap, [topics.cdr]))
    applied = apply_events(events, report)
    now = now_ms()
    store = RedisStore.from_settings(settings)
    state = rebuild_state(store.keys, settings.late_grace_s * 1000, applied, rated, charges,
                          alerts, cdr_fingerprints(cdrs), report, now)
    try:
        await write_state(store, state, report, now)
    finally:
        await store.close()
    report.seconds = time.monotonic() - started
    return report
