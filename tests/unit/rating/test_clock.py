from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from rater.rating.clock import format_ms, format_ms_fixed

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
YEAR_10000_MS = 253_402_300_800_000


def by_datetime(ms: int) -> str:
    moment = EPOCH + timedelta(milliseconds=ms)
    millis = ms % 1000
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


@given(st.integers(min_value=0, max_value=YEAR_10000_MS - 1))
def test_format_ms_matches_datetime_and_its_memo(ms: int) -> None:
    first = format_ms(ms)
    assert first == by_datetime(ms)
    # same second, other millisecond: served from the memo of that second
    other = ms - ms % 1000 + (ms + 1) % 1000
    assert format_ms(other) == by_datetime(other)
    assert format_ms(ms) == first


def test_format_ms_shapes() -> None:
    assert format_ms(0) == "1970-01-01T00:00:00Z"
    assert format_ms(1_764_000_000_123) == "2025-11-24T16:00:00.123Z"
    assert format_ms(1_764_000_000_000) == "2025-11-24T16:00:00Z"


@given(st.integers(min_value=-10**12, max_value=YEAR_10000_MS - 1))
def test_format_ms_fixed_always_has_milliseconds(ms: int) -> None:
    fixed = format_ms_fixed(ms)
    assert fixed.endswith("Z") and fixed[-5] == "." and fixed[-4:-1].isdigit()
    plain = format_ms(ms)
    assert fixed == (plain if ms % 1000 else plain[:-1] + ".000Z")


def test_format_ms_before_1970_and_after_9999() -> None:
    assert format_ms(-1) == "1969-12-31T23:59:59.999Z"
    assert format_ms_fixed(-1000) == "1969-12-31T23:59:59.000Z"
