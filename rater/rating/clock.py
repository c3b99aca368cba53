"""Milliseconds since the epoch <-> RFC 3339 text, without float arithmetic."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
MS_PER_DAY = 86_400_000


def to_ms(moment: datetime) -> int:
    return (moment - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def format_ms(ms: int) -> str:
    """UTC with a `Z`; milliseconds only when there are some, so output is stable."""
    moment = from_ms(ms)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = ms % 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def day_to_ms(day: date) -> int:
    return (day - EPOCH.date()).days * MS_PER_DAY


def now_ms() -> int:
    return to_ms(datetime.now(UTC))
