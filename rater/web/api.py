"""The HTTP API of SPEC §7 on Faust's web server (aiohttp underneath).

Two layers:

* `RaterApi` holds the logic of every endpoint without any HTTP framework: it
  takes the raw `Authorization` header, the path parameters, the query and a
  body reader, and returns the JSON document to answer, or raises `ApiError` /
  `AuthError` carrying the status and the `{"error", "detail"}` body. Unit tests
  drive it with fakes (tests/unit/web/test_api_bodies.py).
* `register_api` mounts thin Faust views on it and maps outcomes to responses.

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
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

import orjson
from aiohttp import web as aiohttp_web
from faust.web import View
from redis.exceptions import RedisError

from rater import metrics
from rater.config import ConfigError, Settings
from rater.rating.clock import format_ms, now_ms
from rater.rating.decision import Decision
from rater.rating.outputs import decision_record
from rater.records import CallAttempt, Zone
from rater.store.redis_store import PaygSwitch, SubscriptionSnapshot
from rater.web.auth import CALL_AUTHORIZER, READ_ROLES, WRITE_ROLES, AuthError, TokenVerifier
from rater.web.documents import (
    MAX_BODY_BYTES,
    ApiError,
    Cursor,
    Document,
    parse_attempt,
    parse_limit,
    parse_payg_body,
    usage_document,
    users_page,
)

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE: Final = "application/json"

ROUTE_AUTHORIZE: Final = "/v1/authorize"
ROUTE_USAGE: Final = "/v1/subscriptions/{subscription_id}/usage"
ROUTE_USERS: Final = "/v1/subscriptions/{subscription_id}/usage/users"
ROUTE_PAYG: Final = "/v1/subscriptions/{subscription_id}/payg"


BodyReader = Callable[[], Awaitable[bytes]]
Publish = Callable[[str, bytes, bytes], Awaitable[None]]


class Store(Protocol):
    """The part of `RedisStore` the API uses (a fake in unit tests)."""

    async def snapshot(self, subscription_id: str, at_ms: int) -> SubscriptionSnapshot | None: ...
    async def set_payg(
        self, subscription_id: str, enabled: bool, revision: int | None = None
    ) -> PaygSwitch | None: ...
    async def user_seconds(
        self, subscription_id: str, period: str
    ) -> Mapping[str, Mapping[Zone, int]]: ...


class Decider(Protocol):
    async def decide(self, attempt: CallAttempt) -> Decision: ...


# --------------------------------------------------------------------- API ---


class RaterApi:
    """The logic of every endpoint of SPEC §7, free of HTTP framework types."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        decider: Decider,
        publish: Publish,
        *,
        verifier: TokenVerifier | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.settings = settings
        self.store = store
        self.decider = decider
        self.publish = publish
        self.events_topic = settings.topics.subscription_events
        self.clock = clock
        if verifier is None:
            try:
                verifier = TokenVerifier.from_settings(settings)
            except ValueError as exc:
                raise ConfigError(f"RATER_JWT_KEY: {exc}") from None
        self.verifier = verifier

    async def authorize(self, authorization: str | None, read_body: BodyReader) -> Document:
        principal = self.verifier.authenticate(authorization)
        principal.require_scope(CALL_AUTHORIZER)
        attempt = parse_attempt(await read_body())
        decision = await self.decider.decide(attempt)
        metrics.DECISIONS.labels(decision.decision, decision.reason, "http").inc()
        return decision_record(attempt, decision, self.clock())

    async def usage(self, authorization: str | None, subscription_id: str) -> Document:
        principal = self.verifier.authenticate(authorization)
        snapshot = await self._snapshot(subscription_id)
        principal.require_role(snapshot.billing_account_id, READ_ROLES)
        return usage_document(snapshot)

    async def usage_users(
        self, authorization: str | None, subscription_id: str, query: Mapping[str, str]
    ) -> Document:
        principal = self.verifier.authenticate(authorization)
        snapshot = await self._snapshot(subscription_id)
        principal.require_role(snapshot.billing_account_id, READ_ROLES)
        limit = parse_limit(query.get("limit"))
        raw_cursor = query.get("cursor")
        if raw_cursor is None or raw_cursor == "":
            cursor = Cursor(snapshot.period, 0)
        else:
            cursor = Cursor.decode(raw_cursor)
        seconds = await self.store.user_seconds(subscription_id, cursor.period)
        return users_page(cursor.period, seconds, cursor.offset, limit)

    async def set_payg(
        self, authorization: str | None, subscription_id: str, read_body: BodyReader
    ) -> Document:
        principal = self.verifier.authenticate(authorization)
        snapshot = await self._snapshot(subscription_id)
        role = principal.require_role(snapshot.billing_account_id, WRITE_ROLES)
        enabled = parse_payg_body(await read_body())
        switch = await self.store.set_payg(subscription_id, enabled)
        if switch is None:  # removed between the lookup and the write
            raise ApiError.not_found(subscription_id)
        previous = switch.previous
        event = {
            "type": "payg.changed",
            "subscription_id": subscription_id,
            "enabled": enabled,
            "previous": previous,
            "revision": switch.revision,
            "actor": principal.subject,
            "role": role,
            "at": format_ms(self.clock()),
        }
        try:
            await self.publish(self.events_topic, subscription_id.encode(), orjson.dumps(event))
        except Exception as exc:
            log.error("payg.changed for %s applied but not published: %s", subscription_id, exc)
            raise ApiError(
                503,
                "event_not_recorded",
                "PAYG was switched but the audit event could not be published; "
                "repeat the request to record it",
            ) from None
        log.info("payg %s -> %s for %s by %s (%s)", previous, enabled, subscription_id,
                 principal.subject, role,
                 extra={"subscription_id": subscription_id, "actor": principal.subject,
                        "role": role, "payg_enabled": enabled, "revision": switch.revision})
        return {"subscription_id": subscription_id, "payg_enabled": enabled, "previous": previous}

    async def _snapshot(self, subscription_id: str) -> SubscriptionSnapshot:
        if not subscription_id or len(subscription_id) > 128:
            raise ApiError.not_found(subscription_id[:128])
        snapshot = await self.store.snapshot(subscription_id, self.clock())
        if snapshot is None:
            raise ApiError.not_found(subscription_id)
        return snapshot


