"""The console's browser-facing protections, in one place: response headers, the session
cookie, and the checks every state-changing request passes (docs/console.md).

* Content-Security-Policy: no script at all, styles and images from the console only,
  forms post to the console only, no framing. The pages need no JavaScript; charts and
  bars are inline SVG drawn on the server.
* The session cookie is `HttpOnly; SameSite=Strict; Path=/console` (and `Secure` when the
  request came over HTTPS, directly or through a proxy that says so).
* A state-changing POST needs the session's CSRF token in its form (synchronizer
  token), and, when the browser sends an `Origin`, that origin must be the console's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from rater.web.console.sessions import same_secret

SESSION_COOKIE: Final = "rater_console"
# Before sign-in there is no session: the sign-in form's own CSRF token travels in this
# short-lived cookie, so another site cannot sign a browser in with its own token.
SIGN_IN_COOKIE: Final = "rater_console_signin"
SIGN_IN_COOKIE_MAX_AGE_S: Final = 1800
COOKIE_PATH: Final = "/console"
CSRF_FIELD: Final = "csrf_token"

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

PAGE_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # same-origin: the console's own POSTs keep their Origin header (no-referrer would
    # make browsers send `Origin: null`), other sites learn nothing
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def is_https(request: Any) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    return bool(request.secure) or forwarded.split(",")[0].strip().lower() == "https"


def cookie_options(request: Any, max_age: int) -> dict[str, Any]:
    return {"max_age": max_age, "path": COOKIE_PATH, "httponly": True, "samesite": "Strict",
            "secure": is_https(request)}


def same_origin(request: Any) -> bool:
    """A POST's `Origin`, when the browser sent one, names this host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(str(origin)).netloc.lower() == str(request.host).lower()


def csrf_ok(expected: str, form: Mapping[str, str]) -> bool:
    return same_secret(expected, form.get(CSRF_FIELD))
