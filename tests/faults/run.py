"""One fault run: a deployment on the fault stack, its workers, input in, outputs checked."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rater.store import RedisStore
from tests.faults.workload import (
    Expected,
    Outputs,
    Record,
    Verdict,
    Workload,
    expect,
    produce,
    verify,
    wait_lag_zero,
)
from tests.integration.harness import Deployment, Worker

RETRY_LINE = re.compile(r"Redis failed .* retrying batch of \d+ in ([\d.]+)s")


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


@dataclass
class FaultRun:
    deployment: Deployment
    workload: Workload
    workers: list[Worker] = field(default_factory=list)
    store: RedisStore | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def settings(self) -> Any:
        return self.deployment.settings

    async def prepare(self, workers: int = 1) -> FaultRun:
        await self.deployment.create_topics()
        self.store = RedisStore.from_settings(self.settings)
        for _ in range(workers):
            self.add_worker()
        await produce(self.settings, self.settings.topics.subscription_events,
                      self.workload.subscription_events())
        await self.wait_subscriptions()
        return self

    def add_worker(self, wait_ready: bool = True) -> Worker:
        worker = Worker(self.deployment).start(wait_ready=wait_ready, timeout=120)
        self.workers.append(worker)
        return worker

    async def wait_subscriptions(self, timeout: float = 60.0) -> None:
        assert self.store is not None
        deadline = time.monotonic() + timeout
        pending = [d["subscription_id"] for d in self.workload.subs]
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(pending)} subscriptions not in Redis after {timeout}s")
            still = []
            for sub in pending:
                if await self.store.snapshot(sub, self.workload.created_ms) is None:
                    still.append(sub)
            pending = still
            if pending:
                await asyncio.sleep(0.2)

    async def send(self, records: list[Record] | None = None,
                   pace: Callable[[int], Any] | None = None, chunk: int = 2000) -> None:
        await produce(self.settings, self.settings.topics.cdr,
                      self.workload.records if records is None else records, pace, chunk)

    def expected(self) -> Expected:
        return expect(self.workload.subs, self.workload.records)

    async def collect(self, expected: Expected | None, timeout: float = 300.0,
                      progress: Callable[[Outputs], Any] | None = None) -> Outputs:
        """Wait for every output (`expected=None`: until the outputs settle) and until
        the group has committed all input."""
        seen = await Outputs.read(self.settings, expected, timeout, progress)
        await wait_lag_zero(self.settings, self.settings.topics.cdr, 120)
        return seen

    async def finish(self, expected: Expected | None = None, timeout: float = 300.0,
                     progress: Callable[[Outputs], Any] | None = None) -> tuple[Verdict, Outputs]:
        """`collect`, then check the end state against the reference model."""
        assert self.store is not None
        expected = expected or self.expected()
        seen = await self.collect(expected, timeout, progress)
        verdict = await verify(self.store, expected, seen)
        return verdict, seen

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.process is not None and w.process.poll() is None]

    def sigkill(self, worker: Worker) -> None:
        worker.kill(signal.SIGKILL)

    async def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.store is not None:
            await self.store.close()

    def retry_delays(self) -> list[float]:
        delays: list[float] = []
        for worker in self.workers:
            delays += [float(m.group(1)) for m in RETRY_LINE.finditer(
                worker.log_path.read_text(errors="replace"))]
        return delays
