"""The session sweeper's timer: every `RATER_SESSION_SWEEP_S`, one bounded pass of
`SessionSweeper.run_once` in every worker. A failed pass (Redis down) is logged and
counted, and the next tick tries again; it never stops the worker."""

from __future__ import annotations

import logging
from typing import Any

from rater import metrics
from rater.service.sessions import SessionSweeper
from rater.store import StoreUnavailable

log = logging.getLogger(__name__)


def register_sweeper(app: Any, sweeper: SessionSweeper, interval_s: float) -> None:
    async def sweep_sessions() -> None:
        try:
            done = await sweeper.run_once()
        except StoreUnavailable as exc:
            metrics.REDIS_ERRORS.labels("sweep").inc()
            log.warning("session sweep: Redis failed (%s); next pass in %.1fs", exc, interval_s)
            return
        except Exception:
            log.exception("session sweep failed; next pass in %.1fs", interval_s)
            return
        if done.expired:
            log.info("session sweep: %d subscriptions, %d expired by validity, %d by CDR wait",
                     done.visited, done.expired.validity, done.expired.cdr_wait)

    app.timer(interval=interval_s)(sweep_sessions)