# ------------------------------------------------------------------ views ---


def body_reader(request: Any, limit: int = MAX_BODY_BYTES) -> BodyReader:
    """Reads an aiohttp request body, refusing more than `limit` bytes (413)."""

    async def read() -> bytes:
        declared = request.content_length
        if declared is not None and declared > limit:
            raise ApiError.too_large(declared)
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await request.content.read(limit + 1 - size)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise ApiError.too_large()
            chunks.append(chunk)

    return read


def json_response(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> aiohttp_web.Response:
    return aiohttp_web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type=JSON_CONTENT_TYPE,
        headers=dict(headers) if headers else None,
    )


async def respond(
    route: str, call: Callable[[], Awaitable[Document]]
) -> aiohttp_web.Response:
    """Run one endpoint; map every outcome, expected or not, to a JSON response."""
    headers: dict[str, str] | None = None
    try:
        status, body = 200, await call()
    except AuthError as exc:
        status, body = exc.status, exc.to_body()
        challenge = exc.www_authenticate
        headers = {"WWW-Authenticate": challenge} if challenge else None
    except ApiError as exc:
        status, body = exc.status, exc.to_body()
    except RedisError as exc:
        metrics.REDIS_ERRORS.labels("http").inc()
        log.warning("%s: Redis failed: %s", route, exc)
        status, body = 503, {"error": "store_unavailable", "detail": "counter store unavailable"}
    except Exception:
        log.exception("%s: unexpected failure", route)
        status, body = 500, {"error": "internal_error", "detail": "unexpected server error"}
    metrics.HTTP_REQUESTS.labels(route, str(status)).inc()
    return json_response(status, body, headers)


