"""`rater history-sink`, `rater history migrate` and `rater history rebuild`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from rater.cli.errors import CliError
from rater.config import Settings


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    """What a missing or refusing PostgreSQL (or Kafka) raises: a one-line refusal."""
    import asyncpg

    return (OSError, TimeoutError, RuntimeError, asyncpg.PostgresError,
            asyncpg.InterfaceError)


async def _sink_until_signalled(settings: Settings) -> None:
    from rater.history.sink import HistorySink

    sink = HistorySink(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, sink.stop_soon)
    await sink.run()


def cmd_history_sink(settings: Settings, args: argparse.Namespace) -> int:
    from rater.kafka import wait_for_kafka
    from rater.logs import configure_logging

    configure_logging(settings)
    try:
        asyncio.run(wait_for_kafka(settings))
    except ConnectionError as exc:
        raise CliError(str(exc)) from None
    asyncio.run(_sink_until_signalled(settings))
    return 0


async def _migrate(settings: Settings) -> list[int]:
    from rater.history import db
    from rater.history.migrations import migrate

    conn = await db.connect(settings)
    try:
        return await migrate(conn, settings.history_schema)
    finally:
        await conn.close()


def cmd_history_migrate(settings: Settings, args: argparse.Namespace) -> int:
    try:
        applied = asyncio.run(_migrate(settings))
    except _unreachable_errors() as exc:
        raise CliError(f"history migrate failed: {type(exc).__name__}: {exc}") from None
    print(f"schema {settings.history_schema}: applied {applied or 'nothing (up to date)'}")
    return 0


def cmd_history_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    from rater.history.rebuild import rebuild_history

    try:
        report = asyncio.run(rebuild_history(settings, None if args.quiet else sys.stderr))
    except _unreachable_errors() as exc:
        raise CliError(f"history rebuild failed: {type(exc).__name__}: {exc}") from None
    for line in report.lines():
        print(line)
    return 0


def add_commands(subparsers: Any) -> None:
    sink = subparsers.add_parser(
        "history-sink", help="copy rated calls, charges and PAYG events into PostgreSQL")
    sink.set_defaults(func=cmd_history_sink)
    history = subparsers.add_parser("history", help="the call history in PostgreSQL")
    actions = history.add_subparsers(dest="action", required=True)
    migrate = actions.add_parser("migrate", help="create or update the tables, then exit")
    migrate.set_defaults(func=cmd_history_migrate)
    rebuild = actions.add_parser(
        "rebuild", help="refill the tables from the topics, from the beginning (idempotent)")
    rebuild.add_argument("--quiet", action="store_true", help="no progress bar")
    rebuild.set_defaults(func=cmd_history_rebuild)
