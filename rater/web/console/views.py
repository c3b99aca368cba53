"""The console's HTTP side: sessions, forms, redirects and rendering. Each page is built
by `rater.web.console.pages` from the calls the JSON API makes; nothing here decides
who may see or change what beyond asking those calls (and the CSRF check).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web as aiohttp_web

from rater import metrics
from rater.store import StoreUnavailable
from rater.web.auth import WRITE_ROLES, TokenVerifier
from rater.web.console import pages, security
from rater.web.console.forms import CallsQuery, payg_choice, spend_limit_form
from rater.web.console.rendering import environment, path_segment
from rater.web.console.sessions import Session, SessionStore, new_secret, same_secret
from rater.web.documents import check_user_id, spend_limit_of
from rater.web.errors import MAX_BODY_BYTES, ApiError
from rater.web.history_api import CsvDownload, HistoryApi
from rater.web.history_views import stream_csv

log = logging.getLogger(__name__)

ROOT: Final = "/console/"
SIGN_IN: Final = "/console/sign-in"
HTML: Final = "text/html"
Handler = Callable[[Session], Awaitable[aiohttp_web.StreamResponse]]


def redirect(location: str, headers: Mapping[str, str] | None = None) -> aiohttp_web.Response:
    """303 See Other: after a POST, the browser GETs the page."""
    return aiohttp_web.Response(status=303, headers={"Location": location,
                                                     **security.PAGE_HEADERS,
                                                     **(headers or {})})


class Console:
    def __init__(self, api: Any, history: HistoryApi, accounts: pages.AccountStore,
                 verifier: TokenVerifier, clock_ms: Callable[[], int],
                 sessions: SessionStore | None = None) -> None:
        self.api = api
        self.history = history
        self.accounts = accounts
        self.verifier = verifier
        self.clock_ms = clock_ms
        self.sessions = sessions or SessionStore()
        self.env = environment()

    # -- rendering -----------------------------------------------------------------

    def render(self, template: str, http_status: int = 200, session: Session | None = None,
               **context: Any) -> aiohttp_web.Response:
        body = self.env.get_template(template).render(
            session=session, accounts=pages.accounts_of(session.principal) if session else [],
            csrf_field=security.CSRF_FIELD, **context)
        metrics.HTTP_REQUESTS.labels(f"console:{template}", str(http_status)).inc()
        return aiohttp_web.Response(text=body, status=http_status, content_type=HTML,
                                    charset="utf-8", headers=security.PAGE_HEADERS)

    def error(self, status: int, detail: str, session: Session | None) -> aiohttp_web.Response:
        return self.render("error.html", status, session, status=status, detail=detail)

    def session_of(self, request: Any) -> Session | None:
        return self.sessions.get(request.cookies.get(security.SESSION_COOKIE))

    async def page(self, request: Any, build: Handler) -> aiohttp_web.StreamResponse:
        """A signed-in page: no session -> the sign-in form; an API refusal -> its status
        and detail on an error page (the same words the JSON API would answer)."""
        session = self.session_of(request)
        if session is None:
            return redirect(SIGN_IN)
        try:
            return await build(session)
        except ApiError as exc:
            return self.error(exc.status, exc.detail, session)
        except StoreUnavailable as exc:
            metrics.REDIS_ERRORS.labels("http").inc()
            log.warning("console: Redis failed: %s", exc)
            return self.error(503, "the counter store is not answering; try again later",
                              session)
        except Exception:
            log.exception("console: %s failed", request.path)
            return self.error(500, "unexpected server error", session)

    async def form(self, request: Any) -> Mapping[str, str] | None:
        """A urlencoded form of at most 64 KiB; None when larger."""
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return None
        data = await request.post()
        return {name: value for name, value in data.items() if isinstance(value, str)}

    async def guarded_post(self, request: Any, action: Handler) -> aiohttp_web.StreamResponse:
        """A state-changing request: a session, the console's origin and the session's
        CSRF token, or 403 and nothing happens."""
        session = self.session_of(request)
        form = await self.form(request)
        if form is None:
            return self.error(413, f"form exceeds {MAX_BODY_BYTES} bytes", session)
        if session is None:
            return self.error(403, "not signed in (or the session ended): sign in again", None)
        if not security.same_origin(request) or not security.csrf_ok(session.csrf_token, form):
            log.warning("console: refused a POST to %s without a valid CSRF token (actor %s)",
                        request.path, session.principal.subject)
            return self.error(403, "the form's security token is missing or wrong; "
                                   "reload the page and try again", session)
        request["console_form"] = form
        return await self.page(request, action)

    # -- sign-in and sign-out ------------------------------------------------------------

    def sign_in_page(self, request: Any, status: int = 200,
                     message: str | None = None) -> aiohttp_web.Response:
        guard = request.cookies.get(security.SIGN_IN_COOKIE) or new_secret()
        response = self.render("sign_in.html", status, None, message=message, guard=guard)
        response.set_cookie(security.SIGN_IN_COOKIE, guard, **security.cookie_options(
            request, security.SIGN_IN_COOKIE_MAX_AGE_S))
        return response

    def start_session(self, request: Any, token: str) -> aiohttp_web.Response:
        """Verify the token as the API does; on success a session and its cookie, and a
        redirect to the console's start page (which drops a token from the URL)."""
        try:
            principal = self.verifier.authenticate(f"Bearer {token.strip()}")
        except ApiError as exc:
            return self.sign_in_page(request, exc.status, f"Sign-in refused: {exc.detail}.")
        if not principal.roles:
            return self.sign_in_page(request, 403, "Sign-in refused: this token grants no "
                                                   "role on any billing account.")
        session = self.sessions.create(principal)
        now = self.clock_ms() / 1000
        response = redirect(ROOT, {"Referrer-Policy": "no-referrer"})
        response.set_cookie(security.SESSION_COOKIE, session.session_id,
                            **security.cookie_options(request, session.max_age_s(now)))
        response.del_cookie(security.SIGN_IN_COOKIE, path=security.COOKIE_PATH)
        log.info("console: %s signed in", principal.subject,
                 extra={"actor": principal.subject})
        return response

    async def get_sign_in(self, request: Any) -> aiohttp_web.StreamResponse:
        token = request.query.get("token")
        if token:  # the link form (`rater console links`): the cookie, then a clean URL
            return self.start_session(request, token)
        if self.session_of(request) is not None:
            return redirect(ROOT)
        return self.sign_in_page(request)

    async def post_sign_in(self, request: Any) -> aiohttp_web.StreamResponse:
        form = await self.form(request)
        if form is None:
            return self.error(413, f"form exceeds {MAX_BODY_BYTES} bytes", None)
        guard = request.cookies.get(security.SIGN_IN_COOKIE)
        if (guard is None or not security.same_origin(request)
                or not same_secret(guard, form.get(security.CSRF_FIELD))):
            return self.sign_in_page(request, 403, "The sign-in form expired; try again.")
        return self.start_session(request, form.get("token", ""))

    async def post_sign_out(self, request: Any) -> aiohttp_web.StreamResponse:
        async def end(session: Session) -> aiohttp_web.StreamResponse:
            self.sessions.end(session.session_id)
            response = redirect(SIGN_IN)
            response.del_cookie(security.SESSION_COOKIE, path=security.COOKIE_PATH)
            return response

        return await self.guarded_post(request, end)

    # -- pages ---------------------------------------------------------------------------

    async def home(self, request: Any) -> aiohttp_web.StreamResponse:
        async def build(session: Session) -> aiohttp_web.StreamResponse:
            return self.render("home.html", 200, session)

        return await self.page(request, build)

    async def account(self, request: Any, billing_account_id: str) -> aiohttp_web.StreamResponse:
        async def build(session: Session) -> aiohttp_web.StreamResponse:
            number = request.query.get("page", "1")
            view = await pages.account_page(
                session.principal, billing_account_id, int(number) if number.isdigit() else 1,
                self.api, self.accounts, self.clock_ms())
            return self.render("account.html", 200, session, view=view)

        return await self.page(request, build)

    async def costs(self, request: Any, billing_account_id: str) -> aiohttp_web.StreamResponse:
        async def build(session: Session) -> aiohttp_web.StreamResponse:
            period = request.query.get("period", "").strip()[:32] or None
            view = await pages.costs_page(session.principal, billing_account_id, period,
                                          self.history)
            return self.render("costs.html", 200, session, view=view)

        return await self.page(request, build)

    async def subscription(self, request: Any,
                           subscription_id: str) -> aiohttp_web.StreamResponse:
        async def build(session: Session) -> aiohttp_web.StreamResponse:
            view = await pages.subscription_page(session.principal, subscription_id,
                                                 self.api, self.history)
            return self.render("subscription.html", 200, session, view=view,
                               switched=request.query.get("switched"),
                               limit_saved=request.query.get("limit_saved"))

        return await self.page(request, build)

    async def switch_payg(self, request: Any, subscription_id: str) -> aiohttp_web.StreamResponse:
        async def act(session: Session) -> aiohttp_web.StreamResponse:
            principal = session.principal
            _, role = await self.api.subscription_for(principal, subscription_id, WRITE_ROLES)
            enabled = payg_choice(request["console_form"])
            if enabled is None:
                raise ApiError.invalid("choose On or Off")
            await self.api.switch_payg(principal, role, subscription_id, enabled)
            return redirect(f"{ROOT}subscriptions/{path_segment(subscription_id)}"
                            f"?switched={'on' if enabled else 'off'}")

        return await self.guarded_post(request, act)

    async def set_spend_limit(self, request: Any,
                              subscription_id: str) -> aiohttp_web.StreamResponse:
        """The spend-limit form (SPEC §14): the same checks and audited change as
        `PUT /v1/subscriptions/{id}/users/{user_id}/spend-limit`."""
        async def act(session: Session) -> aiohttp_web.StreamResponse:
            principal = session.principal
            _, role = await self.api.subscription_for(principal, subscription_id, WRITE_ROLES)
            user_id, document = spend_limit_form(request["console_form"])
            check_user_id(user_id)
            limit = spend_limit_of(document)
            await self.api.change_spend_limit(principal, role, subscription_id, user_id, limit)
            return redirect(f"{ROOT}subscriptions/{path_segment(subscription_id)}"
                            f"?{urlencode({'limit_saved': user_id})}")

        return await self.guarded_post(request, act)

    async def calls(self, request: Any, subscription_id: str) -> aiohttp_web.StreamResponse:
        async def build(session: Session) -> aiohttp_web.StreamResponse:
            query = CallsQuery.from_form(request.query)
            view = await pages.calls_page(session.principal, subscription_id, query,
                                          self.api, self.history)
            return self.render("calls.html", 422 if view.error else 200, session, view=view)

        return await self.page(request, build)

    async def calls_csv(self, request: Any, subscription_id: str) -> aiohttp_web.StreamResponse:
        """Opened under `page` (its refusals are pages too); streamed outside it, where a
        failure can only cut the download short."""
        opened: list[CsvDownload] = []

        async def open_export(session: Session) -> aiohttp_web.StreamResponse:
            query = CallsQuery.from_form(request.query)
            opened.append(await self.history.open_calls_csv(session.principal,
                                                            subscription_id, query.filters()))
            return aiohttp_web.Response(status=204)  # replaced by the stream below

        refusal = await self.page(request, open_export)
        if not opened:
            return refusal
        return await stream_csv(request, "console:calls.csv", opened[0],
                                {"X-Content-Type-Options": "nosniff"})
