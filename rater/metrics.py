"""Every Prometheus metric of the rater, in one registry (SPEC §8).

Labels are bounded sets (outcome, zone, kind, reason, currency, topic,
partition): never a subscription, user or call id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

CDRS = Counter(
    "rater_cdrs_total",
    "CDRs rated, by outcome (included, overage, exhausted, blocked, free, duplicate).",
    ["outcome"],
    registry=REGISTRY,
)
BILLABLE_SECONDS = Counter(
    "rater_billable_seconds_total",
    "Billable seconds rated, by zone and kind (included, overage, unbilled).",
    ["zone", "kind"],
    registry=REGISTRY,
)
OVERAGE_AMOUNT = Counter(
    "rater_overage_amount_total",
    "Overage charged, in currency units, by currency (a monitoring view; invoices use "
    "the exact charge records).",
    ["currency"],
    registry=REGISTRY,
)
CHARGES = Counter(
    "rater_overage_charges_total",
    "Overage charge records emitted (replays included).",
    registry=REGISTRY,
)
ALERTS = Counter(
    "rater_threshold_alerts_total",
    "Threshold alerts emitted, by threshold.",
    ["threshold"],
    registry=REGISTRY,
)
DECISIONS = Counter(
    "rater_decisions_total",
    "Permit/block decisions, by decision, reason and channel (stream or http).",
    ["decision", "reason", "channel"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "rater_dead_letters_total",
    "Records sent to the dead-letter topic, by reason and source topic.",
    ["reason", "source"],
    registry=REGISTRY,
)
RATING_BATCH_SECONDS = Histogram(
    "rater_rating_batch_duration_seconds",
    "Time to rate one batch of CDRs: decode, Redis, send, until acknowledged.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
RATING_BATCH_SIZE = Histogram(
    "rater_rating_batch_size",
    "CDRs per rating batch.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
    registry=REGISTRY,
)
AUTHORIZE_SECONDS = Histogram(
    "rater_authorize_duration_seconds",
    "Latency of POST /v1/authorize, request in to answer out.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "rater_http_requests_total",
    "HTTP API requests, by route and status code.",
    ["route", "status"],
    registry=REGISTRY,
)
REDIS_ERRORS = Counter(
    "rater_redis_errors_total",
    "Redis calls that failed (each retry counts), by operation.",
    ["operation"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "rater_consumer_lag_messages",
    "Messages not yet read: partition highwater minus the next offset to read.",
    ["topic", "partition"],
    registry=REGISTRY,
)
SUBSCRIPTION_EVENTS = Counter(
    "rater_subscription_events_total",
    "Subscription events applied, by type.",
    ["type"],
    registry=REGISTRY,
)
READY = Gauge(
    "rater_ready",
    "1 when the worker has its partitions assigned and Redis answers, else 0.",
    registry=REGISTRY,
)

# Credit-control sessions (SPEC §11). The two gauges are deployment-wide: every worker's
# sweeper adds up the session totals Redis keeps (rater.service.sessions), so every worker
# reports the same value; aggregate them with max, never sum.
SESSIONS = Gauge(
    "rater_sessions",
    "Sessions holding a reservation in the whole deployment, by state (open, terminated: "
    "waiting for its CDR), as of this worker's last sweep.",
    ["state"],
    registry=REGISTRY,
)
SESSION_RESERVED_SECONDS = Gauge(
    "rater_session_reserved_seconds",
    "Seconds reserved by sessions in the whole deployment, by zone, as of this worker's last "
    "sweep.",
    ["zone"],
    registry=REGISTRY,
)
SESSION_REQUESTS = Counter(
    "rater_session_requests_total",
    "Session requests, by request (initial, update, terminate), result (permit, block, or "
    "error) and reason (the answer's reason, or the error code).",
    ["request", "result", "reason"],
    registry=REGISTRY,
)
SESSION_REQUEST_SECONDS = Histogram(
    "rater_session_request_duration_seconds",
    "Latency of session requests, request in to answer out, by request.",
    ["request"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=REGISTRY,
)
SESSION_EXPIRATIONS = Counter(
    "rater_session_expirations_total",
    "Sessions whose reservation was released because they expired, by rule (validity: an "
    "open session not updated in time; cdr_wait: a terminated session whose CDR never came).",
    ["rule"],
    registry=REGISTRY,
)
SESSIONS_CLOSED_BY_CDR = Counter(
    "rater_sessions_closed_by_cdr_total",
    "Sessions whose reservation was released by the rating of their call's CDR.",
    registry=REGISTRY,
)
# every bounded label of the session families shows from the start, at 0: `increase()` in
# the alert rules then sees the first expirations as an increase
for _state in ("open", "terminated"):
    SESSIONS.labels(_state)
for _zone in ("domestic", "international"):
    SESSION_RESERVED_SECONDS.labels(_zone)
for _rule in ("validity", "cdr_wait"):
    SESSION_EXPIRATIONS.labels(_rule)
for _request in ("initial", "update", "terminate"):
    SESSION_REQUEST_SECONDS.labels(_request)


def exposition() -> tuple[bytes, str]:
    """The body and content type of `GET /metrics`."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
