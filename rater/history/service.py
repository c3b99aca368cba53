"""The history sink inside the worker: one call wires it into the Faust app."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mode import Service

from rater.config import Settings
from rater.history.sink import HistorySink

log = logging.getLogger(__name__)


class HistorySinkService(Service):  # type: ignore[misc]
    """Runs a HistorySink for as long as the service (the worker) runs."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.sink = HistorySink(settings)
        self._running: asyncio.Task[None] | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self._running = asyncio.ensure_future(self.sink.run())
        self._running.add_done_callback(_report_end)

    async def on_stop(self) -> None:
        self.sink.stop_soon()
        if self._running is not None:  # an exception it ended with is already logged
            await asyncio.gather(self._running, return_exceptions=True)


def _report_end(task: asyncio.Task[None]) -> None:
    """The sink retries PostgreSQL and Kafka failures itself; ending otherwise is a fault
    the worker's log must show (the worker goes on rating without it)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("history sink stopped: %r; no history is written until the worker "
                  "restarts", task.exception(), exc_info=task.exception())


def register_history_sink(app: Any, settings: Settings) -> bool:
    """With RATER_HISTORY_SINK=on, the worker's Faust app runs the history sink beside
    its agents; returns whether it does. Off, the worker needs no PostgreSQL."""
    if settings.history_sink != "on":
        return False

    class BoundHistorySinkService(HistorySinkService):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(settings, **kwargs)

    app.service(BoundHistorySinkService)
    return True
