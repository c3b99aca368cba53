"""The endpoints of SPEC §12 over the call history, free of any HTTP framework
(`rater.web.views` mounts them; the console calls the same principal-level methods).

Order of checks, as in SPEC §7: authenticate (401, or 503 without a JWT key), look
the subscription up in Redis (404), check the caller's role on its billing account
(403), then the query parameters (422); only then is PostgreSQL asked, and a
database that does not answer is a 503 `history_unavailable`.

Choices where SPEC §12 is silent (docs/console.md lists them too):

* `GET …/calls` answers `{"subscription_id", "calls": [...], "next"}`: `calls` are
  the stored rated-call records, byte for byte as the rater emitted them, newest
  first; `next` is the opaque cursor of the following page, or null. `limit` is
  1..1000 (default 100); `from` (inclusive) and `to` (exclusive) are RFC 3339.
* CSV (`Accept: text/csv`, or `…/calls.csv`): every matching call, no paging, the
  header row of `rater.history.csv_format`, streamed in chunks of 1,000 rows.
* `GET /v1/billing-accounts/{ba}/charges?period=`: `period` is a period's start date
  (`2026-11-01`) or a month (`2026-11`). Without it: the current period of the
  account's subscriptions when they share one, else the month of the latest one.
  Totals are grouped per currency; amounts of two currencies are never added.
* `GET …/payg/history`: the newest `limit` (default 100, at most 1000) `payg.changed`
  events as emitted, newest first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import asyncpg
import orjson

from rater.history import audit, calls, charges, corrections
from rater.history.audit import AuditEntry
from rater.history.calls import CallFilter, CallPage, InvalidQuery
from rater.history.charges import ChargeTotals, Total, decimal_text
from rater.history.corrections import AdjustmentTotal
from rater.history.cursor import InvalidCursor, decode_cursor
from rater.history.pool import HistoryPool, HistoryUnavailable
from rater.rating.clock import from_ms
from rater.rating.periods import period_of
from rater.store import SubscriptionSnapshot
from rater.web.auth import READ_ROLES, Principal
from rater.web.documents import Document
from rater.web.errors import ApiError

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_PARAMETER_CHARS = 512
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


class SubscriptionLookup(Protocol):
    """`rater.web.api.RaterApi`: the subscription (404) and the caller's role (403)."""

    async def subscription_for(self, principal: Principal, subscription_id: str,
                               roles: Collection[str]) -> tuple[SubscriptionSnapshot, str]: ...


class AccountIndex(Protocol):
    """What this module reads of `RedisStore`: a billing account's subscriptions."""

    async def account_subscriptions(self, billing_account_id: str) -> dict[str, int]: ...


def invalid(exc: InvalidQuery | InvalidCursor) -> ApiError:
    code = "invalid_cursor" if isinstance(exc, InvalidCursor) else "invalid_query"
    return ApiError(422, code, str(exc))


def unavailable(exc: HistoryUnavailable) -> ApiError:
    log.warning("call history unavailable: %s", exc)
    return ApiError.unavailable("history_unavailable",
                                "the call history database is not answering; try again later")


