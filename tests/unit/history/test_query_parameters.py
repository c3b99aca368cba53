from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from rater.config import ConfigError, Settings
from rater.history.calls import InvalidQuery, call_filter, page_limit
from rater.history.charges import decimal_text, period_range


def test_call_filter_parses_rfc3339_and_checks_outcome() -> None:
    f = call_filter("s", "2026-11-01T01:00:00+01:00", "", "u", "free")
    assert f.started_from == datetime(2026, 11, 1, tzinfo=UTC)
    assert (f.started_before, f.user_id, f.outcome) == (None, "u", "free")
    with pytest.raises(InvalidQuery, match="to"):
        call_filter("s", to="2026-11-01")
    with pytest.raises(InvalidQuery, match="outcome"):
        call_filter("s", outcome="charged")


@pytest.mark.parametrize(("raw", "expected"), [(None, 100), ("", 100), ("1", 1), (1000, 1000)])
def test_limit_defaults_to_100_and_allows_up_to_1000(raw: str | int | None,
                                                      expected: int) -> None:
    assert page_limit(raw) == expected


@pytest.mark.parametrize("raw", ["0", "1001", "ten", "-5"])
def test_other_limits_are_refused(raw: str) -> None:
    with pytest.raises(InvalidQuery, match="limit"):
        page_limit(raw)


def test_a_period_is_a_start_day_or_a_month() -> None:
    assert period_range("2026-11-17") == (date(2026, 11, 17), date(2026, 11, 18))
    assert period_range("2026-12") == (date(2026, 12, 1), date(2027, 1, 1))
    for bad in ("2026-13", "20261117", "2026-11-31", "Nov"):
        with pytest.raises(InvalidQuery, match="period"):
            period_range(bad)


def test_totals_are_written_with_six_places() -> None:
    from decimal import Decimal

    assert decimal_text(Decimal("12.3")) == "12.300000"
    assert decimal_text(Decimal("0E-6")) == "0.000000"
    assert decimal_text(Decimal("123456789012345.000001")) == "123456789012345.000001"


def test_history_settings_have_defaults_and_are_validated() -> None:
    s = Settings.from_env({})
    assert (s.history_dsn, s.history_schema, s.history_sink, s.history_retention_months,
            s.history_batch_max) == ("postgresql://rater@127.0.0.1:5432/rater", "public",
                                     "off", 25, 5000)
    for env, message in [({"RATER_HISTORY_DSN": "redis://x"}, "RATER_HISTORY_DSN"),
                         ({"RATER_HISTORY_SCHEMA": "Drop;"}, "RATER_HISTORY_SCHEMA"),
                         ({"RATER_HISTORY_SINK": "maybe"}, "RATER_HISTORY_SINK"),
                         ({"RATER_HISTORY_RETENTION_MONTHS": "0"}, "RETENTION"),
                         ({"RATER_HISTORY_BATCH_MAX": "x"}, "RATER_HISTORY_BATCH_MAX")]:
        with pytest.raises(ConfigError, match=message):
            Settings.from_env(env)
    leaked = "postgresql://rater:s3cret@db/rater"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RATER_HISTORY_DSN": leaked.replace("postgresql", "http")})
    assert "s3cret" not in str(caught.value)
