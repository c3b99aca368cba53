"""The Kafka broker stopped and restarted mid-run: the workers resume, nothing lost or doubled."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.faults.conftest import deployment_on, note
from tests.faults.run import FaultRun
from tests.faults.stack import FaultStack
from tests.faults.workload import Workload

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_kafka_broker_restart_mid_run(fault_stack: FaultStack, how: str) -> None:
    run = FaultRun(deployment_on(fault_stack), Workload.generate(51, 25_000))
    events: list[str] = []
    try:
        await run.prepare(workers=2)
        pids = [w.process.pid for w in run.workers if w.process]

        async def outage(after: float, down_s: float) -> None:
            await asyncio.sleep(after)
            stopped = time.monotonic()
            await asyncio.to_thread(fault_stack.stop_kafka, getattr(signal, how))
            events.append(f"broker {how} in {time.monotonic() - stopped:.1f}s")
            await asyncio.sleep(down_s)
            restarted = time.monotonic()
            await asyncio.to_thread(fault_stack.start_kafka)
            events.append(f"down {restarted - stopped:.1f}s, back in "
                          f"{time.monotonic() - restarted:.1f}s")

        async def pace(sent: int) -> None:  # faster than the workers: a backlog builds
            await asyncio.sleep(0.2)

        started = time.monotonic()
        fault = asyncio.create_task(outage(2.5, 8.0))
        await run.send(pace=pace)
        await fault
        verdict, _ = await run.finish(timeout=400)
        alive = [w.process.pid for w in run.alive() if w.process]
        assert alive == pids, f"a worker exited: started {pids}, alive {alive}"
        for worker in run.alive():
            worker.wait_ready(60)
        note(f"kafka restart ({how})", f"2 workers, {'; '.join(events)}: {verdict.line()} in "
                                       f"{time.monotonic() - started:.0f}s")
    finally:
        await run.close()
