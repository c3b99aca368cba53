"""The delivery contract every consumer of the worker keeps: process, produce, await every
broker ack, and only then acknowledge (Faust agents) or commit (the direct CDR consumer).

A Redis or Kafka failure retries the whole batch with backoff (`Retry`): the Lua scripts
dedupe by call id, so a CDR rated before the failure comes back as its stored result and
is re-emitted identically (SPEC §5.8). The worker never crashes on a batch. What a batch
counts in metrics and logs is published once it is acknowledged (`settle`), so a retried
batch is not counted twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from rater import metrics
from rater.messages import SourceRecord
from rater.readiness import READINESS
from rater.service.step import BatchOutput
from rater.store import StoreUnavailable

log = logging.getLogger(__name__)

Step = Callable[[Sequence[SourceRecord]], Awaitable[BatchOutput]]
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
LOGGED_DEAD_LETTERS_PER_BATCH = 10  # a flood of poison records must not flood the log


class Retry:
    """The backoff of one batch: 0.1 s, doubling up to MAX_BACKOFF_S; every failure is
    counted and logged (a Redis failure also clears readiness until the next probe)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.delay = FIRST_BACKOFF_S

    def failed(self, exc: BaseException, what: str) -> float:
        """Report the failure of `what`; returns the seconds to wait before trying again."""
        delay, self.delay = self.delay, min(self.delay * 2, MAX_BACKOFF_S)
        if isinstance(exc, StoreUnavailable):
            metrics.REDIS_ERRORS.labels(self.name).inc()
            READINESS.store_failed()
            log.warning("%s: Redis failed (%s); retrying %s in %.1fs", self.name, exc, what,
                        delay)
        else:
            log.warning("%s: %s failed (%s: %s); retrying in %.1fs", self.name, what,
                        type(exc).__name__, exc, delay, exc_info=exc)
        return delay

    async def wait(self, exc: BaseException, what: str) -> None:
        await asyncio.sleep(self.failed(exc, what))


def settle(name: str, output: BatchOutput, elapsed_s: float) -> None:
    """What an acknowledged batch counts: its metrics, and its dead letters' log lines."""
    output.tally.publish(elapsed_s)
    log_dead_letters(name, output)


def log_dead_letters(name: str, output: BatchOutput) -> None:
    """One WARNING per dead letter (reason, ids, source) for the first few of a batch,
    then one summary line with the counts by reason of the rest."""
    letters = [emit.log_fields for emit in output.emits if emit.log_fields is not None]
    for fields in letters[:LOGGED_DEAD_LETTERS_PER_BATCH]:
        ids = " ".join(f"{k}={fields[k]}" for k in ("subscription_id", "call_id", "attempt_id")
                       if k in fields)
        log.warning("%s: dead letter %s%s: %s", name, fields["reason"],
                    f" ({ids})" if ids else "", fields["detail"],
                    extra={"agent": name, **fields})
    rest = letters[LOGGED_DEAD_LETTERS_PER_BATCH:]
    if rest:
        reasons = Counter(str(fields["reason"]) for fields in rest)
        log.warning("%s: %d more dead letters in this batch (%s)", name, len(rest),
                    ", ".join(f"{reason}={n}" for reason, n in sorted(reasons.items())),
                    extra={"agent": name, "dead_letters": len(rest), "reasons": dict(reasons)})


# ------------------------------------------------------------ Faust agents ---

def source_record(event: Any) -> SourceRecord:
    message = event.message
    return SourceRecord(message.topic, message.partition, message.offset, message.key,
                        message.value)


async def produce(producer: Any, output: BatchOutput) -> None:
    """Send every record, then wait until the broker has them all."""
    pending = [
        await producer.send(emit.topic, emit.key, emit.value, None, None, None)
        for emit in output.emits
    ]
    if pending:
        await asyncio.gather(*pending)


async def process_events(stream: Any, events: Sequence[Any], step: Step, producer: Any,
                         name: str) -> None:
    """One batch of a Faust agent, retried until its outputs are acknowledged; then acked."""
    records = [source_record(event) for event in events]
    retry = Retry(name)
    while True:
        started = asyncio.get_running_loop().time()
        try:
            output = await step(records)
            await produce(producer, output)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await retry.wait(exc, f"batch of {len(records)}")
            continue
        for event in events:
            await stream.ack(event)
        settle(name, output, asyncio.get_running_loop().time() - started)
        return


async def run_agent(stream: Any, step: Step, producer: Any, name: str, batch_max: int,
                    within_s: float) -> None:
    # noack_take: `take()` would ack a batch even when processing raised
    async for events in stream.noack_take(batch_max, within=within_s):
        await process_events(stream, events, step, producer, name)
