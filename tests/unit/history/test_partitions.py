from __future__ import annotations

from datetime import date

import pytest

from rater.history.partitions import add_months, first_month_kept, month_of, partition_name


def test_a_period_belongs_to_the_month_it_starts_in() -> None:
    assert month_of(date(2026, 11, 15)) == date(2026, 11, 1)
    assert month_of(date(2024, 2, 29)) == date(2024, 2, 1)
    assert partition_name("rated_calls", date(2026, 1, 1)) == "rated_calls_p2026_01"


@pytest.mark.parametrize(("month", "n", "expected"), [
    (date(2026, 11, 1), 1, date(2026, 12, 1)),
    (date(2026, 12, 1), 1, date(2027, 1, 1)),
    (date(2026, 1, 1), -1, date(2025, 12, 1)),
    (date(2026, 11, 1), -24, date(2024, 11, 1)),
])
def test_months_add_across_years(month: date, n: int, expected: date) -> None:
    assert add_months(month, n) == expected


def test_retention_keeps_this_month_and_the_ones_before() -> None:
    assert first_month_kept(date(2026, 12, 3), 25) == date(2024, 12, 1)
    assert first_month_kept(date(2026, 12, 31), 2) == date(2026, 11, 1)
