"""The console in real Chromium against a real worker (history sink on), Kafka, Redis and
PostgreSQL (SPEC §12).

Each test has subscriptions of its own on one worker; CDRs go through the broker, are
rated by the worker and sunk into the test's PostgreSQL schema, and the pages are read
in the browser. Every page visited is screenshotted into
rater-data/test-artefacts/console/, and every test ends with no console error, no
page error and no dialog.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from rater.kafka import read_to_end
from tests.builders import cdr_doc, subscription_doc
from tests.integration.api_support import (
    ApiDeployment,
    http,
    safe_anchor_day,
    started_ago,
    unique,
)
from tests.integration.console.browser import LAUNCH_ARGS, Watched, chromium
from tests.integration.history.support import api_with_history

pytestmark = pytest.mark.integration

ACCOUNT = unique("ba-console")
SCRIPT_USER = "<script>alert(1)</script>"
SCRIPT_CALL = '<img src=x onerror="alert(2)">'
WAIT_S = 60.0
CSV_HEADER = ["call_id", "subscription_id", "billing_account_id", "user_id", "started_at",
              "period", "zone", "direction", "emergency", "duration_s", "billable_s",
              "included_s", "overage_s", "unbilled_s", "outcome", "amount", "currency",
              "charge_id", "rated_at", "destination"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiDeployment]:
    with api_with_history(tmp_path_factory.mktemp("console")) as started:
        yield started


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable), args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def contexts(browser: Browser) -> Iterator[Callable[[], BrowserContext]]:
    made: list[BrowserContext] = []

    def new() -> BrowserContext:
        context = browser.new_context(viewport={"width": 1360, "height": 900},
                                      accept_downloads=True)
        made.append(context)
        return context

    yield new
    for context in made:
        context.close()


def plan(sub: str, *, payg: bool, minutes: int = 1) -> dict[str, Any]:
    """One licence of `minutes` domestic minutes at 0.025 EUR a minute over the pool."""
    return subscription_doc(subscription_id=sub, billing_account_id=ACCOUNT, licenses=1,
                            domestic_minutes=minutes, international_minutes=0,
                            domestic_rate="0.025", international_rate="0.10",
                            increment="60/60", anchor_day=safe_anchor_day(), payg=payg)


def cdr(sub: str, call_id: str, user: str, duration_s: int, ago_s: int,
        destination: str | None = None) -> dict[str, Any]:
    return cdr_doc(call_id=call_id, subscription_id=sub, user_id=user, duration_s=duration_s,
                   started_at=started_ago(ago_s), destination=destination)


def off_loop(function: Callable[..., Any], *args: Any) -> Any:
    """ApiDeployment's Kafka helpers run an event loop of their own, which cannot start
    in the thread where Playwright's sync API keeps its loop: they run in another."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def sub_path(sub: str) -> str:
    return f"/console/subscriptions/{quote(sub, safe='')}"


def sign_in_with_form(api: ApiDeployment, watched: Watched, token: str) -> None:
    page = watched.page
    response = page.goto(f"{api.url}/console/sign-in")
    assert response is not None and response.status == 200
    headers = response.headers
    csp = headers["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'none'", "frame-ancestors 'none'"):
        assert directive in csp, csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"]
    watched.shot("sign-in")
    page.fill("#token", token)
    page.click("button:has-text('Sign in')")
    assert page.url == f"{api.url}/console/", page.url


def csrf_of(watched: Watched) -> str:
    """The session's CSRF token, as every form of the page carries it."""
    value: str = watched.page.input_value("form.signout input[name=csrf_token]")
    assert len(value) >= 32
    return value


def reload_until(watched: Watched, url: str, check: Callable[[], bool], what: str) -> None:
    def fresh() -> bool:
        watched.page.goto(url)
        return check()

    wait_until(fresh, what)


