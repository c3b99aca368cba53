"""What each console page shows, free of HTTP: built from the same calls the JSON API
makes (`RaterApi.subscription_for`, `usage_document`, `HistoryApi`), so the console has
no query, rule or check of its own. Templates only lay these values out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from typing import Any, Protocol

import orjson

from rater.history.audit import AuditEntry
from rater.history.charges import Total
from rater.history.corrections import AdjustmentTotal
from rater.records import ZONES
from rater.store import SubscriptionSnapshot
from rater.web.auth import READ_ROLES, WRITE_ROLES, Principal
from rater.web.console import charts
from rater.web.console.forms import CallsQuery
from rater.web.documents import Document, usage_document
from rater.web.errors import ApiError
from rater.web.history_api import ChargesView, HistoryApi, current_period

SUBSCRIPTIONS_PER_PAGE = 25


class Subscriptions(Protocol):
    """`rater.web.api.RaterApi` and `RedisStore`, as far as the console reads them."""

    async def subscription_for(self, principal: Principal, subscription_id: str,
                               roles: Any) -> tuple[SubscriptionSnapshot, str]: ...

    async def users_report(self, principal: Principal, subscription_id: str,
                           query: Mapping[str, str]) -> Document: ...


class AccountStore(Protocol):
    async def account_subscriptions(self, billing_account_id: str) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class ZoneRow:
    zone: str
    usage: Document  # the zone of the §7 usage document, exactly as the API answers it
    bar: charts.PoolBar


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    usage: Document
    zones: list[ZoneRow]


def subscription_row(snapshot: SubscriptionSnapshot) -> SubscriptionRow:
    usage = usage_document(snapshot)
    zones = []
    for zone in ZONES:
        z = usage["zones"][zone]
        zones.append(ZoneRow(zone, z, charts.pool_bar(z["included_s"], z["used_included_s"])))
    return SubscriptionRow(usage, zones)


@dataclass(frozen=True, slots=True)
class AccountPage:
    billing_account_id: str
    role: str
    rows: list[SubscriptionRow]
    page: int
    pages: int
    total: int
    cost_period: str


async def account_page(principal: Principal, billing_account_id: str, page: int,
                       lookup: Subscriptions, accounts: AccountStore, now_ms: int) -> AccountPage:
    role = principal.require_role(billing_account_id, READ_ROLES)
    index = await accounts.account_subscriptions(billing_account_id)
    ids = sorted(index)
    pages = max(1, -(-len(ids) // SUBSCRIPTIONS_PER_PAGE))
    page = min(max(page, 1), pages)
    shown = ids[(page - 1) * SUBSCRIPTIONS_PER_PAGE: page * SUBSCRIPTIONS_PER_PAGE]
    rows = []
    found = await asyncio.gather(
        *(_readable(principal, sub, lookup) for sub in shown))
    for snapshot in found:
        if snapshot is not None:
            rows.append(subscription_row(snapshot))
    return AccountPage(billing_account_id, role, rows, page, pages, len(ids),
                       current_period(index.values(), now_ms))


async def _readable(principal: Principal, subscription_id: str,
                    lookup: Subscriptions) -> SubscriptionSnapshot | None:
    """A listed subscription the caller may read (the index and the token agree unless
    the subscription went away since)."""
    try:
        snapshot, _ = await lookup.subscription_for(principal, subscription_id, READ_ROLES)
    except ApiError:
        return None
    return snapshot


@dataclass(frozen=True, slots=True)
class AuditRow:
    at: str
    enabled: bool | None
    previous: bool | None
    actor: str | None
    role: str | None
    revision: int | None


def audit_rows(entries: list[AuditEntry]) -> list[AuditRow]:
    rows = []
    for entry in entries:
        event = orjson.loads(entry.record)
        rows.append(AuditRow(entry.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                             event.get("enabled"), event.get("previous"), entry.actor,
                             entry.role, event.get("revision")))
    return rows


@dataclass(frozen=True, slots=True)
class SubscriptionPage:
    row: SubscriptionRow
    role: str
    can_switch: bool  # PAYG and the users' spend limits
    audit: list[AuditRow] = field(default_factory=list)
    audit_error: str | None = None
    users: list[Document] = field(default_factory=list)  # the users report's first page
    more_users: bool = False


async def subscription_page(principal: Principal, subscription_id: str, lookup: Subscriptions,
                            history: HistoryApi) -> SubscriptionPage:
    snapshot, role = await lookup.subscription_for(principal, subscription_id, READ_ROLES)
    # the users' spend this period and their limits (SPEC §14), as the users report says
    report = await lookup.users_report(principal, subscription_id, {})
    audit: list[AuditRow] = []
    audit_error = None
    try:
        audit = audit_rows(await history.payg_history(principal, subscription_id, {}))
    except ApiError as exc:  # the PAYG pane works without the history database
        if exc.status != 503:
            raise
        audit_error = exc.detail
    return SubscriptionPage(subscription_row(snapshot), role, role in WRITE_ROLES, audit,
                            audit_error, report["users"], report["next"] is not None)


@dataclass(frozen=True, slots=True)
class CurrencyCosts:
    total: Total
    chart: charts.DayChart
    by_subscription: list[Total]
    by_zone: list[Total]
    by_user: list[Total]
    adjustment: AdjustmentTotal | None  # rerates' changes to these charges (SPEC §13)
    adjustments_by_subscription: list[AdjustmentTotal]
    adjusted_amount: str


@dataclass(frozen=True, slots=True)
class CostsPage:
    billing_account_id: str
    role: str
    period: str
    periods_from: str
    periods_before: str
    currencies: list[CurrencyCosts]


async def costs_page(principal: Principal, billing_account_id: str, period: str | None,
                     history: HistoryApi) -> CostsPage:
    view: ChargesView = await history.charges(principal, billing_account_id, period)
    totals = view.totals
    currencies = []
    for currency in view.currencies():
        total = next((t for t in totals.by_currency if t.currency == currency),
                     Total(currency, "", "0.000000", 0, 0))

        def mine(group: list[Total], currency: str = currency) -> list[Total]:
            return [t for t in group if t.currency == currency]

        days = [(t.key, t.amount) for t in mine(totals.by_day)]
        currencies.append(CurrencyCosts(
            total, charts.day_chart(currency, days, totals.period_from),
            mine(totals.by_subscription), mine(totals.by_zone),
            # the largest spenders first: an ordering, the amounts stay as written
            sorted(mine(totals.by_user), key=lambda t: (-Decimal(t.amount), t.key)),
            view.adjustment(currency),
            [a for a in view.adjustments if a.currency == currency and a.subscription_id],
            view.adjusted_amount(currency)))
    return CostsPage(billing_account_id, principal.role_on(billing_account_id) or "",
                     view.period, totals.period_from.isoformat(),
                     totals.period_to.isoformat(), currencies)


@dataclass(frozen=True, slots=True)
class CallsPage:
    subscription_id: str
    billing_account_id: str
    currency: str
    query: CallsQuery
    calls: list[dict[str, Any]]  # the stored records, decoded for display
    next_cursor: str | None
    error: str | None = None


async def calls_page(principal: Principal, subscription_id: str, query: CallsQuery,
                     lookup: Subscriptions, history: HistoryApi) -> CallsPage:
    snapshot, _ = await lookup.subscription_for(principal, subscription_id, READ_ROLES)
    try:
        page = await history.calls_page(principal, subscription_id, query.api_query())
    except ApiError as exc:
        if exc.status != 422:
            raise
        return CallsPage(subscription_id, snapshot.billing_account_id, snapshot.currency,
                         query, [], None, exc.detail)
    return CallsPage(subscription_id, snapshot.billing_account_id, snapshot.currency, query,
                     [orjson.loads(record) for record in page.records], page.next_cursor)


def accounts_of(principal: Principal) -> list[tuple[str, str]]:
    """(billing account, role) of every role the token grants, sorted."""
    roles: Mapping[str, str] = principal.roles
    return sorted(roles.items())
