"""Call attempts -> permit/block decisions (SPEC §6), one Redis round trip per attempt.

`AttemptDecider.decide` serves both the `calls.attempts` agent and
`POST /v1/authorize`, so the two channels can never disagree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson

from rater.messages import Emit, SourceRecord, dead_letter
from rater.rating.decision import Decision, decide
from rater.rating.outputs import decision_record
from rater.records import CallAttempt, InvalidRecord, decode_attempt
from rater.service.step import BatchOutput, Step
from rater.service.tally import Tally


class AttemptDecider(Step):
    async def decide(self, attempt: CallAttempt) -> Decision:
        if attempt.is_free:  # permitted whatever the subscription's state: no Redis needed
            return decide(attempt, None)
        now = self.clock()
        at = attempt.at_ms if attempt.at_ms is not None else now
        # `remaining` less what sessions reserve (SPEC §11), expired ones released first,
        # and the user's spend limit with what counts against it (SPEC §14)
        snapshot = await self.store.snapshot(attempt.subscription_id, at, now,
                                             attempt.user_id)
        return decide(attempt, snapshot.pool_state(attempt.zone) if snapshot else None)

    async def decide_batch(self, records: Sequence[SourceRecord]) -> BatchOutput:
        now = self.clock()
        tally = Tally()
        emits: list[Emit] = []
        attempts: list[CallAttempt] = []
        for record in records:
            try:
                attempts.append(decode_attempt(record.value or b"", self.max_bytes))
            except InvalidRecord as exc:
                tally.dead_letters[("invalid", "attempt")] += 1
                emits.append(dead_letter(self.topics.dlq, record, "invalid", str(exc), now))
        decisions = await asyncio.gather(*(self.decide(a) for a in attempts))
        for attempt, decision in zip(attempts, decisions, strict=True):
            tally.decisions[(decision.decision, decision.reason, "stream")] += 1
            value = orjson.dumps(decision_record(attempt, decision, now))
            emits.append(Emit(self.topics.decisions, attempt.subscription_id.encode(), value))
        return BatchOutput(emits, tally)