def payg_events(api: ApiDeployment, sub: str) -> list[dict[str, Any]]:
    import orjson

    messages = off_loop(asyncio.run, read_to_end(api.settings.kafka_bootstrap,
                                                 [api.settings.topics.subscription_events], 30))
    events = [orjson.loads(m.value) for m in messages]
    return [e for e in events if e.get("type") == "payg.changed"
            and e.get("subscription_id") == sub]


def test_owner_switches_payg_on_then_an_overage_call_shows_in_report_and_costs(
        api: ApiDeployment, contexts: Callable[[], BrowserContext]) -> None:
    sub, other = unique("sub-owner"), unique("sub-listed")
    off_loop(api.load_subscriptions, [plan(sub, payg=False), plan(other, payg=True, minutes=5)])
    owner = Watched(contexts().new_page(), "owner")
    sign_in_with_form(api, owner, api.tokens.owner(ACCOUNT, subject="olivia@example.test"))
    page = owner.page
    owner.shot("home")

    page.click(f"a:has-text('{ACCOUNT}') >> nth=0")
    assert page.url.endswith(f"/console/accounts/{ACCOUNT}")
    for listed in (sub, other):
        assert page.locator(f"a:has-text('{listed}')").count() == 1
    owner.shot("account")

    page.click(f"a:has-text('{sub}')")
    assert page.locator(".payg .state .badge").inner_text() == "PAYG Off"
    page.check("input[name=enabled][value=on]")
    page.click("button:has-text('Save')")
    assert page.url.endswith(f"{sub_path(sub)}?switched=on"), page.url
    assert page.locator(".payg .notice").inner_text() == "Pay-as-you-go is now On."
    assert page.locator(".payg .state .badge").inner_text() == "PAYG On"
    owner.shot("payg-switched-on")
    assert api.redis_hash(api.keys.subscription(sub))["payg"] == "1"
    [event] = payg_events(api, sub)
    assert (event["enabled"], event["previous"], event["actor"], event["role"]) == \
        (True, False, "olivia@example.test", "owner")

    # 60 s fill the 1-minute pool; 90 s bill 120 s, all overage at 0.025/min = 0.050000
    off_loop(api.produce, api.settings.topics.cdr, [cdr(sub, "c-included", "ann", 60, 120),
                                                    cdr(sub, "c-overage", "bob", 90, 60)])
    rated = off_loop(api.rated, sub, ["c-included", "c-overage"])
    assert rated["c-overage"]["outcome"] == "overage"
    assert rated["c-overage"]["amount"] == "0.050000"
    assert rated["c-included"]["outcome"] == "included"

    report = f"{api.url}{sub_path(sub)}/calls"
    reload_until(owner, report, lambda: page.locator("table.calls tbody tr").count() == 2,
                 "both calls in the usage report")
    row = page.locator("table.calls tbody tr", has_text="c-overage")
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "bob" and cells[7] == "overage", cells
    assert cells[8] == rated["c-overage"]["amount"] and cells[9] == "EUR", cells
    assert cells[10] == "c-overage" and cells[6] == "2:00" and cells[5] == "1:30", cells
    owner.shot("usage-report")

    costs = f"{api.url}/console/accounts/{ACCOUNT}/costs?period={rated['c-overage']['period']}"
    reload_until(owner, costs, lambda: page.locator(".currency .amount").count() == 1,
                 "the charge in cost management")
    assert page.locator(".currency .amount").inner_text() == "0.050000 EUR"
    by_user = page.locator("table.by-user tbody tr").all_inner_texts()
    assert by_user == ["bob\t1\t2 min\t0.050000"], by_user
    day = rated["c-overage"]["started_at"][:10]
    assert page.locator("svg.chart title", has_text=f"{day}: 0.050000 EUR").count() == 1
    owner.shot("cost-management")

    reload_until(owner, f"{api.url}{sub_path(sub)}",
                 lambda: page.locator(".audit tbody tr").count() == 1, "the PAYG audit trail")
    assert page.locator(".audit tbody tr").inner_text().split("\t")[1:4] == \
        ["Off → On", "olivia@example.test", "owner"]
    owner.shot("subscription-with-audit")
    owner.assert_clean()


