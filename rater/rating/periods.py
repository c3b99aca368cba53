"""Billing periods (SPEC §5.1): monthly in UTC from the anchor day, clamped to short months."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date

from rater.rating.clock import MS_PER_DAY, day_to_ms


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date  # exclusive: the next period's start

    @property
    def name(self) -> str:
        return self.start.isoformat()

    @property
    def start_ms(self) -> int:
        return day_to_ms(self.start)

    @property
    def end_ms(self) -> int:
        return day_to_ms(self.end)


def period_start_in_month(year: int, month: int, anchor_day: int) -> date:
    """The anchor day, or the month's last day when the month is shorter."""
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


def _shift_month(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def period_of(moment_ms: int, anchor_day: int) -> Period:
    """The period that contains the instant `moment_ms` (ms since the epoch, UTC)."""
    day = date.fromordinal(date(1970, 1, 1).toordinal() + moment_ms // MS_PER_DAY)
    this_start = period_start_in_month(day.year, day.month, anchor_day)
    if day >= this_start:
        start = this_start
        year, month = _shift_month(day.year, day.month, 1)
        end = period_start_in_month(year, month, anchor_day)
    else:
        year, month = _shift_month(day.year, day.month, -1)
        start = period_start_in_month(year, month, anchor_day)
        end = this_start
    return Period(start, end)
