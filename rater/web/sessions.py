"""The credit-control session endpoints (SPEC §11), free of any HTTP framework
(`rater.web.views` mounts them): `POST /v1/sessions`, `/v1/sessions/{id}/update`,
`/v1/sessions/{id}/terminate`.

Order of checks, as `POST /v1/authorize`: the token (401, or 503 without a JWT key), the
`call_authorizer` scope (403), the body (413, 422), then the session's own rules (404,
409, 422 from `rater.rating.sessions`), each answered as `{"error", "detail"}`. A
request refused at any step changes nothing in Redis. Every request is counted once,
with its result, in `rater_session_requests_total`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from rater.config import Settings
from rater.rating.outputs import session_answer
from rater.rating.sessions import RequestKind, refusal
from rater.records import (
    InvalidRecord,
    SessionInitial,
    SessionTerminate,
    SessionUpdate,
    session_initial_from_document,
    session_terminate_from_document,
    session_update_from_document,
)
from rater.service.sessions import SessionReply, count_request
from rater.store import StoreUnavailable
from rater.web.auth import CALL_AUTHORIZER, TokenVerifier
from rater.web.documents import Document, parse_json_body
from rater.web.errors import ApiError

BodyReader = Callable[[], Awaitable[bytes]]
MAX_SESSION_ID: Final = 128


class Sessions(Protocol):
    """`rater.service.sessions.SessionService`."""

    async def initial(self, request: SessionInitial) -> SessionReply: ...
    async def update(self, session_id: str, request: SessionUpdate) -> SessionReply: ...
    async def terminate(self, session_id: str, request: SessionTerminate) -> SessionReply: ...


class SessionsApi:
    def __init__(self, settings: Settings, sessions: Sessions, verifier: TokenVerifier) -> None:
        self.sessions = sessions
        self.verifier = verifier
        self.quota_s = settings.session_quota_s

    async def initial(self, authorization: str | None, read_body: BodyReader) -> Document:
        async def step() -> Document:
            self._authorize(authorization)
            document = parse_json_body(await read_body())
            request = _decode("an initial session request",
                              lambda: session_initial_from_document(document, self.quota_s))
            return _answer(request.session_id, await self.sessions.initial(request))

        return await _counted("initial", step)

    async def update(self, authorization: str | None, session_id: str,
                     read_body: BodyReader) -> Document:
        async def step() -> Document:
            self._authorize(authorization)
            document = parse_json_body(await read_body())
            request = _decode("a session update",
                              lambda: session_update_from_document(document, self.quota_s))
            _check_id(session_id)
            return _answer(session_id, await self.sessions.update(session_id, request))

        return await _counted("update", step)

    async def terminate(self, authorization: str | None, session_id: str,
                        read_body: BodyReader) -> Document:
        async def step() -> Document:
            self._authorize(authorization)
            document = parse_json_body(await read_body())
            request = _decode("a session terminate",
                              lambda: session_terminate_from_document(document))
            _check_id(session_id)
            return _answer(session_id, await self.sessions.terminate(session_id, request))

        return await _counted("terminate", step)

    def _authorize(self, authorization: str | None) -> None:
        self.verifier.authenticate(authorization).require_scope(CALL_AUTHORIZER)


def _decode(what: str, decode: Callable[[], Any]) -> Any:
    try:
        return decode()
    except InvalidRecord as exc:
        raise ApiError.invalid(f"not {what}: {exc}") from None


def _check_id(session_id: str) -> None:
    """An id no initial request could have used is simply not known."""
    if not 1 <= len(session_id) <= MAX_SESSION_ID:
        found = refusal("unknown_session", session_id)
        raise ApiError(found.status, found.code, found.detail)


def _answer(session_id: str, reply: SessionReply) -> Document:
    outcome = reply.outcome
    if outcome.refusal is not None:
        found = outcome.refusal
        raise ApiError(found.status, found.code, found.detail)
    assert outcome.answer is not None and reply.subscription_id is not None
    return session_answer(session_id, reply.subscription_id, outcome.answer)


async def _counted(kind: RequestKind, step: Callable[[], Awaitable[Document]]) -> Document:
    """Run one request and count it, whatever its end (the view maps errors to answers)."""
    started = time.perf_counter()
    result, reason = "error", "internal_error"
    try:
        document = await step()
        result, reason = document["decision"], document["reason"]
        return document
    except ApiError as exc:
        reason = exc.error
        raise
    except StoreUnavailable:
        reason = "store_unavailable"
        raise
    finally:
        count_request(kind, result, reason, time.perf_counter() - started)