def test_reader_cannot_switch_and_forged_posts_change_nothing(
        api: ApiDeployment, contexts: Callable[[], BrowserContext]) -> None:
    sub = unique("sub-reader")
    off_loop(api.load_subscriptions, [plan(sub, payg=False)])
    before = api.redis_hash(api.keys.subscription(sub))

    reader_context = contexts()
    reader = Watched(reader_context.new_page(), "reader")
    token = api.tokens.reader(ACCOUNT, subject="rita@example.test")
    reader.page.goto(f"{api.url}/console/sign-in?token={token}")  # the link form
    assert reader.page.url == f"{api.url}/console/", "the token must leave the URL"
    [cookie] = [c for c in reader_context.cookies() if c["name"] == "rater_console"]
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict",
                                                                        "/console")
    assert token not in cookie["value"] and len(cookie["value"]) >= 32

    reader.page.goto(f"{api.url}{sub_path(sub)}")
    assert reader.page.locator(".payg .state .badge").inner_text() == "PAYG Off"
    assert "only a billing account owner or contributor can change it" in \
        reader.page.locator(".payg .readonly").inner_text()
    assert reader.page.locator("form[action$='/payg']").count() == 0
    assert reader.page.locator("input[name=enabled]").count() == 0
    reader.shot("subscription-read-only")

    switch = f"{api.url}{sub_path(sub)}/payg"
    forged = reader_context.request.post(switch, form={"enabled": "on",
                                                       "csrf_token": csrf_of(reader)},
                                         max_redirects=0)
    assert forged.status == 403, forged.status  # a valid token, but a reader's session
    assert "may not do this" in forged.text()

    owner_context = contexts()
    owner = Watched(owner_context.new_page(), "forger")
    sign_in_with_form(api, owner, api.tokens.owner(ACCOUNT))
    owner.page.goto(f"{api.url}{sub_path(sub)}")
    for form, headers in (({"enabled": "on"}, {}),  # no CSRF token at all
                          ({"enabled": "on", "csrf_token": "x" * 43}, {}),  # a wrong one
                          ({"enabled": "on", "csrf_token": csrf_of(reader)}, {}),  # another's
                          ({"enabled": "on", "csrf_token": csrf_of(owner)},  # other origin
                           {"Origin": "http://attacker.example"})):
        answer = owner_context.request.post(switch, form=form, headers=headers,
                                            max_redirects=0)
        assert answer.status == 403, (form, headers, answer.status)
    signed_out = contexts().request.post(switch, form={"enabled": "on"}, max_redirects=0)
    assert signed_out.status == 403

    # PAYG off, no revision reserved or applied
    assert api.redis_hash(api.keys.subscription(sub)) == before
    assert payg_events(api, sub) == []  # nothing published, so nothing to audit
    trail = http("GET", f"{api.url}/v1/subscriptions/{sub}/payg/history",
                 token=api.tokens.reader(ACCOUNT))
    assert trail.status == 200 and trail.json["events"] == []
    owner.page.reload()
    assert owner.page.locator(".payg .state .badge").inner_text() == "PAYG Off"
    reader.assert_clean()
    owner.assert_clean()


def test_values_from_outside_are_shown_as_text(
        api: ApiDeployment, contexts: Callable[[], BrowserContext]) -> None:
    sub = unique("sub-escape")
    # a pool of 0 minutes and PAYG on: every outbound call is charged
    off_loop(api.load_subscriptions, [plan(sub, payg=True, minutes=0)])
    off_loop(api.produce, api.settings.topics.cdr, [cdr(sub, SCRIPT_CALL, SCRIPT_USER, 30, 60)])
    off_loop(api.rated, sub, [SCRIPT_CALL])
    watched = Watched(contexts().new_page(), "escaping")
    sign_in_with_form(api, watched, api.tokens.reader(ACCOUNT))
    page = watched.page

    reload_until(watched, f"{api.url}{sub_path(sub)}/calls",
                 lambda: page.locator("table.calls tbody tr").count() == 1, "the call")
    assert page.locator("td.user").inner_text() == SCRIPT_USER
    assert page.locator("td.call-id").inner_text() == SCRIPT_CALL
    assert page.locator("main script").count() == 0
    assert page.locator("img[src=x]").count() == 0
    watched.shot("escaped-report")

    # no period: the account's current one (its subscriptions share an anchor day)
    reload_until(watched, f"{api.url}/console/accounts/{ACCOUNT}/costs",
                 lambda: page.locator("table.by-user td.user", has_text=SCRIPT_USER).count()
                 == 1, "the charge by user")
    assert page.locator("main script").count() == 0
    watched.shot("escaped-costs")
    page.goto(f"{api.url}/console/sign-in")  # rendered page: still no dialog fired
    watched.assert_clean()


