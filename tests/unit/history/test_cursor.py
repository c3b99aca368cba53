from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rater.history.cursor import InvalidCursor, Position, decode_cursor, encode_cursor


@pytest.mark.parametrize("position", [
    Position(datetime(2026, 11, 15, 12, 0, 0, 123000, tzinfo=UTC), "call-1"),
    Position(datetime(1970, 1, 1, tzinfo=UTC), "x"),
    Position(datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 'a "quoted", ü call/id=='),
])
def test_a_cursor_round_trips_exactly(position: Position) -> None:
    cursor = encode_cursor(position)
    assert cursor.isascii() and "=" not in cursor and "/" not in cursor and "+" not in cursor
    assert decode_cursor(cursor) == position


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", "WzEsMl0", "WyJhIiwiYiJd",
                                    "WzEsIiJd", "x" * 2000])
def test_anything_else_is_an_invalid_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)