@aiohttp_web.middleware
async def json_errors(request: aiohttp_web.Request, handler: Any) -> aiohttp_web.StreamResponse:
    """aiohttp's own 404/405/400 answers are text/plain; make them the JSON of SPEC §7."""
    try:
        response: aiohttp_web.StreamResponse = await handler(request)
        return response
    except aiohttp_web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = (exc.reason or "error").lower().replace(" ", "_")
        allow = exc.headers.get("Allow")
        metrics.HTTP_REQUESTS.labels("unmatched", str(exc.status)).inc()
        return json_response(
            exc.status,
            {"error": error, "detail": f"{request.method} {request.path}: {exc.reason}"},
            {"Allow": allow} if allow else None,
        )


class ApiView(View):
    """Faust registers HEAD for every view and answers Faust `WebError`s (e.g. HEAD on a
    POST-only view) as `{"error": ...}` only: answer them in the `{"error", "detail"}` shape."""

    async def on_request_error(self, request: Any, exc: Any) -> Any:
        status = int(getattr(exc, "code", 500))
        detail = str(getattr(exc, "detail", "") or "request refused")
        error = "method_not_allowed" if status == 405 else "request_error"
        metrics.HTTP_REQUESTS.labels(self.view_path, str(status)).inc()
        return json_response(status, {"error": error, "detail": detail})


def _kafka_publisher(app: Any) -> Publish:
    async def publish(topic: str, key: bytes, value: bytes) -> None:
        pending = await app.producer.send(topic, key, value, None, None, None)
        await pending

    return publish


def register_api(app: Any, runtime: Any) -> RaterApi:
    """Mount the endpoints of SPEC §7 on the Faust app; returns the API for tests."""
    api = RaterApi(runtime.settings, runtime.store, runtime.decider, _kafka_publisher(app))
    web_app = getattr(app.web, "web_app", None)
    if web_app is not None:
        web_app.middlewares.append(json_errors)

    # Views receive aiohttp requests; faust's abstract Request type lacks `query` and
    # `content`, so requests are typed Any here.
    def auth_header(request: Any) -> str | None:
        value: str | None = request.headers.get("Authorization")
        return value

    @app.page(ROUTE_AUTHORIZE, name="v1-authorize")
    class AuthorizeView(ApiView):
        async def post(self, request: Any) -> Any:
            started = time.perf_counter()
            try:
                return await respond(
                    ROUTE_AUTHORIZE,
                    lambda: api.authorize(auth_header(request), body_reader(request)),
                )
            finally:
                metrics.AUTHORIZE_SECONDS.observe(time.perf_counter() - started)

    @app.page(ROUTE_USAGE, name="v1-usage")
    class UsageView(ApiView):
        async def get(self, request: Any, subscription_id: str) -> Any:
            return await respond(
                ROUTE_USAGE, lambda: api.usage(auth_header(request), subscription_id)
            )

    @app.page(ROUTE_USERS, name="v1-usage-users")
    class UsersView(ApiView):
        async def get(self, request: Any, subscription_id: str) -> Any:
            query = request.query
            return await respond(
                ROUTE_USERS,
                lambda: api.usage_users(auth_header(request), subscription_id, query),
            )

    @app.page(ROUTE_PAYG, name="v1-payg")
    class PaygView(ApiView):
        async def put(self, request: Any, subscription_id: str) -> Any:
            return await respond(
                ROUTE_PAYG,
                lambda: api.set_payg(auth_header(request), subscription_id, body_reader(request)),
            )

    return api


__all__ = [
    "MAX_BODY_BYTES",
    "ApiError",
    "Cursor",
    "RaterApi",
    "body_reader",
    "parse_attempt",
    "parse_limit",
    "parse_payg_body",
    "register_api",
    "usage_document",
    "users_page",
]
