"""SPEC §5.1: monthly UTC periods from the anchor day, clamped to short months."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rater.rating.periods import Period, period_of, period_start_in_month
from tests.builders import ms

DAY_MS = 86_400_000


def _day_ms(day: date) -> int:
    return (day - date(1970, 1, 1)).days * DAY_MS


# (instant, anchor, expected start, expected end)
CASES = [
    # anchor 1: plain calendar months, month and year boundaries
    ("2026-11-15T10:00:00Z", 1, "2026-11-01", "2026-12-01"),
    ("2026-11-01T00:00:00.000Z", 1, "2026-11-01", "2026-12-01"),
    ("2026-10-31T23:59:59.999Z", 1, "2026-10-01", "2026-11-01"),
    ("2026-12-31T23:59:59.999Z", 1, "2026-12-01", "2027-01-01"),
    ("2027-01-01T00:00:00.000Z", 1, "2027-01-01", "2027-02-01"),
    ("2024-02-29T12:00:00Z", 1, "2024-02-01", "2024-03-01"),
    # anchor 15
    ("2026-01-15T00:00:00.000Z", 15, "2026-01-15", "2026-02-15"),
    ("2026-01-14T23:59:59.999Z", 15, "2025-12-15", "2026-01-15"),
    ("2026-12-20T08:00:00Z", 15, "2026-12-15", "2027-01-15"),
    ("2027-01-03T08:00:00Z", 15, "2026-12-15", "2027-01-15"),
    ("2026-02-28T23:59:59.999Z", 15, "2026-02-15", "2026-03-15"),
    # anchor 28: every month has a 28th, so never clamped
    ("2026-02-28T00:00:00.000Z", 28, "2026-02-28", "2026-03-28"),
    ("2026-02-27T23:59:59.999Z", 28, "2026-01-28", "2026-02-28"),
    ("2024-02-29T00:00:00Z", 28, "2024-02-28", "2024-03-28"),
    ("2026-12-31T23:59:59.999Z", 28, "2026-12-28", "2027-01-28"),
    # anchor 29: clamped to Feb 28 in non-leap years only
    ("2026-02-28T00:00:00.000Z", 29, "2026-02-28", "2026-03-29"),
    ("2026-02-27T23:59:59.999Z", 29, "2026-01-29", "2026-02-28"),
    ("2024-02-28T12:00:00Z", 29, "2024-01-29", "2024-02-29"),
    ("2024-02-29T00:00:00.000Z", 29, "2024-02-29", "2024-03-29"),
    ("2024-02-28T23:59:59.999Z", 29, "2024-01-29", "2024-02-29"),
    ("2028-02-29T00:00:00.000Z", 29, "2028-02-29", "2028-03-29"),
    ("2100-02-28T00:00:00.000Z", 29, "2100-02-28", "2100-03-29"),  # 2100 is not leap
    ("2000-02-29T00:00:00.000Z", 29, "2000-02-29", "2000-03-29"),  # 2000 is leap
    # anchor 30
    ("2026-01-30T00:00:00.000Z", 30, "2026-01-30", "2026-02-28"),
    ("2026-01-29T23:59:59.999Z", 30, "2025-12-30", "2026-01-30"),
    ("2026-02-28T00:00:00.000Z", 30, "2026-02-28", "2026-03-30"),
    ("2026-03-29T23:59:59.999Z", 30, "2026-02-28", "2026-03-30"),
    ("2024-02-29T00:00:00.000Z", 30, "2024-02-29", "2024-03-30"),
    ("2024-02-28T23:59:59.999Z", 30, "2024-01-30", "2024-02-29"),
    ("2026-04-30T00:00:00.000Z", 30, "2026-04-30", "2026-05-30"),
    # anchor 31: Jan 31, Feb 28/29, Mar 31, Apr 30, ...
    ("2026-01-31T00:00:00.000Z", 31, "2026-01-31", "2026-02-28"),
    ("2026-01-30T23:59:59.999Z", 31, "2025-12-31", "2026-01-31"),
    ("2026-02-28T00:00:00.000Z", 31, "2026-02-28", "2026-03-31"),
    ("2026-02-27T23:59:59.999Z", 31, "2026-01-31", "2026-02-28"),
    ("2026-03-30T23:59:59.999Z", 31, "2026-02-28", "2026-03-31"),
    ("2026-03-31T00:00:00.000Z", 31, "2026-03-31", "2026-04-30"),
    ("2026-04-29T23:59:59.999Z", 31, "2026-03-31", "2026-04-30"),
    ("2026-04-30T00:00:00.000Z", 31, "2026-04-30", "2026-05-31"),
    ("2028-02-29T00:00:00.000Z", 31, "2028-02-29", "2028-03-31"),
    ("2028-02-28T23:59:59.999Z", 31, "2028-01-31", "2028-02-29"),
    ("2024-02-29T23:59:59.999Z", 31, "2024-02-29", "2024-03-31"),
    ("2026-12-30T23:59:59.999Z", 31, "2026-11-30", "2026-12-31"),
    ("2026-12-31T00:00:00.000Z", 31, "2026-12-31", "2027-01-31"),
    ("2027-01-30T23:59:59.999Z", 31, "2026-12-31", "2027-01-31"),
]


@pytest.mark.parametrize(("instant", "anchor", "start", "end"), CASES)
def test_period_table(instant: str, anchor: int, start: str, end: str) -> None:
    period = period_of(ms(instant), anchor)
    assert period == Period(date.fromisoformat(start), date.fromisoformat(end))
    assert period.name == start
    assert period.start_ms == _day_ms(date.fromisoformat(start))
    assert period.end_ms == _day_ms(date.fromisoformat(end))
    assert period.start_ms <= ms(instant) < period.end_ms


@pytest.mark.parametrize("anchor", [1, 15, 28, 29, 30, 31])
@pytest.mark.parametrize("year", [2024, 2026, 2028, 2100])
def test_start_instant_and_one_ms_before(anchor: int, year: int) -> None:
    """00:00:00.000 UTC of a start day opens the period; 1 ms earlier is the previous one."""
    for month in range(1, 13):
        start = period_start_in_month(year, month, anchor)
        start_ms = _day_ms(start)
        here = period_of(start_ms, anchor)
        before = period_of(start_ms - 1, anchor)
        assert here.start == start
        assert before.end == start
        assert before.start < start
        assert here.end > start


@pytest.mark.parametrize(
    ("year", "month", "anchor", "expected"),
    [
        (2026, 2, 31, 28),
        (2024, 2, 31, 29),
        (2028, 2, 30, 29),
        (2026, 2, 29, 28),
        (2026, 4, 31, 30),
        (2026, 3, 31, 31),
        (2026, 2, 28, 28),
        (2026, 6, 1, 1),
        (2100, 2, 29, 28),
        (2000, 2, 29, 29),
    ],
)
def test_period_start_in_month_clamps(year: int, month: int, anchor: int, expected: int) -> None:
    assert period_start_in_month(year, month, anchor) == date(year, month, expected)


def test_call_belongs_to_period_of_its_start_even_late_in_the_day() -> None:
    """The day is taken in UTC: 23:30 at -01:00 is already the next day in UTC."""
    assert period_of(ms("2026-01-31T23:30:00-01:00"), 1).name == "2026-02-01"
    assert period_of(ms("2026-02-01T00:30:00+01:00"), 1).name == "2026-01-01"


def test_instants_before_the_epoch() -> None:
    assert period_of(-1, 1) == Period(date(1969, 12, 1), date(1970, 1, 1))
    assert period_of(0, 1) == Period(date(1970, 1, 1), date(1970, 2, 1))


# --- brute-force oracle -----------------------------------------------------------------


def _is_start_day(day: date, anchor: int) -> bool:
    """A day starts a period iff it is the anchor day, or the last day of a shorter month."""
    last = calendar.monthrange(day.year, day.month)[1]
    return day.day == anchor or (day.day == last and last < anchor)


def _oracle(moment_ms: int, anchor: int) -> tuple[date, date]:
    day = date(1970, 1, 1) + timedelta(days=moment_ms // DAY_MS)
    start = day
    while not _is_start_day(start, anchor):
        start -= timedelta(days=1)
    end = day + timedelta(days=1)
    while not _is_start_day(end, anchor):
        end += timedelta(days=1)
    return start, end


MIN_MS = ms("2000-01-01T00:00:00Z")
MAX_MS = ms("2100-12-31T23:59:59.999Z")


@settings(max_examples=300, deadline=None)
@given(moment=st.integers(MIN_MS, MAX_MS), anchor=st.integers(1, 31))
def test_period_of_matches_day_walking_oracle(moment: int, anchor: int) -> None:
    period = period_of(moment, anchor)
    assert (period.start, period.end) == _oracle(moment, anchor)
    assert period.start_ms <= moment < period.end_ms
    assert 28 <= (period.end - period.start).days <= 31
    # periods tile the time line: the end is the next period's start and vice versa
    assert period_of(period.end_ms, anchor).start == period.end
    assert period_of(period.start_ms - 1, anchor).end == period.start
    assert period_of(period.end_ms - 1, anchor) == period


@settings(max_examples=200, deadline=None)
@given(
    day=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
    anchor=st.integers(1, 31),
)
def test_start_day_boundaries_match_oracle(day: date, anchor: int) -> None:
    """Exact midnight instants, where off-by-one-day mistakes show."""
    at = _day_ms(day)
    assert (period_of(at, anchor).start == day) == _is_start_day(day, anchor)
    assert (period_of(at - 1, anchor).end == day) == _is_start_day(day, anchor)
