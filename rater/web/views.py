"""The HTTP API (SPEC §7) mounted on Faust's web server (aiohttp underneath): thin views
over `rater.web.api.RaterApi`, and the mapping of every outcome to a JSON response.

Unexpected failures answer JSON too: 503 `store_unavailable` when Redis fails, 500
`internal_error` otherwise; unknown routes and methods answer JSON 404 / 405.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import orjson
from aiohttp import web as aiohttp_web
from faust.web import View

from rater import metrics
from rater.store import StoreUnavailable
from rater.web.api import BodyReader, RaterApi
from rater.web.documents import Document
from rater.web.errors import MAX_BODY_BYTES, ApiError
from rater.web.sessions import SessionsApi

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE: Final = "application/json"

ROUTE_AUTHORIZE: Final = "/v1/authorize"
ROUTE_USAGE: Final = "/v1/subscriptions/{subscription_id}/usage"
ROUTE_USERS: Final = "/v1/subscriptions/{subscription_id}/usage/users"
ROUTE_PAYG: Final = "/v1/subscriptions/{subscription_id}/payg"
ROUTE_SPEND_LIMIT: Final = "/v1/subscriptions/{subscription_id}/users/{user_id}/spend-limit"
ROUTE_SESSIONS: Final = "/v1/sessions"
ROUTE_SESSION_UPDATE: Final = "/v1/sessions/{session_id}/update"
ROUTE_SESSION_TERMINATE: Final = "/v1/sessions/{session_id}/terminate"


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
    except ApiError as exc:
        status, body = exc.status, exc.to_body()
        challenge = exc.www_authenticate
        headers = {"WWW-Authenticate": challenge} if challenge else None
    except StoreUnavailable as exc:
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


def kafka_publisher(app: Any) -> Callable[[str, bytes, bytes], Awaitable[None]]:
    """Publish one record with the Faust app's producer and wait for the broker's ack."""
    async def publish(topic: str, key: bytes, value: bytes) -> None:
        pending = await app.producer.send(topic, key, value, None, None, None)
        await pending

    return publish


def register_api(app: Any, runtime: Any) -> RaterApi:
    """Mount the endpoints of SPEC §7, §11 and §14 on the Faust app; returns the API."""
    api = RaterApi(runtime.settings, runtime.store, runtime.decider, runtime.payg,
                   runtime.spend_limits)
    sessions = SessionsApi(runtime.settings, runtime.sessions, api.verifier)
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

    @app.page(ROUTE_SPEND_LIMIT, name="v1-spend-limit")
    class SpendLimitView(ApiView):
        async def put(self, request: Any, subscription_id: str, user_id: str) -> Any:
            return await respond(
                ROUTE_SPEND_LIMIT,
                lambda: api.set_spend_limit(auth_header(request), subscription_id, user_id,
                                            body_reader(request)),
            )

    @app.page(ROUTE_SESSIONS, name="v1-sessions")
    class SessionInitialView(ApiView):
        async def post(self, request: Any) -> Any:
            return await respond(
                ROUTE_SESSIONS,
                lambda: sessions.initial(auth_header(request), body_reader(request)),
            )

    @app.page(ROUTE_SESSION_UPDATE, name="v1-session-update")
    class SessionUpdateView(ApiView):
        async def post(self, request: Any, session_id: str) -> Any:
            return await respond(
                ROUTE_SESSION_UPDATE,
                lambda: sessions.update(auth_header(request), session_id, body_reader(request)),
            )

    @app.page(ROUTE_SESSION_TERMINATE, name="v1-session-terminate")
    class SessionTerminateView(ApiView):
        async def post(self, request: Any, session_id: str) -> Any:
            return await respond(
                ROUTE_SESSION_TERMINATE,
                lambda: sessions.terminate(auth_header(request), session_id,
                                           body_reader(request)),
            )

    return api
