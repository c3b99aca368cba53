"""The local stack script (deploy/local/stack) as the suite sees it: running, idempotent."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest

pytestmark = pytest.mark.integration

STACK = Path(__file__).resolve().parents[2] / "deploy" / "local" / "stack"


def _stack(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STACK), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _require_running() -> None:
    status = _stack("status")
    if status.returncode != 0:
        pytest.fail(
            "the local stack is not up (run `make test`, or `deploy/local/stack up` first):\n"
            + status.stdout
            + status.stderr
        )


def test_status_reports_every_service_running() -> None:
    result = _stack("status")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("stack: kafka running") for line in lines), result.stdout
    assert any(line.startswith("stack: redis running") for line in lines), result.stdout
    assert any(line.startswith("stack: postgres running") for line in lines), result.stdout
    assert any("data dir" in line for line in lines), result.stdout


def test_second_up_is_a_quick_no_op() -> None:
    _require_running()
    started = time.monotonic()
    result = _stack("up", timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kafka already running" in result.stdout
    assert "redis already running" in result.stdout
    assert "postgres already running" in result.stdout
    assert elapsed < 5.0, f"second `stack up` took {elapsed:.1f}s"


async def test_postgres_answers_as_the_rater_role_on_loopback_only() -> None:
    _require_running()
    port = os.environ.get("PG_PORT", "5432")
    dsn = os.environ.get("RATER_HISTORY_DSN", f"postgresql://rater@127.0.0.1:{port}/rater")
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {dsn} does not answer ({exc!r}); the stack should run it")
    try:
        row = await conn.fetchrow(
            "SELECT current_user AS role, current_database() AS db, 6 * 7 AS answer, "
            "current_setting('listen_addresses') AS listen")
    finally:
        await conn.close()
    assert (row["role"], row["db"], row["answer"]) == ("rater", "rater", 42)
    assert row["listen"] == "127.0.0.1"
