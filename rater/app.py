"""The Faust app: topics, agents and web views wired together; no logic lives here.

`faust -A rater.app worker` and `rater worker` both run this app; settings come
from the environment (rater.config).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from rater.agents.wiring import register_agents
from rater.config import Settings
from rater.service.decisions import AttemptDecider
from rater.service.rating import CdrBatchRater
from rater.service.subscriptions import SubscriptionApplier
from rater.store import RedisStore
from rater.web.api import register_api
from rater.web.health import register_health


@dataclass(slots=True)
class Runtime:
    """What the agents and views share in one worker process."""

    settings: Settings
    store: RedisStore
    rater: CdrBatchRater
    decider: AttemptDecider
    applier: SubscriptionApplier


def create_app(settings: Settings) -> tuple[Any, Runtime]:
    app = faust.App(
        settings.app_id,
        broker=settings.kafka_broker_url,
        store="memory://",
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        topic_partitions=settings.topic_partitions,
        topic_disable_leader=True,
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=settings.batch_max * 4,
        stream_buffer_maxsize=settings.batch_max * 8,
        stream_wait_empty=False,
    )
    store = RedisStore.from_settings(settings)
    runtime = Runtime(
        settings=settings,
        store=store,
        rater=CdrBatchRater(store, settings),
        decider=AttemptDecider(store, settings),
        applier=SubscriptionApplier(store, settings),
    )
    register_agents(app, settings, runtime.rater, runtime.decider, runtime.applier)
    register_health(app, runtime.store)
    register_api(app, runtime)
    return app, runtime


settings = Settings.from_env()
app, runtime = create_app(settings)
