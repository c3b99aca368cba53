"""Input records (SPEC §4): their typed shapes, and their decoding from bytes.

Inputs become these objects only after validation against the JSON Schemas of
`schemas/`, so the rest of the code never meets an unchecked field. Output records
are built by `rater.rating.outputs`.
"""

from rater.records.decode import (
    attempt_from_document,
    cdr_fingerprint,
    decode_attempt,
    decode_cdr,
    decode_subscription_event,
    session_initial_from_document,
    session_terminate_from_document,
    session_update_from_document,
    spend_limit_from_document,
    spend_limit_micro,
    subscription_from_document,
)
from rater.records.schemas import InvalidRecord, parse_json, validate
from rater.records.shapes import (
    ZONES,
    CallAttempt,
    Cdr,
    Direction,
    Increment,
    PaygChange,
    Plan,
    SessionInitial,
    SessionTerminate,
    SessionUpdate,
    SpendLimitChange,
    Subscription,
    Zone,
)
from rater.records.timestamps import parse_timestamp

__all__ = [
    "ZONES",
    "CallAttempt",
    "Cdr",
    "Direction",
    "Increment",
    "InvalidRecord",
    "PaygChange",
    "Plan",
    "SessionInitial",
    "SessionTerminate",
    "SessionUpdate",
    "SpendLimitChange",
    "Subscription",
    "Zone",
    "attempt_from_document",
    "cdr_fingerprint",
    "decode_attempt",
    "decode_cdr",
    "decode_subscription_event",
    "parse_json",
    "parse_timestamp",
    "session_initial_from_document",
    "session_terminate_from_document",
    "session_update_from_document",
    "spend_limit_from_document",
    "spend_limit_micro",
    "subscription_from_document",
    "validate",
]
