"""RFC 3339 timestamps -> milliseconds since the epoch, with a fast path for the plain
`YYYY-MM-DDTHH:MM:SS[.fff]Z` shape that nearly every CDR carries."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from rater.rating.clock import to_ms
from rater.records.schemas import InvalidRecord

MIN_YEAR, MAX_YEAR = 1970, 9998  # accepted years of any timestamp, in UTC


def parse_timestamp(text: str, field: str) -> int:
    """RFC 3339 with offset -> ms since the epoch (sub-millisecond digits are dropped)."""
    head, dot, rest = text.partition(".")
    if dot:  # fromisoformat takes at most 6 fractional digits; RFC 3339 allows more
        digits = len(rest) - len(rest.lstrip("0123456789"))
        rest = rest[:digits][:6] + rest[digits:]
        text = f"{head}.{rest}"
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidRecord(f"{field}: not an RFC 3339 timestamp: {text!r}") from None
    if moment.tzinfo is None:
        raise InvalidRecord(f"{field}: timestamp needs a UTC offset: {text!r}")
    try:  # 0001-01-01T00:00:00+01:00 is before datetime.min once in UTC
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = None
    # Billing-period arithmetic steps a month either side, so keep clear of date's limits.
    if utc is None or not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise InvalidRecord(
            f"{field}: timestamp out of range ({MIN_YEAR}..{MAX_YEAR} UTC): {text!r}"
        )
    return to_ms(utc)


_TIMESTAMP_FAST = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z", re.ASCII)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


# "YYYY-MM-DDTHH:MM:SS" -> its ms: the CDRs of a batch share few seconds; bounded
_SECOND_MS: dict[str, int] = {}
_SECOND_MS_MAX = 65_536


def timestamp_fast(text: str) -> int | None:
    """`parse_timestamp` for the plain `YYYY-MM-DDTHH:MM:SS[.fff]Z` shape, in integers;
    None whenever the text is anything else (or out of range), for the full parser."""
    second_ms = _SECOND_MS.get(text[:19])
    if second_ms is None:
        return _timestamp_parsed(text)
    tail = text[19:]  # the cached head was a valid second: check only what follows it
    if tail == "Z":
        return second_ms
    digits = tail[1:-1]
    if (tail[:1] == "." and tail[-1:] == "Z" and 1 <= len(digits) <= 9
            and digits.isascii() and digits.isdigit()):
        return second_ms + int(digits[:3].ljust(3, "0"))
    return None


def _timestamp_parsed(text: str) -> int | None:
    match = _TIMESTAMP_FAST.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    y = int(year)
    h, mi, sec = int(hour), int(minute), int(second)
    if not MIN_YEAR <= y <= MAX_YEAR or h > 23 or mi > 59 or sec > 59:
        return None
    try:
        days = date(y, int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    second_ms = (((days * 24 + h) * 60 + mi) * 60 + sec) * 1000
    if len(_SECOND_MS) >= _SECOND_MS_MAX:
        _SECOND_MS.clear()
    _SECOND_MS[text[:19]] = second_ms
    return second_ms + (int(fraction[:3].ljust(3, "0")) if fraction else 0)
