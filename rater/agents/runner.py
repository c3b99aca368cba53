"""The batch loop every agent shares: process, produce, and only then acknowledge.

Offsets are acknowledged after Redis and every send succeeded. A failure of
Redis or Kafka retries the whole batch with backoff: the Lua scripts dedupe by
call id, so a CDR rated before the failure comes back as its stored result and
is re-emitted identically (SPEC §5.8). The worker never crashes on a batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import RedisError

from rater import metrics
from rater.messages import SourceRecord
from rater.service.rating import BatchOutput

log = logging.getLogger(__name__)

Step = Callable[[Sequence[SourceRecord]], Awaitable[BatchOutput]]
MAX_BACKOFF_S = 5.0
LOGGED_DEAD_LETTERS_PER_BATCH = 10  # a flood of poison records must not flood the log


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


async def process_batch(
    stream: Any, events: Sequence[Any], step: Step, producer: Any, name: str
) -> None:
    records = [source_record(event) for event in events]
    backoff = 0.1
    while True:
        started = asyncio.get_running_loop().time()
        try:
            output = await step(records)
            await produce(producer, output)
        except asyncio.CancelledError:
            raise
        except RedisError as exc:
            metrics.REDIS_ERRORS.labels(name).inc()
            metrics.READY.set(0)
            log.warning("%s: Redis failed (%s); retrying batch of %d in %.1fs",
                        name, exc, len(records), backoff)
        except Exception as exc:
            log.exception("%s: batch of %d failed (%s); retrying in %.1fs",
                          name, len(records), exc, backoff)
        else:
            for event in events:
                await stream.ack(event)
            output.tally.publish(asyncio.get_running_loop().time() - started)
            log_dead_letters(name, output)
            return
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF_S)


async def run_batches(
    stream: Any, step: Step, producer: Any, name: str, batch_max: int, within_s: float
) -> None:
    async for events in stream.noack_take(batch_max, within=within_s):
        await process_batch(stream, events, step, producer, name)
