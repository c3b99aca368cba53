"""Metric increments gathered while processing, published only after the batch is acked,
so a retried batch is not counted twice."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from rater import metrics
from rater.rating.money import MICRO_PER_UNIT


@dataclass(slots=True)
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: Counter[tuple[str, str]] = field(default_factory=Counter)
    amount_micro: Counter[str] = field(default_factory=Counter)
    charges: int = 0
    alerts: Counter[int] = field(default_factory=Counter)
    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)
    decisions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    subscription_events: Counter[str] = field(default_factory=Counter)
    rating_batch_size: int = 0  # CDRs in the batch, when the batch was a rating batch
    sessions_closed: int = 0  # sessions released by their call's CDR (SPEC §11.5)
    session_expirations: Counter[str] = field(default_factory=Counter)  # by rule

    def publish(self, elapsed_s: float) -> None:
        """Count the batch; `elapsed_s` is from taking it to its acknowledgement."""
        if self.rating_batch_size:
            metrics.RATING_BATCH_SECONDS.observe(elapsed_s)
            metrics.RATING_BATCH_SIZE.observe(self.rating_batch_size)
        for outcome, n in self.outcomes.items():
            metrics.CDRS.labels(outcome).inc(n)
        for (zone, kind), n in self.seconds.items():
            metrics.BILLABLE_SECONDS.labels(zone, kind).inc(n)
        for currency, micro in self.amount_micro.items():
            # prometheus counters are floats: a monitoring view, never the invoice
            metrics.OVERAGE_AMOUNT.labels(currency).inc(float(Decimal(micro) / MICRO_PER_UNIT))
        if self.charges:
            metrics.CHARGES.inc(self.charges)
        for threshold, n in self.alerts.items():
            metrics.ALERTS.labels(str(threshold)).inc(n)
        for (reason, source), n in self.dead_letters.items():
            metrics.DEAD_LETTERS.labels(reason, source).inc(n)
        for (decision, reason, channel), n in self.decisions.items():
            metrics.DECISIONS.labels(decision, reason, channel).inc(n)
        for kind, n in self.subscription_events.items():
            metrics.SUBSCRIPTION_EVENTS.labels(kind).inc(n)
        if self.sessions_closed:
            metrics.SESSIONS_CLOSED_BY_CDR.inc(self.sessions_closed)
        for rule, n in self.session_expirations.items():
            metrics.SESSION_EXPIRATIONS.labels(rule).inc(n)
