"""Wires the call-history side of the web server: the query pool, the §12 endpoints and
the console, all over the one `RaterApi` the §7 endpoints use."""

from __future__ import annotations

from typing import Any

from rater.config import Settings
from rater.history.pool import register_history_pool
from rater.rating.clock import now_ms
from rater.store import RedisStore
from rater.web.api import RaterApi
from rater.web.console import register_console
from rater.web.console.views import Console
from rater.web.history_api import HistoryApi
from rater.web.history_views import register_history_api


def register_history_web(app: Any, settings: Settings, store: RedisStore,
                         api: RaterApi) -> Console:
    pool = register_history_pool(app, settings)
    history = HistoryApi(api, store, pool, api.verifier.authenticate, now_ms)
    register_history_api(app, history)
    return register_console(app, Console(api, history, store, api.verifier, now_ms))
