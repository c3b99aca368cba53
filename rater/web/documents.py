"""Request parsing and response documents of the HTTP API, free of any HTTP framework.

What SPEC §7 leaves open is decided here and listed in `rater.web.api`'s docstring:
the users cursor, `limit`, the body size limit, the usage document's shape.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from rater.rating.clock import format_ms
from rater.rating.money import format_micro
from rater.rating.outputs import spend_limit_text
from rater.records import (
    ZONES,
    CallAttempt,
    InvalidRecord,
    attempt_from_document,
    spend_limit_from_document,
)
from rater.store import SubscriptionSnapshot, UserUsage
from rater.web.errors import MAX_BODY_BYTES, ApiError

DEFAULT_USERS_LIMIT: Final = 100
MAX_USERS_LIMIT: Final = 1000
MAX_USER_ID: Final = 128  # as on a CDR

_PERIOD_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_JSON_OBJECT_HINT: Final = 'expected a JSON object {"enabled": true|false}'

Document = dict[str, Any]


# ------------------------------------------------------------------ bodies ---


def parse_attempt(body: bytes) -> CallAttempt:
    """A call attempt (SPEC §4) from a request body; ApiError 422 when it is not one."""
    document = parse_json_body(body)
    try:
        return attempt_from_document(document)
    except InvalidRecord as exc:
        raise ApiError.invalid(f"not a call attempt: {exc}") from None


def parse_payg_body(body: bytes) -> bool:
    """`{"enabled": bool}` exactly: no other field, no 0/1, no strings."""
    document = parse_json_body(body)
    if not isinstance(document, dict):
        raise ApiError.invalid(_JSON_OBJECT_HINT)
    unknown = sorted(k for k in document if k != "enabled")
    if unknown:
        shown = ", ".join(repr(k[:64]) for k in unknown[:5])
        raise ApiError.invalid(f"unknown field(s) {shown}; {_JSON_OBJECT_HINT}")
    if "enabled" not in document:
        raise ApiError.invalid(f"missing field 'enabled'; {_JSON_OBJECT_HINT}")
    enabled = document["enabled"]
    if not isinstance(enabled, bool):
        raise ApiError.invalid("field 'enabled' must be true or false")
    return enabled


def parse_spend_limit_body(body: bytes) -> int | None:
    """`{"amount": "5.00"}` or `{"amount": null}` exactly (SPEC §14): the limit in
    micro-units, None for no limit; 422 for anything else."""
    return spend_limit_of(parse_json_body(body))


def spend_limit_of(document: Any) -> int | None:
    """The limit a `{"amount"}` document asks for (the console builds one from its form)."""
    try:
        return spend_limit_from_document(document)
    except InvalidRecord as exc:
        raise ApiError.invalid(
            f'expected {{"amount": "<decimal, at most 6 places, 0 to 1000000000>" | null}}: '
            f"{exc}") from None


def check_user_id(user_id: str) -> str:
    """A user id as CDRs carry them: 1-128 characters; 422 otherwise."""
    if not 1 <= len(user_id) <= MAX_USER_ID:
        raise ApiError.invalid(f"user_id must have 1 to {MAX_USER_ID} characters")
    return user_id


def parse_json_body(body: bytes) -> Any:
    """Any JSON body; 413 over the size limit, 422 when empty or not JSON."""
    if len(body) > MAX_BODY_BYTES:  # readers check already; this guards direct callers
        raise ApiError.too_large(len(body))
    if not body.strip():
        raise ApiError.invalid("empty body; expected JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError.invalid(f"body is not JSON: {exc}") from None


# ----------------------------------------------------------------- queries ---


@dataclass(frozen=True, slots=True)
class Cursor:
    period: str
    offset: int

    def encode(self) -> str:
        raw = orjson.dumps({"p": self.period, "o": self.offset})
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        bad = ApiError(422, "invalid_cursor", "cursor is not one this API returned")
        if not text or len(text) > 200:
            raise bad
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            doc = orjson.loads(raw)
        except (binascii.Error, ValueError):
            raise bad from None
        if not isinstance(doc, dict) or set(doc) != {"p", "o"}:
            raise bad
        period, offset = doc["p"], doc["o"]
        if not isinstance(period, str) or not _PERIOD_RE.match(period):
            raise bad
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise bad
        return cls(period, offset)


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_USERS_LIMIT
    if not raw.isdigit() or len(raw) > 6:
        raise ApiError(422, "invalid_limit", f"limit must be an integer 1..{MAX_USERS_LIMIT}")
    limit = int(raw)
    if not 1 <= limit <= MAX_USERS_LIMIT:
        raise ApiError(422, "invalid_limit", f"limit must be an integer 1..{MAX_USERS_LIMIT}")
    return limit


# --------------------------------------------------------------- documents ---


def usage_document(snapshot: SubscriptionSnapshot) -> Document:
    """The cost-management view of SPEC §7 for one subscription's current period."""
    zones: Document = {}
    for zone in ZONES:
        counters = snapshot.zones[zone]
        remaining = snapshot.remaining_s(zone)
        if remaining > 0:
            status = "ok"
        elif snapshot.payg_enabled:
            status = "payg"
        else:
            status = "blocked"
        zones[zone] = {
            "included_s": snapshot.pool_s(zone),
            "used_included_s": counters.used_included_s,
            "remaining_s": remaining,
            "reserved_s": counters.reserved_s,
            "available_s": snapshot.available_s(zone),
            "overage_s": counters.overage_s,
            "unbilled_s": counters.unbilled_s,
            "overage_amount": format_micro(counters.overage_micro),
            "status": status,
        }
    return {
        "subscription_id": snapshot.subscription_id,
        "billing_account_id": snapshot.billing_account_id,
        "period": snapshot.period,
        "period_end": format_ms(snapshot.period_end_ms),
        "payg_enabled": snapshot.payg_enabled,
        "currency": snapshot.currency,
        "zones": zones,
    }


def users_page(
    period: str, users: Mapping[str, UserUsage], offset: int, limit: int
) -> Document:
    """One page of the usage report: total_s descending, then user_id ascending. Each user
    also says the overage amount charged this period and the spend limit (SPEC §14)."""
    rows = []
    for user_id, usage in users.items():
        billable = {zone: int(usage.seconds.get(zone, 0)) for zone in ZONES}
        rows.append((-sum(billable.values()), user_id, billable, usage))
    rows.sort(key=lambda row: (row[0], row[1]))
    page = rows[offset : offset + limit]
    end = offset + len(page)
    return {
        "period": period,
        "users": [
            {"user_id": user_id, "billable_s": billable, "total_s": -negative_total,
             "overage_amount": format_micro(usage.spent_micro),
             "spend_limit": spend_limit_text(usage.limit_micro)}
            for negative_total, user_id, billable, usage in page
        ],
        "next": Cursor(period, end).encode() if end < len(rows) else None,
    }
