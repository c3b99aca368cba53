"""A bare handler on the rater's web stack: a Faust app (aiohttp underneath) with one view
that reads the body, parses it with orjson and answers a fixed decision. No auth, no Redis.

Run as its own process: `python -m benchmarks.bare_web` with BENCH_APP_ID and
BENCH_WEB_PORT (and BENCH_IDLE_TOPIC, an existing topic for the one idle agent).
It runs until the benchmark stops it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import faust
import orjson

from rater.config import Settings, faust_options

ANSWER = {"attempt_id": "", "subscription_id": "", "decision": "permit",
          "max_duration_s": None, "reason": "included", "decided_at": "2026-01-01T00:00:00Z"}


def build() -> Any:
    settings = Settings.from_env().with_overrides(
        app_id=os.environ["BENCH_APP_ID"], web_port=int(os.environ["BENCH_WEB_PORT"]),
    )
    app = faust.App(settings.app_id, **faust_options(settings))
    # Faust's consumer refuses to start subscribed to nothing: one idle agent
    idle = app.topic(os.environ["BENCH_IDLE_TOPIC"], key_serializer="raw",
                     value_serializer="raw")

    @app.agent(idle, name="idle")
    async def idle_agent(stream: Any) -> None:
        async for _ in stream:
            pass

    @app.page("/bare")
    class Bare(faust.web.View):  # type: ignore[misc]
        async def post(self, request: Any) -> Any:
            body = orjson.loads(await request.read())
            answer = dict(ANSWER, attempt_id=body.get("attempt_id", ""),
                          subscription_id=body.get("subscription_id", ""))
            return self.bytes(orjson.dumps(answer), content_type="application/json")

    return app


def main() -> int:
    from faust import Worker

    Worker(build(), loglevel="warning", quiet=True).execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker"]
    sys.exit(main())
