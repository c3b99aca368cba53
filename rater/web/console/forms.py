"""The console's form fields -> the parameters of the shared queries.

A browser's `datetime-local` field sends `2026-11-20T10:00` (no offset): the console
reads it as UTC and passes RFC 3339 on (`2026-11-20T10:00:00Z`), which is what the
JSON API takes. Everything else is passed through untouched, so the console's usage
report, its paging and its CSV export ask exactly what `GET …/calls` would be asked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from rater.history.calls import OUTCOMES

_LOCAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?")
PAGE_SIZES = (25, 50, 100, 250)
DEFAULT_PAGE_SIZE = 50
MAX_FIELD_CHARS = 512


def utc_instant(value: str) -> str:
    """`datetime-local` text as RFC 3339 UTC; anything else unchanged (the query
    validates it and says what is wrong)."""
    if _LOCAL.fullmatch(value):
        return f"{value}Z" if value.count(":") == 2 else f"{value}:00Z"
    return value


def local_field(value: str) -> str:
    """What a `datetime-local` field can show of a value: without the `Z`."""
    if value.endswith(("Z", "z")) and _LOCAL.fullmatch(value[:-1]):
        return value[:-1]
    return value


def _field(query: Mapping[str, str], name: str) -> str:
    return query.get(name, "").strip()[:MAX_FIELD_CHARS]


@dataclass(frozen=True, slots=True)
class CallsQuery:
    """The usage report's filters and page, as the form sent them."""

    from_: str = ""
    to: str = ""
    user_id: str = ""
    outcome: str = ""
    limit: str = str(DEFAULT_PAGE_SIZE)
    cursor: str = ""

    @classmethod
    def from_form(cls, query: Mapping[str, str]) -> CallsQuery:
        return cls(_field(query, "from"), _field(query, "to"), _field(query, "user_id"),
                   _field(query, "outcome"), _field(query, "limit") or str(DEFAULT_PAGE_SIZE),
                   _field(query, "cursor"))

    def filters(self) -> dict[str, str]:
        """The filter parameters of the shared calls query (no paging)."""
        wanted = {"from": utc_instant(self.from_), "to": utc_instant(self.to),
                  "user_id": self.user_id, "outcome": self.outcome}
        return {name: value for name, value in wanted.items() if value}

    def api_query(self) -> dict[str, str]:
        query = self.filters()
        query["limit"] = self.limit
        if self.cursor:
            query["cursor"] = self.cursor
        return query

    def export_href(self, base: str) -> str:
        """The CSV export of the same filter (every page)."""
        filters = self.filters()
        return f"{base}?{urlencode(filters)}" if filters else base

    def next_href(self, base: str, cursor: str) -> str:
        return f"{base}?{urlencode({**self.filters(), 'limit': self.limit, 'cursor': cursor})}"

    def first_href(self, base: str) -> str:
        return f"{base}?{urlencode({**self.filters(), 'limit': self.limit})}"

    @property
    def from_field(self) -> str:
        return local_field(self.from_)

    @property
    def to_field(self) -> str:
        return local_field(self.to)

    @property
    def outcomes(self) -> tuple[str, ...]:
        return OUTCOMES

    @property
    def page_sizes(self) -> tuple[int, ...]:
        return PAGE_SIZES


def payg_choice(form: Mapping[str, str]) -> bool | None:
    """The PAYG pane's radio buttons: `on` or `off`; None for anything else."""
    value = form.get("enabled")
    if value == "on":
        return True
    if value == "off":
        return False
    return None


def spend_limit_form(form: Mapping[str, str]) -> tuple[str, dict[str, str | None]]:
    """The spend-limit form: (user id, the `{"amount"}` document the API takes); an empty
    amount removes the limit. Checked by the API's own parsing, not here."""
    amount = form.get("amount", "").strip()
    return form.get("user_id", "").strip(), {"amount": amount or None}
