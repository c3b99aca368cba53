"""Milliseconds since the epoch <-> RFC 3339 text, without float arithmetic; the rating clock."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
MS_PER_DAY = 86_400_000
_GMTIME_END_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z: four-digit years before it


def to_ms(moment: datetime) -> int:
    return (moment - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


# second -> its text: every output record formats two or three instants, and those of
# one batch share few seconds (rated_at is the batch's own); bounded, cleared when full
_SECOND_TEXT: dict[int, str] = {}
_SECOND_TEXT_MAX = 65_536


def format_ms(ms: int) -> str:
    """UTC with a `Z`; milliseconds only when there are some, so output is stable."""
    text, millis = _second_text(ms)
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def format_ms_fixed(ms: int) -> str:
    """UTC with a `Z` and always three digits of milliseconds: one width for log lines."""
    text, millis = _second_text(ms)
    return f"{text}.{millis:03d}Z"


def _second_text(ms: int) -> tuple[str, int]:
    """`YYYY-MM-DDTHH:MM:SS` of the instant, and its milliseconds."""
    seconds, millis = divmod(ms, 1000)
    if not 0 <= ms < _GMTIME_END_MS:
        return from_ms(ms).strftime("%Y-%m-%dT%H:%M:%S"), millis
    text = _SECOND_TEXT.get(seconds)  # the hot path (every output record): C gmtime
    if text is None:
        if len(_SECOND_TEXT) >= _SECOND_TEXT_MAX:
            _SECOND_TEXT.clear()
        y, mo, d, h, mi, s = time.gmtime(seconds)[:6]
        text = _SECOND_TEXT[seconds] = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}"
    return text, millis


def day_to_ms(day: date) -> int:
    return (day - EPOCH.date()).days * MS_PER_DAY


def now_ms() -> int:
    return to_ms(datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class RatingClock:
    """The instants a rating depends on; passed in so results are reproducible."""

    now_ms: int
    grace_ms: int = 259_200_000
    future_tolerance_ms: int = 300_000
