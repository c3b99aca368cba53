"""`subscriptions.events` -> the subscription state in Redis that rating reads."""

from __future__ import annotations

from collections.abc import Sequence

from rater.messages import Emit, SourceRecord, dead_letter
from rater.rating.subscription_rules import ImmutableFieldError
from rater.records import InvalidRecord, PaygChange, SpendLimitChange, decode_subscription_event
from rater.service.step import BatchOutput, Step
from rater.service.tally import Tally


class SubscriptionApplier(Step):
    async def apply(self, records: Sequence[SourceRecord]) -> BatchOutput:
        """In order: an upsert followed by a PAYG or limit change of the same subscription
        must stay so. A change carrying a revision applies only when it is newer than the
        stored one (rater.service.audited)."""
        tally = Tally()
        emits: list[Emit] = []
        for record in records:
            try:
                event = decode_subscription_event(record.value or b"", self.max_bytes)
                if isinstance(event, PaygChange):
                    switch = await self.store.set_payg(
                        event.subscription_id, event.enabled, event.revision
                    )
                    if switch is None:
                        raise LookupError(f"subscription {event.subscription_id!r} is not known")
                    tally.subscription_events["payg.changed"] += 1
                elif isinstance(event, SpendLimitChange):
                    changed = await self.store.set_spend_limit(
                        event.subscription_id, event.user_id, event.limit_micro, event.revision
                    )
                    if changed is None:
                        raise LookupError(f"subscription {event.subscription_id!r} is not known")
                    tally.subscription_events["spend_limit.changed"] += 1
                else:
                    await self.store.upsert_subscription(event)
                    tally.subscription_events["subscription.upserted"] += 1
            except (InvalidRecord, ImmutableFieldError) as exc:
                tally.dead_letters[("invalid", "subscription")] += 1
                emits.append(
                    dead_letter(self.topics.dlq, record, "invalid", str(exc), self.clock())
                )
            except LookupError as exc:
                tally.dead_letters[("unknown_subscription", "subscription")] += 1
                emits.append(
                    dead_letter(self.topics.dlq, record, "unknown_subscription", str(exc),
                                self.clock())
                )
        return BatchOutput(emits, tally)