def test_csv_export_equals_the_rated_records_of_the_same_filter(
        api: ApiDeployment, contexts: Callable[[], BrowserContext], tmp_path: Path) -> None:
    sub = unique("sub-csv")
    off_loop(api.load_subscriptions, [plan(sub, payg=True, minutes=2)])
    cdrs = [cdr(sub, f"csv-{i:02d}", ("uma", "vic")[i % 2], 20 + 47 * i, 600 - 30 * i,
                destination=f"+4930{i:06d}" if i % 3 else None) for i in range(12)]
    off_loop(api.produce, api.settings.topics.cdr, cdrs)
    rated = off_loop(api.rated, sub, [c["call_id"] for c in cdrs])
    watched = Watched(contexts().new_page(), "csv")
    sign_in_with_form(api, watched, api.tokens.contributor(ACCOUNT))
    page = watched.page

    reload_until(watched, f"{api.url}{sub_path(sub)}/calls?limit=25",
                 lambda: page.locator("table.calls tbody tr").count() == 12, "all 12 calls")
    page.fill("input[name=user_id]", "vic")
    page.select_option("select[name=outcome]", "overage")
    page.click("button:has-text('Apply')")
    shown = page.locator("table.calls td.call-id").all_inner_texts()
    watched.shot("filtered-report")
    with page.expect_download() as download:
        page.click("a.export")
    target = tmp_path / "export.csv"
    download.value.save_as(target)

    wanted = sorted((r for r in rated.values()
                     if r["user_id"] == "vic" and r["outcome"] == "overage"),
                    key=lambda r: (r["started_at"], r["call_id"]), reverse=True)
    assert wanted, "the filter must match some calls"
    assert shown == [r["call_id"] for r in wanted]

    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    raw = target.read_bytes().decode()
    assert raw.splitlines()[0] == ",".join(CSV_HEADER)
    rows = list(csv.DictReader(io.StringIO(raw, newline="")))
    assert rows == [{name: text(r.get(name)) for name in CSV_HEADER} for r in wanted]
    total = sum((Decimal(r["amount"]) for r in wanted), Decimal(0))
    assert total > 0 and all(Decimal(row["amount"]) > 0 for row in rows)
    watched.assert_clean()


def limit_rows(watched: Watched) -> dict[str, list[str]]:
    """The spend-limit pane's table: user -> its cells."""
    rows = watched.page.locator(".limits table tbody tr")
    return {cells[0]: cells[1:] for cells in
            (rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count()))}


