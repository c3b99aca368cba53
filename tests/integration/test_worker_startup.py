"""A worker refuses to start with one clear line when its configuration or services are wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import REPO, Deployment, Worker, free_port

pytestmark = pytest.mark.integration


def run_worker(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rater.cli", "worker"],
        env=Deployment().env(**env), cwd=REPO, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RATER_WEB_PORT": "http"}, "RATER_WEB_PORT: expected an integer, got 'http'"),
        ({"RATER_KAFKA_BOOTSTRAP": "nohost"}, "RATER_KAFKA_BOOTSTRAP: expected host:port"),
        ({"RATER_REDIS_URL": "mysql://x"}, "RATER_REDIS_URL: expected redis://"),
        ({"RATER_JWT_KEY": "short", "RATER_JWT_ALGORITHM": "HS256"},
         "RATER_JWT_ISSUER and RATER_JWT_AUDIENCE are required"),
        ({"RATER_LATE_GRACE_S": "-1"}, "RATER_LATE_GRACE_S: must be between"),
    ],
)
def test_invalid_configuration_is_one_line(env: dict[str, str], message: str) -> None:
    result = run_worker(**env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rater: ") and message in lines[0]


def test_unreachable_redis_is_one_line_after_the_retry_budget() -> None:
    port = free_port()  # nothing listens there
    result = run_worker(RATER_REDIS_URL=f"redis://127.0.0.1:{port}/0", RATER_STARTUP_RETRY_S="2")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"Redis at redis://127.0.0.1:{port}/0 unreachable after 2s" in lines[0]


def test_unreachable_kafka_is_one_line_after_the_retry_budget() -> None:
    port = free_port()
    result = run_worker(RATER_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}", RATER_STARTUP_RETRY_S="2")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"Kafka at 127.0.0.1:{port} unreachable after 2s" in lines[0]


async def test_faust_cli_runs_the_same_app() -> None:
    deployment = Deployment()
    await deployment.create_topics()
    faust = str(Path(sys.executable).with_name("faust"))
    worker = Worker(deployment, command=[faust, "-A", "rater.app", "worker", "-l", "info"])
    worker.start()
    try:
        assert worker.http_status("/healthz") == 200
        assert b"rater_ready 1.0" in worker.get("/metrics")
    finally:
        worker.stop()
    assert worker.process is not None and worker.process.returncode is not None
