"""The logic of every endpoint of SPEC §7, free of any HTTP framework (`rater.web.views`
mounts it on Faust's web server).

`RaterApi` takes the raw `Authorization` header, the path parameters, the query and a
body reader, and returns the JSON document to answer, or raises `ApiError` carrying the
status and the `{"error", "detail"}` body.

Order of checks on the subscription endpoints: authenticate (401, or 503 when
no JWT key is configured), look the subscription up (404), check the caller's
role on *its* billing account (403), and only then read and validate the body
(413, 422). A caller without a valid token therefore learns nothing about which
subscriptions exist, and a caller without a role learns nothing about bodies.
`POST /v1/authorize` checks the token, then the `call_authorizer` scope, then
the body; an unknown subscription there is not a 404 but a `block` decision
with reason `unknown_subscription` (SPEC §6).

Choices where SPEC §7 is silent (also in the docs):

* `period_end` is an RFC 3339 UTC timestamp of the *exclusive* end of the
  period, i.e. the instant the next period starts (`2026-12-01T00:00:00Z`).
* `overage_amount` is a decimal string with six places (`"0.050000"`), as on
  the charge records.
* Each zone of the usage document also says what credit-control sessions hold
  (SPEC §11): `reserved_s`, and `available_s` = included - used - reserved (never
  below 0), what a decision may still grant. `remaining_s` keeps its meaning of
  §5.5 (included not used yet), and `status` stays about the pool being empty.
* The users report lists every user with billable seconds in the period and every user
  with a spend limit (SPEC §14), each with `overage_amount` (six places) and
  `spend_limit` (six places, or null).
* `PUT …/users/{user_id}/spend-limit` checks the token, the subscription (404), the
  role (403), then the user id (1-128 characters) and the body (413, 422); it answers
  `{"subscription_id", "user_id", "amount", "previous"}` (six places, or null).
* The users report's cursor is opaque (base64url of the period and an offset).
  It pins the period, so paging that straddles a period change stays in the
  period it started in. `limit` is 1..1000 (default 100). A malformed `limit`
  or `cursor` answers 422 like a malformed body.
* A body over 64 KiB answers 413, judged by `Content-Length` and by the bytes
  actually read (chunked uploads cannot slip past).
* Unexpected failures answer JSON too: 503 `store_unavailable` when Redis
  fails, 500 `internal_error` otherwise; unknown routes and methods answer
  JSON 404 / 405.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Protocol, TypeVar

from rater import metrics
from rater.config import Settings
from rater.rating.clock import now_ms
from rater.rating.decision import Decision
from rater.rating.outputs import decision_record, spend_limit_text
from rater.records import CallAttempt
from rater.service.audited import Changed, ChangeNotApplied, EventNotRecorded
from rater.store import SubscriptionSnapshot, UserUsage
from rater.web.auth import CALL_AUTHORIZER, READ_ROLES, WRITE_ROLES, Principal, TokenVerifier
from rater.web.documents import (
    Cursor,
    Document,
    check_user_id,
    parse_attempt,
    parse_limit,
    parse_payg_body,
    parse_spend_limit_body,
    usage_document,
    users_page,
)
from rater.web.errors import ApiError

log = logging.getLogger(__name__)

BodyReader = Callable[[], Awaitable[bytes]]
V = TypeVar("V")


class Store(Protocol):
    """What the API reads of `RedisStore`."""

    async def snapshot(self, subscription_id: str, at_ms: int) -> SubscriptionSnapshot | None: ...
    async def user_report(
        self, subscription_id: str, period: str
    ) -> Mapping[str, UserUsage]: ...


class Decider(Protocol):
    """`rater.service.decisions.AttemptDecider`: the decision of SPEC §6."""

    async def decide(self, attempt: CallAttempt) -> Decision: ...


class PaygService(Protocol):
    """`rater.service.payg.PaygSwitcher`: the audited switch."""

    async def switch(self, subscription_id: str, enabled: bool, actor: str,
                     role: str) -> Changed[bool] | None: ...


class SpendLimitService(Protocol):
    """`rater.service.spend_limits.SpendLimits`: the audited limit change (SPEC §14)."""

    async def set(self, subscription_id: str, user_id: str, limit_micro: int | None,
                  actor: str, role: str) -> Changed[int | None] | None: ...


class RaterApi:
    """The logic of every endpoint of SPEC §7, free of HTTP framework types."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        decider: Decider,
        payg: PaygService,
        spend_limits: SpendLimitService,
        *,
        verifier: TokenVerifier | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.settings = settings
        self.store = store
        self.decider = decider
        self.payg = payg
        self.spend_limits = spend_limits
        self.clock = clock
        # the key was checked by Settings.validate: building the verifier cannot fail here
        self.verifier = verifier if verifier is not None else TokenVerifier.from_settings(
            settings)

    async def authorize(self, authorization: str | None, read_body: BodyReader) -> Document:
        principal = self.verifier.authenticate(authorization)
        principal.require_scope(CALL_AUTHORIZER)
        attempt = parse_attempt(await read_body())
        decision = await self.decider.decide(attempt)
        metrics.DECISIONS.labels(decision.decision, decision.reason, "http").inc()
        return decision_record(attempt, decision, self.clock())

    async def usage(self, authorization: str | None, subscription_id: str) -> Document:
        principal = self.verifier.authenticate(authorization)
        snapshot, _ = await self.subscription_for(principal, subscription_id, READ_ROLES)
        return usage_document(snapshot)

    async def usage_users(
        self, authorization: str | None, subscription_id: str, query: Mapping[str, str]
    ) -> Document:
        principal = self.verifier.authenticate(authorization)
        return await self.users_report(principal, subscription_id, query)

    async def set_payg(
        self, authorization: str | None, subscription_id: str, read_body: BodyReader
    ) -> Document:
        principal = self.verifier.authenticate(authorization)
        _, role = await self.subscription_for(principal, subscription_id, WRITE_ROLES)
        enabled = parse_payg_body(await read_body())
        return await self.switch_payg(principal, role, subscription_id, enabled)

    async def set_spend_limit(
        self, authorization: str | None, subscription_id: str, user_id: str,
        read_body: BodyReader,
    ) -> Document:
        principal = self.verifier.authenticate(authorization)
        _, role = await self.subscription_for(principal, subscription_id, WRITE_ROLES)
        check_user_id(user_id)
        limit = parse_spend_limit_body(await read_body())
        return await self.change_spend_limit(principal, role, subscription_id, user_id, limit)

    # The steps below take a verified principal: the console (rater.web.console) calls
    # them with its session's principal, so both front ends share every check and effect.

    async def subscription_for(self, principal: Principal, subscription_id: str,
                               roles: Collection[str]) -> tuple[SubscriptionSnapshot, str]:
        """The subscription (404 when unknown) and the caller's role on its billing
        account (403 unless one of `roles`), in this order."""
        snapshot = await self._snapshot(subscription_id)
        return snapshot, principal.require_role(snapshot.billing_account_id, roles)

    async def users_report(self, principal: Principal, subscription_id: str,
                           query: Mapping[str, str]) -> Document:
        """One page of the users report (`?cursor=`, `?limit=`), once the caller may read."""
        snapshot, _ = await self.subscription_for(principal, subscription_id, READ_ROLES)
        limit = parse_limit(query.get("limit"))
        raw_cursor = query.get("cursor")
        if raw_cursor is None or raw_cursor == "":
            cursor = Cursor(snapshot.period, 0)
        else:
            cursor = Cursor.decode(raw_cursor)
        users = await self.store.user_report(subscription_id, cursor.period)
        return users_page(cursor.period, users, cursor.offset, limit)

    async def switch_payg(self, principal: Principal, role: str, subscription_id: str,
                          enabled: bool) -> Document:
        """The audited switch (rater.service.payg), once the caller's role was checked."""
        switched = await self._audited(
            "payg.changed", subscription_id,
            self.payg.switch(subscription_id, enabled, principal.subject, role))
        log.info("payg %s -> %s for %s by %s (%s)", switched.previous, enabled, subscription_id,
                 principal.subject, role,
                 extra={"subscription_id": subscription_id, "actor": principal.subject,
                        "role": role, "payg_enabled": enabled,
                        "revision": switched.revision, "applied": switched.applied})
        return {"subscription_id": subscription_id, "payg_enabled": enabled,
                "previous": switched.previous}

    async def change_spend_limit(self, principal: Principal, role: str, subscription_id: str,
                                 user_id: str, limit_micro: int | None) -> Document:
        """The audited limit change (rater.service.spend_limits), once the caller's role
        was checked."""
        changed = await self._audited(
            "spend_limit.changed", subscription_id,
            self.spend_limits.set(subscription_id, user_id, limit_micro, principal.subject,
                                  role))
        amount, previous = spend_limit_text(limit_micro), spend_limit_text(changed.previous)
        log.info("spend limit of %s on %s: %s -> %s by %s (%s)", user_id, subscription_id,
                 previous, amount, principal.subject, role,
                 extra={"subscription_id": subscription_id, "user_id": user_id,
                        "actor": principal.subject, "role": role, "amount": amount,
                        "revision": changed.revision, "applied": changed.applied})
        return {"subscription_id": subscription_id, "user_id": user_id, "amount": amount,
                "previous": previous}

    async def _audited(self, event: str, subscription_id: str,
                       change: Awaitable[Changed[V] | None]) -> Changed[V]:
        """An audited change (rater.service.audited), its failures as API errors."""
        try:
            changed = await change
        except EventNotRecorded as exc:
            log.error("%s for %s not published, nothing changed: %s", event, subscription_id,
                      exc, extra={"subscription_id": subscription_id})
            raise ApiError.unavailable(
                "event_not_recorded",
                "the audit event could not be published, so nothing was changed; "
                "repeat the request") from None
        except ChangeNotApplied as exc:
            log.error("%s for %s published but not applied in Redis: %s", event,
                      subscription_id, exc, extra={"subscription_id": subscription_id})
            raise ApiError.unavailable(
                "switch_pending",
                "the change is recorded and takes effect when a worker applies it") from None
        if changed is None:  # removed between the lookup and the write
            raise ApiError.not_found(subscription_id)
        return changed

    async def _snapshot(self, subscription_id: str) -> SubscriptionSnapshot:
        if not subscription_id or len(subscription_id) > 128:
            raise ApiError.not_found(subscription_id[:128])
        snapshot = await self.store.snapshot(subscription_id, self.clock())
        if snapshot is None:
            raise ApiError.not_found(subscription_id)
        return snapshot

