from __future__ import annotations

import csv
import io

import orjson

from rater.history.csv_format import CSV_COLUMNS, csv_rows, csv_value

RECORD = {
    "call_id": "c-1", "subscription_id": "s", "billing_account_id": "b",
    "user_id": 'o"neil, jr\r\nline', "started_at": "2026-11-15T12:00:00.5Z",
    "period": "2026-11-01", "zone": "domestic", "direction": "outbound", "emergency": False,
    "duration_s": 61, "billable_s": 120, "included_s": 60, "overage_s": 60, "unbilled_s": 0,
    "outcome": "overage", "amount": "0.025000", "currency": "EUR",
    "charge_id": "6f1c2b9e-5d8a-5f3e-9b1c-000000000001", "rated_at": "2026-11-15T12:01:00Z",
}


def test_the_header_is_the_rated_call_fields_then_destination() -> None:
    assert csv_rows([], header=True) == ",".join(CSV_COLUMNS) + "\r\n"
    assert CSV_COLUMNS[-1] == "destination" and len(CSV_COLUMNS) == 20


def test_values_are_written_as_the_record_has_them() -> None:
    assert [csv_value(v) for v in (None, True, False, 0, 86400, "0.000001", "")] == [
        "", "true", "false", "0", "86400", "0.000001", ""]


def test_a_row_quotes_only_what_must_be_quoted_and_reads_back() -> None:
    text = csv_rows([orjson.dumps(RECORD), orjson.dumps({**RECORD, "destination": "+491"})])
    assert text.count("\r\n") == 4  # two rows, one of them with a CRLF inside quotes
    assert ',"o""neil, jr\r\nline",' in text
    assert ",false,61,120,60,60,0,overage,0.025000,EUR," in text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0][CSV_COLUMNS.index("user_id")] == RECORD["user_id"]
    assert rows[0][-1] == "" and rows[1][-1] == "+491"
    assert rows[0][:4] == ["c-1", "s", "b", RECORD["user_id"]]
