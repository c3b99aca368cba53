"""PostgreSQL goes away in the middle of a stream and comes back: the sink retries,
reconnects and catches up, skipping nothing. The server here is a private one (its
own port and data directory, started by deploy/local/stack as the postgres user),
so the shared one is never touched."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from rater.history.sink import HistorySink
from rater.kafka import ensure_topics
from tests.integration.harness import REPO, free_port, produce
from tests.integration.history.support import dumps, new_schema, rated_call, settings_for

pytestmark = pytest.mark.integration
STACK = REPO / "deploy" / "local" / "stack"


class PrivatePostgres:
    def __init__(self) -> None:
        # not under pytest's tmp_path: the postgres user must be able to reach it
        self.directory = Path(f"/tmp/rater-test-pg-{uuid.uuid4().hex[:8]}")
        self.directory.mkdir(mode=0o755)
        self.port = free_port()
        # never started here, but `down` watches their ports: not the shared Kafka's and Redis's
        self.unused_ports = {name: str(free_port()) for name in
                             ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "REDIS_PORT")}

    @property
    def dsn(self) -> str:
        return f"postgresql://rater@127.0.0.1:{self.port}/rater"

    def stack(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RATER_", "KAFKA_", "REDIS_", "PG_"))}
        env.update(RATER_STACK_DIR=str(self.directory), PG_PORT=str(self.port),
                   **self.unused_ports)
        done = subprocess.run([str(STACK), *args], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, f"stack {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    def crash(self) -> None:
        """An immediate shutdown: no checkpoint, every connection cut (a crash, for clients)."""
        data = self.directory / "postgres" / "data"
        subprocess.run(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl",
                        "-D", str(data), "-m", "immediate", "-w", "stop"], cwd="/",
                       capture_output=True, timeout=60, check=True)


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        pg.stack("up", "--pg-only")
        yield pg
    finally:
        pg.stack("down", "--purge")
        shutil.rmtree(pg.directory, ignore_errors=True)


async def _count(dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        return int(await conn.fetchval("SELECT count(*) FROM rated_calls"))
    finally:
        await conn.close()


async def test_postgres_restarted_mid_stream_the_sink_catches_up(
        private_pg: PrivatePostgres) -> None:
    schema = new_schema()
    settings = settings_for(schema, history_dsn=private_pg.dsn, history_batch_max=200)
    await ensure_topics(settings)
    calls = [rated_call(i, f"sub-{i % 7}") for i in range(6000)]
    records = [(c["subscription_id"].encode(), dumps(c)) for c in calls]
    sink = HistorySink(settings)
    task = asyncio.ensure_future(sink.run())
    try:
        await produce(settings, settings.topics.rated, records[:2000])
        deadline = time.monotonic() + 60
        while sink.counts.inserted.get("rated_calls", 0) < 2000:
            assert time.monotonic() < deadline, f"first 2000 not stored: {sink.counts}"
            await asyncio.sleep(0.1)
        private_pg.crash()
        await produce(settings, settings.topics.rated, records[2000:4000])
        await asyncio.sleep(3.0)  # the sink meets the outage and keeps retrying
        assert not task.done()
        assert sink.counts.db_failures > 0
        private_pg.stack("up", "--pg-only")
        await produce(settings, settings.topics.rated, records[4000:])
        deadline = time.monotonic() + 90
        while sink.counts.inserted.get("rated_calls", 0) < 6000:
            assert time.monotonic() < deadline, f"not caught up: {sink.counts}"
            assert not task.done(), task
            await asyncio.sleep(0.2)
    finally:
        sink.stop_soon()
        await asyncio.wait_for(task, 60)
    assert await _count(private_pg.dsn, schema) == 6000
    assert sink.counts.inserted == {"rated_calls": 6000}
