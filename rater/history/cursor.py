"""The opaque paging cursor of the call list: where the previous page ended.

A page ends at a row `(started_at, call_id)`; the next page starts strictly after it
in the newest-first order. The cursor carries that position as URL-safe base64 of a
small JSON array (started_at in microseconds since the epoch, exactly as stored,
and the call id). Callers treat it as opaque; a malformed one is a caller error.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from rater.rating.clock import EPOCH

MAX_CURSOR_CHARS = 1024
_US = timedelta(microseconds=1)


class InvalidCursor(ValueError):
    """The cursor was not made by `encode_cursor` (or was altered)."""


@dataclass(frozen=True, slots=True)
class Position:
    started_at: datetime
    call_id: str


def encode_cursor(position: Position) -> str:
    micros = (position.started_at - EPOCH) // _US
    raw = orjson.dumps([micros, position.call_id])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> Position:
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor("cursor: not one this API returned")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        micros, call_id = orjson.loads(raw)
        if type(micros) is not int or type(call_id) is not str or not call_id:
            raise ValueError
        return Position(EPOCH + micros * _US, call_id)
    except (binascii.Error, ValueError, TypeError, OverflowError):
        raise InvalidCursor("cursor: not one this API returned") from None
