"""The console's pure parts: sessions, CSRF comparison, forms, charts, the Accept rule,
the default charges period, and the templates' escaping."""

from __future__ import annotations

import pytest

from rater.web.auth import Principal
from rater.web.console import charts
from rater.web.console.forms import CallsQuery, payg_choice, utc_instant
from rater.web.console.rendering import clock, environment, minutes, when
from rater.web.console.sessions import SessionStore, same_secret
from rater.web.history_api import current_period, safe_filename, wants_csv
from tests.builders import ms


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def principal(exp: int) -> Principal:
    return Principal("alice", {"ba-1": "owner"}, frozenset(), exp)


def test_a_session_ends_at_the_tokens_exp_and_at_sign_out() -> None:
    now = FakeClock(1000.0)
    store = SessionStore(clock=now)
    session = store.create(principal(1600))
    assert store.get(session.session_id) is session
    assert session.max_age_s(now.now) == 600
    assert session.csrf_token != session.session_id and len(session.session_id) >= 43
    now.now = 1599.0
    assert store.get(session.session_id) is session
    now.now = 1600.0
    assert store.get(session.session_id) is None
    again = store.create(principal(5000))
    store.end(again.session_id)
    assert store.get(again.session_id) is None
    assert store.get(None) is None and store.get("unknown") is None


def test_sessions_are_bounded_expired_first_then_oldest() -> None:
    now = FakeClock(0.0)
    store = SessionStore(clock=now, max_sessions=3)
    short = store.create(principal(10))
    keep = [store.create(principal(1000)) for _ in range(2)]
    now.now = 20.0
    newest = store.create(principal(1000))
    assert store.get(short.session_id) is None
    assert all(store.get(s.session_id) is s for s in [*keep, newest])
    store.create(principal(1000))
    assert store.get(keep[0].session_id) is None and len(store) == 3


def test_csrf_tokens_compare_exactly_and_absent_never_matches() -> None:
    assert same_secret("abc", "abc")
    assert not same_secret("abc", "abd")
    assert not same_secret("abc", "")
    assert not same_secret("abc", None)


def test_datetime_local_fields_become_rfc3339_utc() -> None:
    assert utc_instant("2026-11-20T10:00") == "2026-11-20T10:00:00Z"
    assert utc_instant("2026-11-20T10:00:05") == "2026-11-20T10:00:05Z"
    assert utc_instant("2026-11-20T10:00:05+02:00") == "2026-11-20T10:00:05+02:00"
    query = CallsQuery.from_form({"from": "2026-11-20T10:00", "user_id": " ann ",
                                  "outcome": "overage", "cursor": "abc", "limit": "25"})
    assert query.filters() == {"from": "2026-11-20T10:00:00Z", "user_id": "ann",
                               "outcome": "overage"}
    assert query.api_query() == {**query.filters(), "limit": "25", "cursor": "abc"}
    assert query.export_href("/x.csv") == \
        "/x.csv?from=2026-11-20T10%3A00%3A00Z&user_id=ann&outcome=overage"
    assert "cursor=next" in query.next_href("/x", "next")
    assert query.from_field == "2026-11-20T10:00"


def test_payg_form_takes_on_or_off_only() -> None:
    assert payg_choice({"enabled": "on"}) is True
    assert payg_choice({"enabled": "off"}) is False
    assert payg_choice({"enabled": "true"}) is None
    assert payg_choice({}) is None


def test_pool_bar_in_pixels() -> None:
    assert charts.pool_bar(120, 60).used_px == charts.BAR_WIDTH // 2
    assert charts.pool_bar(120, 500).used_px == charts.BAR_WIDTH
    full = charts.pool_bar(120, 120)
    assert full.full and full.available_s == 0
    assert charts.pool_bar(0, 0) == charts.PoolBar(0, 0, 0, 0, True)


def test_day_chart_keeps_amounts_as_written_and_scales_to_the_peak() -> None:
    chart = charts.day_chart("EUR", [("2026-11-16", "0.000001"), ("2026-11-18", "2.500000")])
    by_day = {bar.day: bar for bar in chart.bars}
    assert list(by_day) == [f"2026-11-{d}" for d in range(16, 23)]  # at least a week
    assert chart.peak == "2.500000"
    assert by_day["2026-11-18"].amount == "2.500000"
    assert by_day["2026-11-16"].height == 1  # tiny, but there
    assert by_day["2026-11-17"].height == 0 and by_day["2026-11-17"].amount == "0"
    tallest = by_day["2026-11-18"]
    assert tallest.y + tallest.height == chart.baseline
    assert max(b.height for b in chart.bars) == tallest.height
    assert charts.day_chart("EUR", []).bars == []


def test_accept_prefers_json_unless_csv_ranks_higher() -> None:
    assert wants_csv("text/csv")
    assert wants_csv("text/csv, application/json;q=0.9")
    assert not wants_csv("text/csv;q=0.5, application/json")
    assert not wants_csv("*/*")
    assert not wants_csv(None)
    assert not wants_csv("text/csv;q=0")


def test_the_default_charges_period() -> None:
    now = ms("2026-12-03T10:00:00Z")
    assert current_period([15], now) == "2026-11-15"
    assert current_period([1, 1], now) == "2026-12-01"
    assert current_period([1, 15], now) == "2026-12"  # the month of the latest
    assert current_period([], now) == "2026-12"


def test_filenames_keep_only_safe_characters() -> None:
    assert safe_filename('a"b;c/d') == "a_b_c_d"
    assert safe_filename("sub-1.x") == "sub-1.x"


def test_formatting_filters() -> None:
    assert minutes(120) == "2 min" and minutes(1830) == "30 min 30 s"
    assert clock(75) == "1:15" and clock(3725) == "1:02:05"
    assert when("2026-11-20T10:00:05.123Z") == "2026-11-20 10:00:05.123 UTC"


@pytest.mark.parametrize("value", ["<script>alert(1)</script>", '"><img src=x onerror=1>'])
def test_templates_escape_values_from_outside(value: str) -> None:
    html = environment().get_template("error.html").render(
        session=None, accounts=[], csrf_field="csrf_token", status=404, detail=value)
    assert value not in html
    assert "&lt;" in html
    assert environment().autoescape is True
