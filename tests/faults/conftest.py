"""Fixtures of the fault suite: its own stack, isolated deployments, a run-time report.

The suite starts its own Kafka + Redis (deploy/local/stack on other ports and
another data directory) and, for the cluster tests, a 3-primary Redis Cluster,
and stops them at the end: it never touches the default stack others test on.
Missing prerequisites fail loudly; nothing is skipped.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from rater.store import RedisStore
from tests.faults.stack import ClusterStack, FaultStack, build_fsync_tracker
from tests.integration.harness import Deployment

pytestmark = pytest.mark.faults

REPORT: list[str] = []
STARTED = [time.monotonic()]

# Faust reads these from the environment: a SIGKILLed worker's partitions move to the
# others after 10 s instead of Faust's default 60 s session timeout.
FAST_GROUP = {
    "BROKER_SESSION_TIMEOUT": "10",
    "BROKER_HEARTBEAT_INTERVAL": "1",
    "BROKER_REBALANCE_TIMEOUT": "20",
    "RATER_LOG_LEVEL": "INFO",
}


def pytest_sessionstart(session: pytest.Session) -> None:
    STARTED[0] = time.monotonic()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)


def note(test: str, line: str) -> None:
    """A figure for the end-of-suite report (printed by pytest_terminal_summary)."""
    REPORT.append(f"{test}: {line}")
    print(f"[faults] {test}: {line}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT and not any(
        "tests/faults" in str(getattr(r, "nodeid", ""))
        for reports in terminalreporter.stats.values() for r in reports
    ):
        return
    terminalreporter.section("fault suite")
    for line in REPORT:
        terminalreporter.write_line(line)
    minutes, seconds = divmod(time.monotonic() - STARTED[0], 60)
    terminalreporter.write_line(f"fault suite run time: {int(minutes)} min {seconds:.0f} s")


@pytest.fixture(scope="session")
def fault_stack() -> Iterator[FaultStack]:
    stack = FaultStack()
    started = time.monotonic()
    stack.up()
    note("stack", f"own Kafka {stack.kafka_bootstrap} + Redis {stack.redis_url} "
                  f"up in {time.monotonic() - started:.1f}s")
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterStack]:
    nodes = ClusterStack()
    nodes.up()
    try:
        yield nodes
    finally:
        nodes.down()


@pytest.fixture(scope="session")
def fsync_tracker(fault_stack: FaultStack) -> Path:
    return build_fsync_tracker(fault_stack.directory / "shim")


def deployment_on(stack: FaultStack, partitions: int = 6, **env: str) -> Deployment:
    return Deployment(partitions=partitions, extra_env={
        "RATER_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "RATER_REDIS_URL": stack.redis_url,
        "RATER_REDIS_CLUSTER": "0",
        **FAST_GROUP,
        **env,
    })


@pytest.fixture
async def store_for(fault_stack: FaultStack) -> AsyncIterator[list[RedisStore]]:
    """Stores opened by a test (RedisStore.from_settings), closed after it."""
    opened: list[RedisStore] = []
    yield opened
    for store in opened:
        await store.close()