def parameter(query: Mapping[str, str], name: str) -> str | None:
    """A query parameter as text PostgreSQL can take (no NUL, valid UTF-8), or 422."""
    value = query.get(name)
    if value is None:
        return None
    if len(value) > MAX_PARAMETER_CHARS or "\x00" in value:
        raise ApiError(422, "invalid_query", f"{name}: too long or not text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, "invalid_query", f"{name}: not valid UTF-8") from None
    return value


def calls_filter(subscription_id: str, query: Mapping[str, str]) -> CallFilter:
    try:
        return calls.call_filter(subscription_id, parameter(query, "from"),
                                 parameter(query, "to"), parameter(query, "user_id"),
                                 parameter(query, "outcome") or None)
    except InvalidQuery as exc:
        raise invalid(exc) from None


def current_period(anchor_days: Iterable[int], now_ms: int) -> str:
    """The default `period` of the charges: the current period of the account's
    subscriptions when they share one (`2026-11-15`), else the month of the latest
    current period (`2026-12`), or this month when the account has none."""
    starts = {period_of(now_ms, anchor).start for anchor in set(anchor_days)}
    if len(starts) == 1:
        return next(iter(starts)).isoformat()
    latest = max(starts) if starts else from_ms(now_ms).date()
    return f"{latest.year:04d}-{latest.month:02d}"


def wants_csv(accept: str | None) -> bool:
    """Whether an `Accept` header prefers `text/csv` to JSON (by q-value; a tie, or no
    mention of either, is JSON)."""
    best = {"text/csv": 0.0, "application/json": 0.0}
    for item in (accept or "").split(","):
        media, *params = (part.strip() for part in item.split(";"))
        media = media.lower()
        if media not in best:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        best[media] = max(best[media], quality)
    return best["text/csv"] > best["application/json"]


def safe_filename(text: str) -> str:
    return _UNSAFE_FILENAME.sub("_", text)[:100] or "calls"


@dataclass(slots=True)
class CsvDownload:
    """A CSV export whose query already answered: `chunks()` streams it, `close()` gives
    the connection back (always call it, also when the client went away)."""

    filename: str
    first: list[bytes]
    rest: AsyncIterator[bytes]
    release: Callable[[], Awaitable[None]]

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self.first:
            yield chunk
        async for chunk in self.rest:
            yield chunk

    async def close(self) -> None:
        try:
            await self.rest.aclose()  # type: ignore[attr-defined]
        except Exception as exc:  # a broken connection: the pool drops it on release
            log.warning("CSV export: closing its query failed: %r", exc)
        finally:
            await self.release()


@dataclass(frozen=True, slots=True)
class ChargesView:
    totals: ChargeTotals
    period: str  # as asked, or the default chosen
    adjustments: list[AdjustmentTotal]  # rerates' changes to these charges (SPEC §13)

    def currencies(self) -> list[str]:
        return sorted({t.currency for t in self.totals.by_currency}
                      | {a.currency for a in self.adjustments})

    def adjustment(self, currency: str) -> AdjustmentTotal | None:
        return next((a for a in self.adjustments
                     if a.currency == currency and not a.subscription_id), None)

    def adjusted_amount(self, currency: str) -> str:
        """The currency's charges plus its adjustments: what billing owes after rerates."""
        charged = next((Decimal(t.amount) for t in self.totals.by_currency
                        if t.currency == currency), Decimal(0))
        adjustment = self.adjustment(currency)
        return decimal_text(charged + (Decimal(adjustment.delta) if adjustment else 0))


class HistoryApi:
    """Every §12 endpoint: `*_document` methods take the raw `Authorization` header (JSON
    API); the others take a verified principal (shared with the console)."""

    def __init__(self, lookup: SubscriptionLookup, accounts: AccountIndex, history: HistoryPool,
                 authenticate: Callable[[str | None], Principal],
                 clock: Callable[[], int]) -> None:
        self.lookup = lookup
        self.accounts = accounts
        self.history = history
        self.authenticate = authenticate
        self.clock = clock

    # -- principal level (console and JSON API) -------------------------------------

    async def calls_page(self, principal: Principal, subscription_id: str,
                         query: Mapping[str, str]) -> CallPage:
        await self.lookup.subscription_for(principal, subscription_id, READ_ROLES)
        selection = calls_filter(subscription_id, query)
        try:
            limit = calls.page_limit(parameter(query, "limit"))
            cursor = parameter(query, "cursor") or None
            if cursor is not None:
                decode_cursor(cursor)  # a bad cursor is a 422 before any query
        except (InvalidQuery, InvalidCursor) as exc:
            raise invalid(exc) from None
        return await self._read(lambda pool: calls.list_calls(pool, selection, cursor, limit))

    async def open_calls_csv(self, principal: Principal, subscription_id: str,
                             query: Mapping[str, str]) -> CsvDownload:
        """The export, its query started: a database failure is still a 503 here, before
        the first byte of the answer; after that a failure can only cut the stream."""
        await self.lookup.subscription_for(principal, subscription_id, READ_ROLES)
        selection = calls_filter(subscription_id, query)
        try:
            connection = await self.history.acquire()
        except HistoryUnavailable as exc:
            raise unavailable(exc) from None

        async def release() -> None:
            await self.history.release(connection)

        rows = calls.iter_calls_csv(connection, selection)
        download = CsvDownload(f"calls-{safe_filename(subscription_id)}.csv", [], rows, release)
        try:
            download.first.append(await anext(rows))  # the header row
            first_rows = await anext(rows, None)  # runs the query
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            await download.close()
            raise unavailable(HistoryUnavailable(f"CSV query failed: {exc!r}")) from None
        except BaseException:
            await download.close()
            raise
        if first_rows is not None:
            download.first.append(first_rows)
        return download

    async def charges(self, principal: Principal, billing_account_id: str,
                      period: str | None) -> ChargesView:
        principal.require_role(billing_account_id, READ_ROLES)
        if not period:
            try:
                anchors = await self.accounts.account_subscriptions(billing_account_id)
            except Exception as exc:  # StoreUnavailable: a default is not worth a 503
                log.warning("charges: account index unreadable, default period is this "
                            "month: %s", exc)
                anchors = {}
            period = current_period(anchors.values(), self.clock())
        try:
            charges.period_range(period)
        except InvalidQuery as exc:
            raise invalid(exc) from None
        chosen = period
        totals = await self._read(
            lambda pool: charges.charge_totals(pool, billing_account_id, chosen))
        adjustments = await self._read(
            lambda pool: corrections.adjustment_totals(pool, billing_account_id, chosen))
        return ChargesView(totals, chosen, adjustments)

    async def payg_history(self, principal: Principal, subscription_id: str,
                           query: Mapping[str, str]) -> list[AuditEntry]:
        await self.lookup.subscription_for(principal, subscription_id, READ_ROLES)
        try:
            limit = calls.page_limit(parameter(query, "limit"))
        except InvalidQuery as exc:
            raise invalid(exc) from None
        return await self._read(lambda pool: audit.payg_history(pool, subscription_id, limit))

    async def _read(self, query: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        try:
            return await self.history.read(query)
        except HistoryUnavailable as exc:
            raise unavailable(exc) from None
        except (InvalidQuery, InvalidCursor) as exc:
            raise invalid(exc) from None

    # -- JSON API (SPEC §12) ---------------------------------------------------------

    async def calls_document(self, authorization: str | None, subscription_id: str,
                             query: Mapping[str, str]) -> Document:
        page = await self.calls_page(self.authenticate(authorization), subscription_id, query)
        return {"subscription_id": subscription_id,
                "calls": [orjson.Fragment(record) for record in page.records],
                "next": page.next_cursor}

    async def calls_csv(self, authorization: str | None, subscription_id: str,
                        query: Mapping[str, str]) -> CsvDownload:
        return await self.open_calls_csv(self.authenticate(authorization), subscription_id,
                                         query)

    async def charges_document(self, authorization: str | None, billing_account_id: str,
                               query: Mapping[str, str]) -> Document:
        principal = self.authenticate(authorization)
        view = await self.charges(principal, billing_account_id, parameter(query, "period"))
        return charges_document(view)

    async def payg_history_document(self, authorization: str | None, subscription_id: str,
                                    query: Mapping[str, str]) -> Document:
        entries = await self.payg_history(self.authenticate(authorization), subscription_id,
                                          query)
        return {"subscription_id": subscription_id,
                "events": [orjson.Fragment(entry.record) for entry in entries]}


def _group(totals: Iterable[Total], currency: str, key: str) -> list[Document]:
    return [{key: t.key, "amount": t.amount, "charges": t.charges, "overage_s": t.overage_s}
            for t in totals if t.currency == currency]


def charges_document(view: ChargesView) -> Document:
    """Totals per currency; inside each, by subscription, zone, user and UTC day, and the
    adjustments of rerates beside them (SPEC §13) with the amount they come to."""
    totals = view.totals
    currencies: list[Any] = []
    for currency in view.currencies():
        total = next((t for t in totals.by_currency if t.currency == currency),
                     Total(currency, "", "0.000000", 0, 0))
        adjustment = view.adjustment(currency)
        currencies.append({
            "currency": currency,
            "amount": total.amount,
            "charges": total.charges,
            "overage_s": total.overage_s,
            "by_subscription": _group(totals.by_subscription, currency, "subscription_id"),
            "by_zone": _group(totals.by_zone, currency, "zone"),
            "by_user": _group(totals.by_user, currency, "user_id"),
            "by_day": _group(totals.by_day, currency, "day"),
            "adjustments": {
                "delta": adjustment.delta if adjustment else "0.000000",
                "adjustments": adjustment.adjustments if adjustment else 0,
                "by_subscription": [
                    {"subscription_id": a.subscription_id, "delta": a.delta,
                     "adjustments": a.adjustments}
                    for a in view.adjustments if a.currency == currency and a.subscription_id],
            },
            "amount_after_adjustments": view.adjusted_amount(currency),
        })
    return {"billing_account_id": totals.billing_account_id, "period": view.period,
            "periods_from": _day(totals.period_from), "periods_before": _day(totals.period_to),
            "currencies": currencies}


def _day(day: date) -> str:
    return day.isoformat()
