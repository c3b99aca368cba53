"""`rater worker`: one worker (Faust app: agents, CDR consumer, HTTP API, /metrics)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

from rater.cli.errors import CliError
from rater.config import ConfigError, Settings

log = logging.getLogger("rater")


def add_commands(commands: Any) -> None:
    worker = commands.add_parser("worker", help="run one worker: agents, HTTP API, /metrics")
    worker.add_argument("--create-topics", action="store_true",
                        help="create missing topics before starting")
    worker.set_defaults(func=run_worker)


async def preflight(settings: Settings, create_topics: bool) -> None:
    """Kafka and Redis answer within the retry budget, or ConnectionError (one line)."""
    from rater.kafka import ensure_topics, wait_for_kafka
    from rater.store import RedisStore

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
    if create_topics:
        await ensure_topics(settings)


def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    from rater.logs import configure_logging, logging_config

    # the preflight retries quietly (rater.cli.main keeps the libraries' log lines off
    # stderr until logging is configured): a refusal is one line, below
    def refuse(message: str) -> CliError:
        """The one line a refused start prints: JSON like every other line in json mode."""
        if settings.log_format == "json":
            configure_logging(settings)
            log.error("rater: %s", message)
            return CliError("")  # already said, as JSON
        return CliError(message)

    try:
        asyncio.run(preflight(settings, args.create_topics))
    except ConnectionError as exc:
        raise refuse(str(exc)) from None
    # only now: the preflight's retries stay quiet, a refusal is one line (above)
    configure_logging(settings)
    from faust import Worker

    try:
        from rater.app import app
    except ConfigError as exc:  # e.g. RATER_JWT_KEY that is not a usable key
        raise refuse(str(exc)) from None

    if not settings.auth_configured:
        log.warning(
            "RATER_JWT_KEY is not set: protected HTTP endpoints answer 503 auth_not_configured"
        )
    options: dict[str, Any] = {}
    if settings.log_format == "json":
        # Faust (mode) replaces the root logger's handlers when the worker starts;
        # hand it ours, or its coloured plain-text lines would come out instead
        options["logging_config"] = logging_config(settings)
    sys.argv = [sys.argv[0], "worker"]  # Faust's worker parses argv itself
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True, **options)
    # No progress spinner: it writes raw text to a terminal, and at log level WARNING or
    # above it sets the root logger to DEBUG for itself, so every aiokafka debug call
    # builds a log record (a tenth of the worker's CPU at full load; docs/performance.md)
    worker.spinner = None
    worker.execute_from_commandline()
    return 0
