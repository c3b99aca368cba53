"""Typed value objects for every input record of SPEC §4 (decoded by `rater.records.decode`).

Outputs are plain dicts built by `rater.rating.outputs`, because they leave the
process as JSON at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Zone = Literal["domestic", "international"]
Direction = Literal["outbound", "inbound"]
ZONES: tuple[Zone, ...] = ("domestic", "international")


@dataclass(frozen=True, slots=True)
class Increment:
    """A billing increment `M/I`: a minimum charge of M seconds, then steps of I seconds."""

    minimum_s: int
    step_s: int

    @classmethod
    def parse(cls, text: str) -> Increment:
        minimum, _, step = text.partition("/")
        return cls(int(minimum), int(step))

    def __str__(self) -> str:
        return f"{self.minimum_s}/{self.step_s}"


@dataclass(frozen=True, slots=True)
class Plan:
    included_minutes_per_license: dict[Zone, int]
    payg_rate_per_minute: dict[Zone, Decimal]
    billing_increment: Increment


@dataclass(frozen=True, slots=True)
class Subscription:
    subscription_id: str
    billing_account_id: str
    licenses: int
    payg_enabled: bool
    billing_anchor_day: int
    currency: str
    plan: Plan

    def included_s(self, zone: Zone) -> int:
        """The zone's pool for one period at the current licence count (SPEC §5.4)."""
        return self.licenses * self.plan.included_minutes_per_license[zone] * 60


# Not frozen: one is built per CDR on the hot path, and a frozen dataclass's __init__
# costs about six times a plain one (docs/performance.md). Never mutate one all the same.
@dataclass(slots=True)
class Cdr:
    call_id: str
    subscription_id: str
    user_id: str
    started_at_ms: int
    duration_s: int
    direction: Direction
    zone: Zone
    emergency: bool
    destination: str | None

    @property
    def is_free(self) -> bool:
        """Inbound and emergency calls never touch the pool (SPEC §5.3)."""
        return self.direction == "inbound" or self.emergency


@dataclass(frozen=True, slots=True)
class CallAttempt:
    attempt_id: str
    subscription_id: str
    user_id: str
    direction: Direction
    zone: Zone
    emergency: bool
    at_ms: int | None

    @property
    def is_free(self) -> bool:
        return self.direction == "inbound" or self.emergency


@dataclass(frozen=True, slots=True)
class PaygChange:
    subscription_id: str
    enabled: bool
    previous: bool | None
    actor: str | None
    role: str | None
    at: str | None
    revision: int | None = None  # set by the API: an event no newer than Redis changes nothing


@dataclass(frozen=True, slots=True)
class SpendLimitChange:
    """`spend_limit.changed` (SPEC §14): a user's monthly limit on overage, in micro-units
    of the subscription's currency (None: no limit)."""

    subscription_id: str
    user_id: str
    limit_micro: int | None
    previous_micro: int | None
    actor: str | None
    role: str | None
    at: str | None
    revision: int | None = None  # set by the API: an event no newer than Redis changes nothing


@dataclass(frozen=True, slots=True)
class SessionInitial:
    """`POST /v1/sessions` (SPEC §11): decide and reserve for a call being set up."""

    session_id: str  # the call_id its CDR will carry
    subscription_id: str
    user_id: str
    direction: Direction
    zone: Zone
    emergency: bool
    requested_s: int
    request_number: int | None

    @property
    def is_free(self) -> bool:
        return self.direction == "inbound" or self.emergency


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """`POST /v1/sessions/{id}/update`: the call's answered seconds so far, and more asked."""

    used_s: int
    requested_s: int
    request_number: int | None
    subscription_id: str | None  # optional: otherwise found from the session id


@dataclass(frozen=True, slots=True)
class SessionTerminate:
    """`POST /v1/sessions/{id}/terminate`: the call's final answered seconds."""

    used_s: int
    request_number: int | None
    subscription_id: str | None
