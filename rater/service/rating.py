"""CDR batch -> Redis (one script call per slot) -> rated calls, charges, alerts, dead letters."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import orjson

from rater.config import Settings
from rater.messages import Emit, SourceRecord, dead_letter
from rater.rating import outputs
from rater.rating.clock import RatingClock, now_ms
from rater.rating.results import CallRating, Rejection
from rater.records import InvalidRecord, cdr_fingerprint, decode_cdr
from rater.service.step import BatchOutput, Step
from rater.service.tally import Tally
from rater.store import RatingInput, RatingRequest, RedisStore, rating_results

_T = TypeVar("_T")


@dataclass(slots=True)
class PreparedBatch:
    """A decoded batch waiting for its Redis step (CdrBatchRater.prepare)."""

    now: int
    tally: Tally
    emits: list[Emit]  # dead letters of records that did not decode
    inputs: list[RatingInput]
    sources: list[SourceRecord]  # the record of each input
    request: RatingRequest | None = None  # the inputs' script calls, ready to send


def _run(steps: Generator[None, None, _T]) -> _T:
    """All of a stepped computation at once; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            value: _T = done.value
            return value


class CdrBatchRater(Step):
    def __init__(
        self, store: RedisStore, settings: Settings, clock: Callable[[], int] = now_ms
    ) -> None:
        super().__init__(store, settings, clock)
        self.grace_ms = settings.late_grace_s * 1000
        self.future_ms = settings.future_tolerance_s * 1000

    async def rate(self, records: Sequence[SourceRecord]) -> BatchOutput:
        batch = self.prepare(records)
        return self.finish(batch, await self.call_redis(batch))

    # The three steps of `rate`, apart, so a consumer can overlap one batch's Redis call
    # with the CPU work of its neighbours (rater.agents.cdr_consumer); `rate` is all three.
    # Only `call_redis` waits on I/O: the next batch's request is built and the previous
    # batch's replies parsed while Redis runs a script, never in between two scripts.

    def prepare(self, records: Sequence[SourceRecord]) -> PreparedBatch:
        """Decode and validate, and build the Redis request (CPU only): invalid records
        become dead letters at once."""
        return _run(self.prepare_steps(records, len(records) or 1))

    def prepare_steps(
        self, records: Sequence[SourceRecord], step: int
    ) -> Generator[None, None, PreparedBatch]:
        """`prepare`, pausing after every `step` records (the generator's value is the
        batch): a consumer that shares its event loop with latency-sensitive work, such as
        the HTTP API, yields to it between steps instead of holding the loop for the whole
        batch (docs/performance.md). The outcome is exactly `prepare`'s."""
        now = self.clock()
        batch = PreparedBatch(now, Tally(rating_batch_size=len(records)), [], [], [])
        for start in range(0, len(records), step):
            if start:
                yield
            for record in records[start:start + step]:
                try:
                    cdr = decode_cdr(record.value or b"", self.max_bytes)
                except InvalidRecord as exc:
                    batch.emits.append(
                        self._reject(record, "invalid", str(exc), now, batch.tally))
                    continue
                batch.inputs.append(RatingInput(cdr, cdr_fingerprint(cdr)))
                batch.sources.append(record)
        if batch.inputs:
            clock = RatingClock(now, self.grace_ms, self.future_ms)
            batch.request = self.store.rating_request(batch.inputs, clock, now)
        return batch

    async def call_redis(self, batch: PreparedBatch) -> list[str]:
        """The Redis step: one script call (per hash slot) for the whole batch; the raw
        replies, for `finish`."""
        if batch.request is None:
            return []
        return await self.store.send_rating(batch.request)

    def finish(self, batch: PreparedBatch, replies: Sequence[str]) -> BatchOutput:
        """The output records (CPU only), after the batch's dead letters for invalid input."""
        return _run(self.finish_steps(batch, replies, len(batch.inputs) or 1))

    def finish_steps(
        self, batch: PreparedBatch, replies: Sequence[str], step: int
    ) -> Generator[None, None, BatchOutput]:
        """`finish`, pausing after parsing the replies and after every `step` rated CDRs
        (see `prepare_steps`); the outcome is exactly `finish`'s."""
        emits, tally, now = batch.emits, batch.tally, batch.now
        results: Sequence[CallRating | Rejection] = (
            rating_results(batch.request, replies) if batch.request is not None else ())
        rated = list(zip(batch.inputs, batch.sources, results, strict=True))
        for start in range(0, len(rated), step):
            yield
            for item, record, result in rated[start:start + step]:
                if isinstance(result, Rejection):
                    ids = {"subscription_id": item.cdr.subscription_id,
                           "call_id": item.cdr.call_id}
                    emits.append(
                        self._reject(record, result.reason, result.detail, now, tally, ids))
                else:
                    self._emit_rating(item, result, emits, tally)
        return BatchOutput(emits, tally)

    def _reject(
        self, record: SourceRecord, reason: str, detail: str, now: int, tally: Tally,
        ids: dict[str, str] | None = None,
    ) -> Emit:
        tally.dead_letters[(reason, "cdr")] += 1
        return dead_letter(self.topics.dlq, record, reason, detail, now, ids)

    def _emit_rating(
        self, item: RatingInput, rating: CallRating, emits: list[Emit], tally: Tally
    ) -> None:
        cdr = item.cdr
        key = cdr.subscription_id.encode()
        rated, charge = outputs.call_records(cdr, rating)
        emits.append(Emit(self.topics.rated, key, orjson.dumps(rated)))
        if charge is not None:
            emits.append(Emit(self.topics.charges, key, orjson.dumps(charge)))
            tally.charges += 1
        for crossing in rating.alerts:
            alert = outputs.threshold_alert(cdr.subscription_id, crossing)
            emits.append(Emit(self.topics.alerts, key, orjson.dumps(alert)))
            tally.alerts[crossing.threshold] += 1
        if rating.replayed:
            tally.outcomes["duplicate"] += 1
            return
        if rating.session == "closed":
            tally.sessions_closed += 1
        elif rating.session:
            tally.session_expirations[rating.session] += 1
        tally.outcomes[rating.outcome] += 1
        for kind, seconds in (("included", rating.included_s), ("overage", rating.overage_s),
                              ("unbilled", rating.unbilled_s)):
            if seconds:
                tally.seconds[(cdr.zone, kind)] += seconds
        if rating.amount_micro:
            tally.amount_micro[rating.currency] += rating.amount_micro
