"""Query: a billing account's overage charges of a period, totalled (SPEC §12).

Totals by currency, and per currency by subscription, zone, user and day (the UTC
day the call started). Sums are PostgreSQL `numeric`, exact, written with 6
decimal places (every charge has 6: SPEC §5.6). Amounts of different currencies
are never added together.

The period is a start date (`2026-11-01`: the periods starting that day) or a month
(`2026-11`: every period starting in November 2026, whatever the anchor day of
each subscription of the account).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import asyncpg

from rater.history.calls import InvalidQuery
from rater.history.partitions import add_months

MICRO = Decimal("0.000001")
_MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, slots=True)
class Total:
    """One group's total: `key` names the group (a subscription, zone, user or day),
    empty for the currency's own total."""

    currency: str
    key: str
    amount: str  # decimal string, 6 places
    charges: int
    overage_s: int


@dataclass(frozen=True, slots=True)
class ChargeTotals:
    billing_account_id: str
    period_from: date  # the periods counted start on or after this day …
    period_to: date  # … and before this one
    by_currency: list[Total]
    by_subscription: list[Total]
    by_zone: list[Total]
    by_user: list[Total]
    by_day: list[Total]


def period_range(period: str) -> tuple[date, date]:
    """`2026-11-01` -> that day only; `2026-11` -> the whole month."""
    month = _MONTH.fullmatch(period)
    try:
        if month is not None:
            first = date(int(month[1]), int(month[2]), 1)
            return first, add_months(first, 1)
        day = date.fromisoformat(period)
    except ValueError:
        raise InvalidQuery(f"period: expected YYYY-MM-DD or YYYY-MM, got {period!r}") from None
    if len(period) != 10:
        raise InvalidQuery(f"period: expected YYYY-MM-DD or YYYY-MM, got {period!r}")
    return day, date.fromordinal(day.toordinal() + 1)


_GROUPS = ("subscription", "zone", "user", "day")

# One scan of the account's charges, every total at once. GROUPING() tells the
# grouping set a row belongs to: 0 means the column is grouped on in that set.
_TOTALS = """
SELECT currency,
       CASE WHEN GROUPING(subscription_id) = 0 THEN 'subscription'
            WHEN GROUPING(zone) = 0 THEN 'zone'
            WHEN GROUPING(user_id) = 0 THEN 'user'
            WHEN GROUPING(day) = 0 THEN 'day'
            ELSE '' END AS grouped_by,
       COALESCE(subscription_id, zone, user_id, day::text, '') AS key,
       sum(amount) AS amount, count(*) AS charges, sum(overage_s) AS overage_s
FROM (SELECT currency, subscription_id, zone, user_id, amount, overage_s,
             (started_at AT TIME ZONE 'UTC')::date AS day
      FROM overage_charges
      WHERE billing_account_id = $1 AND period >= $2 AND period < $3) AS charges
GROUP BY GROUPING SETS ((currency), (currency, subscription_id), (currency, zone),
                        (currency, user_id), (currency, day))
ORDER BY currency, grouped_by, key
"""


def decimal_text(amount: Decimal) -> str:
    return f"{amount.quantize(MICRO):f}"


async def charge_totals(conn: asyncpg.Connection | asyncpg.Pool, billing_account_id: str,
                        period: str) -> ChargeTotals:
    start, end = period_range(period)
    groups: dict[str, list[Total]] = {name: [] for name in ("", *_GROUPS)}
    for row in await conn.fetch(_TOTALS, billing_account_id, start, end):
        groups[row["grouped_by"]].append(Total(
            row["currency"], row["key"], decimal_text(row["amount"]), row["charges"],
            row["overage_s"]))
    return ChargeTotals(billing_account_id, start, end, groups[""], groups["subscription"],
                        groups["zone"], groups["user"], groups["day"])
