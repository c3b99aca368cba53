"""What a subscription upsert may change (SPEC §5.8 and docs/design.md).

A subscription's billing account and currency are fixed for life: a replayed CDR
re-emits its rated call and charge with the subscription's current values of both,
so changing either would break "identical re-emission". Every other field of the
plan may change, and takes effect for the next rating.
"""

from __future__ import annotations

from typing import Final

from rater.records.shapes import Subscription

IMMUTABLE_FIELDS: Final = ("billing_account_id", "currency")


class ImmutableFieldError(ValueError):
    """An upsert tried to change a subscription's billing account or currency."""

    def __init__(self, subscription_id: str, field_name: str) -> None:
        super().__init__(f"{field_name} of subscription {subscription_id!r} cannot change")
        self.field_name = field_name


def check_upsert(current: Subscription | None, new: Subscription) -> None:
    """Raise ImmutableFieldError when `new` would change a field fixed for life."""
    if current is None:
        return
    for name in IMMUTABLE_FIELDS:
        if getattr(current, name) != getattr(new, name):
            raise ImmutableFieldError(new.subscription_id, name)
