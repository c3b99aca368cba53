"""A slow Redis makes the worker slow, not wrong.

Redis is paused with SIGSTOP/SIGCONT (DEBUG SLEEP is disabled in Redis 7 by
default): first 80 % of the time in 0.4 s stalls, then one 12 s stall, longer
than the client's 10 s socket timeout, so a script call times out on the
worker's side while Redis still has it queued: the retry must come back as
the stored results (dedupe by call id), not as a second rating.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.faults.conftest import deployment_on, note
from tests.faults.run import FaultRun
from tests.faults.stack import FaultStack
from tests.faults.workload import Workload, wait_lag_zero

pytestmark = pytest.mark.faults
PHASE = 10_000


class Stutter:
    """Pause Redis `stop_s`, let it run `run_s`, until stopped (always resumes it)."""

    def __init__(self, stack: FaultStack, stop_s: float, run_s: float) -> None:
        self.stack, self.stop_s, self.run_s = stack, stop_s, run_s
        self.cycles = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            self.stack.pause_redis()
            try:
                self._done.wait(self.stop_s)
            finally:
                self.stack.resume_redis()
            self.cycles += 1
            self._done.wait(self.run_s)

    def __enter__(self) -> Stutter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(10)
        self.stack.resume_redis()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def test_slow_redis_makes_the_worker_slow_not_wrong(fault_stack: FaultStack) -> None:
    workload = Workload.generate(81, 3 * PHASE, dup_ratio=0.0, conflict_ratio=0.0)
    run = FaultRun(deployment_on(fault_stack), workload)
    try:
        await run.prepare(workers=1)
        settings = run.settings
        topic = settings.topics.cdr
        phases = [workload.records[i * PHASE:(i + 1) * PHASE] for i in range(3)]

        await run.send(phases[0])
        normal = await wait_lag_zero(settings, topic, 120, interval=0.1)

        with Stutter(fault_stack, stop_s=0.4, run_s=0.1) as stutter:
            await run.send(phases[1])
            slow = await wait_lag_zero(settings, topic, 300, interval=0.1)
        cycles = stutter.cycles

        await run.send(phases[2])
        fault_stack.pause_redis()
        try:
            await asyncio.sleep(12.0)
        finally:
            fault_stack.resume_redis()
        after_stall = await wait_lag_zero(settings, topic, 120, interval=0.1)

        verdict, _ = await run.finish(timeout=300)
        worker = run.workers[0]
        assert worker.process is not None and worker.process.poll() is None
        timeouts = worker.log_path.read_text(errors="replace").count("Timeout")
        # the input has no duplicates: every "duplicate" is a retried batch that Redis had
        # already rated when the client gave up on it
        replays = metric(worker.get("/metrics").decode(), 'rater_cdrs_total{outcome="duplicate"}')
        assert slow > 2 * normal, f"a stuttering Redis should slow rating: {slow} vs {normal}"
        assert timeouts >= 1, "the 12 s stall should have timed out a script call"
        note("backpressure",
             f"{PHASE} CDRs drained in {normal:.1f}s with Redis healthy "
             f"({PHASE / normal:.0f}/s), {slow:.1f}s with Redis paused 80 % of the time "
             f"({PHASE / slow:.0f}/s, {cycles} pauses), {after_stall:.1f}s after a 12 s stall "
             f"({timeouts} client timeouts; the retry found {replays:.0f} CDRs already rated "
             f"and re-emitted their stored results): {verdict.line()}")
    finally:
        fault_stack.resume_redis()
        await run.close()
