"""The framework's floor: a bare Faust agent that consumes, orjson-decodes and produces.

Run as its own process: `python -m benchmarks.faust_floor` with BENCH_* variables
naming the broker, topics, app id and web port. The app takes the rater's own
Faust settings (rater.config.faust_options), so the only difference from the rater
is the work per record. It runs until the benchmark stops it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import faust
import orjson

from rater.config import Settings, faust_options


def build() -> Any:
    settings = Settings.from_env().with_overrides(
        app_id=os.environ["BENCH_APP_ID"], web_port=int(os.environ["BENCH_WEB_PORT"]),
    )
    app = faust.App(settings.app_id, **faust_options(settings))
    source = app.topic(os.environ["BENCH_INPUT"], key_serializer="raw", value_serializer="raw")
    output = os.environ["BENCH_OUTPUT"]
    loads = orjson.loads

    @app.agent(source, name="passthrough", concurrency=1)
    async def passthrough(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            try:  # noqa: SIM105 (cheaper than contextlib.suppress per record)
                loads(message.value)
            except orjson.JSONDecodeError:
                pass
            await app.producer.send(output, message.key, message.value, None, None, None)

    return app


def main() -> int:
    from faust import Worker

    app = build()
    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker"]
    sys.exit(main())
