"""Rated-call records -> RFC 4180 CSV: a header row, then one row per record.

Columns are the rated-call fields of SPEC §4, in the record's order, then
`destination`. A value is written as the record has it: strings as they are,
numbers as their JSON text, booleans as `true`/`false`, null or absent as an empty
field. Fields are quoted only when they must be (comma, quote, CR or LF inside);
every line ends with CRLF.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

import orjson

CSV_COLUMNS = (
    "call_id", "subscription_id", "billing_account_id", "user_id", "started_at", "period",
    "zone", "direction", "emergency", "duration_s", "billable_s", "included_s", "overage_s",
    "unbilled_s", "outcome", "amount", "currency", "charge_id", "rated_at", "destination",
)


def csv_value(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()  # ints as JSON wrote them


def csv_rows(records: Iterable[str | bytes], header: bool = False) -> str:
    """The CSV lines of `records` (JSON texts of rated calls), with the header first if asked."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for text in records:
        doc = orjson.loads(text)
        writer.writerow([csv_value(doc.get(name)) for name in CSV_COLUMNS])
    return out.getvalue()