def test_owner_sets_and_clears_spend_limits_and_a_reader_cannot(
        api: ApiDeployment, contexts: Callable[[], BrowserContext]) -> None:
    """SPEC §14 in the console: the users' spend this period beside their limits; the form
    goes through the same audited change as the API."""
    import orjson

    sub = unique("sub-limits")
    off_loop(api.load_subscriptions, [plan(sub, payg=True, minutes=0)])
    # 90 s bill 120 s, all overage at 0.025/min: ivy has spent 0.050000
    off_loop(api.produce, api.settings.topics.cdr, [cdr(sub, "lim-1", "ivy", 90, 60)])
    off_loop(api.rated, sub, ["lim-1"])

    owner_context = contexts()
    owner = Watched(owner_context.new_page(), "limits-owner")
    sign_in_with_form(api, owner, api.tokens.owner(ACCOUNT, subject="olga@example.test"))
    page = owner.page
    page.goto(f"{api.url}{sub_path(sub)}")
    assert limit_rows(owner) == {"ivy": ["2 min", "0.050000 EUR", "none"]}
    page.fill("form.limit input[name=user_id]", "ivy")
    page.fill("form.limit input[name=amount]", "0.10")
    page.click("button:has-text('Save limit')")
    assert page.url.endswith(f"{sub_path(sub)}?limit_saved=ivy"), page.url
    assert page.locator(".limits .notice").inner_text() == "The spend limit of ivy is saved."
    assert limit_rows(owner)["ivy"] == ["2 min", "0.050000 EUR", "0.100000 EUR"]
    owner.shot("spend-limit-set")
    # a user without calls yet, whose id is markup: listed with its limit, as text
    page.fill("form.limit input[name=user_id]", SCRIPT_USER)
    page.fill("form.limit input[name=amount]", "1000000000")
    page.click("button:has-text('Save limit')")
    assert limit_rows(owner)[SCRIPT_USER] == ["0 min", "0.000000 EUR", "1000000000.000000 EUR"]
    assert page.locator("main script").count() == 0
    assert api.redis_hash(api.keys.limits(sub))["l:ivy"] == "100000"
    # an empty amount removes the limit
    page.fill("form.limit input[name=user_id]", "ivy")
    page.click("button:has-text('Save limit')")
    assert limit_rows(owner)["ivy"][2] == "none"
    assert "l:ivy" not in api.redis_hash(api.keys.limits(sub))
    owner.shot("spend-limit-cleared")
    # a bad amount is the API's 422, and changes nothing
    before = api.redis_hash(api.keys.limits(sub))
    bad = owner_context.request.post(f"{api.url}{sub_path(sub)}/spend-limits", form={
        "user_id": "ivy", "amount": "0.1234567", "csrf_token": csrf_of(owner)},
        max_redirects=0)
    assert bad.status == 422 and "at most 6 places" in bad.text()
    assert api.redis_hash(api.keys.limits(sub)) == before

    messages = off_loop(asyncio.run, read_to_end(api.settings.kafka_bootstrap,
                                                 [api.settings.topics.subscription_events], 30))
    events = [e for e in (orjson.loads(m.value) for m in messages)
              if e.get("type") == "spend_limit.changed" and e.get("subscription_id") == sub]
    assert [(e["user_id"], e["amount"], e["previous"], e["actor"], e["role"])
            for e in events] == [
        ("ivy", "0.100000", None, "olga@example.test", "owner"),
        (SCRIPT_USER, "1000000000.000000", None, "olga@example.test", "owner"),
        ("ivy", None, "0.100000", "olga@example.test", "owner")]

    reader_context = contexts()
    reader = Watched(reader_context.new_page(), "limits-reader")
    sign_in_with_form(api, reader, api.tokens.reader(ACCOUNT, subject="rolf@example.test"))
    reader.page.goto(f"{api.url}{sub_path(sub)}")
    assert limit_rows(reader)[SCRIPT_USER][2] == "1000000000.000000 EUR"
    assert reader.page.locator("form.limit").count() == 0
    assert "only a billing account owner or contributor can change them" in \
        reader.page.locator(".limits .readonly").inner_text()
    reader.shot("spend-limits-read-only")
    before = api.redis_hash(api.keys.limits(sub))
    forged = reader_context.request.post(f"{api.url}{sub_path(sub)}/spend-limits", form={
        "user_id": "ivy", "amount": "5", "csrf_token": csrf_of(reader)}, max_redirects=0)
    assert forged.status == 403, forged.status
    no_token = owner_context.request.post(f"{api.url}{sub_path(sub)}/spend-limits",
                                          form={"user_id": "ivy", "amount": "5"},
                                          max_redirects=0)
    assert no_token.status == 403
    assert api.redis_hash(api.keys.limits(sub)) == before
    owner.assert_clean()
    reader.assert_clean()
