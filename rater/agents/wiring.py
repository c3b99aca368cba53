"""Registers the worker's consumers on the Faust app: the agents for call attempts and
subscription events, and the CDR consumer of `RATER_CDR_CONSUMER` (the direct one, the
`rate-cdrs` Faust agent, or none)."""

from __future__ import annotations

from typing import Any

from rater.agents.cdr_consumer import register_direct_consumer
from rater.agents.delivery import run_agent
from rater.config import Settings
from rater.service.decisions import AttemptDecider
from rater.service.rating import CdrBatchRater
from rater.service.subscriptions import SubscriptionApplier


def register_agents(
    app: Any,
    settings: Settings,
    rater: CdrBatchRater,
    decider: AttemptDecider,
    applier: SubscriptionApplier,
) -> None:
    topics = settings.topics

    def source(name: str) -> Any:
        return app.topic(name, key_serializer="raw", value_serializer="raw")

    # concurrency=1 everywhere: faust issue 606 can commit past an in-flight message;
    # scale with partitions and workers instead.
    if settings.cdr_consumer == "direct":
        register_direct_consumer(app, settings, rater)
    elif settings.cdr_consumer == "faust":
        @app.agent(source(topics.cdr), name="rate-cdrs", concurrency=1)
        async def rate_cdrs(stream: Any) -> None:
            await run_agent(stream, rater.rate, app.producer, "rate",
                            settings.batch_max, settings.batch_within_s)

    @app.agent(source(topics.attempts), name="decide-attempts", concurrency=1)
    async def decide_attempts(stream: Any) -> None:
        await run_agent(stream, decider.decide_batch, app.producer, "decide",
                        settings.batch_max, settings.batch_within_s)

    @app.agent(source(topics.subscription_events), name="apply-subscriptions", concurrency=1)
    async def apply_subscriptions(stream: Any) -> None:
        await run_agent(stream, applier.apply, app.producer, "subscriptions",
                        settings.batch_max, settings.batch_within_s)
