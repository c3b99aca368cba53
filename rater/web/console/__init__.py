"""The administrator's console at `/console/` (SPEC §12): server-rendered pages over the
same queries, checks and audited changes (PAYG, spend limits) as the JSON API.
docs/console.md has the pages and the choices behind sign-in, cookies, CSRF and the
Content-Security-Policy.

`pages` builds what each page shows (no HTTP), `views` handles sessions, forms and
rendering, `security` holds the headers and checks, `templates/` and `static/` the HTML
and CSS (no JavaScript)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from aiohttp import web as aiohttp_web
from faust.web import View

from rater.web.console import security
from rater.web.console.views import ROOT, Console, redirect

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
CONTENT_TYPES: Final = {".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}


def static_files() -> dict[str, tuple[bytes, str]]:
    """The console's static files, read once: served by name, nothing else is reachable."""
    files = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file() and path.suffix in CONTENT_TYPES:
            files[path.name] = (path.read_bytes(), CONTENT_TYPES[path.suffix])
    return files


def register_console(app: Any, console: Console) -> Console:
    """Mount the console's pages on the Faust app."""
    files = static_files()

    @app.page("/console", name="console-bare")
    class Bare(View):
        async def get(self, request: Any) -> Any:
            return redirect(ROOT)

    @app.page(ROOT, name="console-home")
    class Home(View):
        async def get(self, request: Any) -> Any:
            return await console.home(request)

    @app.page(f"{ROOT}sign-in", name="console-sign-in")
    class SignIn(View):
        async def get(self, request: Any) -> Any:
            return await console.get_sign_in(request)

        async def post(self, request: Any) -> Any:
            return await console.post_sign_in(request)

    @app.page(f"{ROOT}sign-out", name="console-sign-out")
    class SignOut(View):
        async def post(self, request: Any) -> Any:
            return await console.post_sign_out(request)

    @app.page(ROOT + "accounts/{billing_account_id}", name="console-account")
    class Account(View):
        async def get(self, request: Any, billing_account_id: str) -> Any:
            return await console.account(request, billing_account_id)

    @app.page(ROOT + "accounts/{billing_account_id}/costs", name="console-costs")
    class Costs(View):
        async def get(self, request: Any, billing_account_id: str) -> Any:
            return await console.costs(request, billing_account_id)

    @app.page(ROOT + "subscriptions/{subscription_id}", name="console-subscription")
    class Subscription(View):
        async def get(self, request: Any, subscription_id: str) -> Any:
            return await console.subscription(request, subscription_id)

    @app.page(ROOT + "subscriptions/{subscription_id}/payg", name="console-payg")
    class Payg(View):
        async def post(self, request: Any, subscription_id: str) -> Any:
            return await console.switch_payg(request, subscription_id)

    @app.page(ROOT + "subscriptions/{subscription_id}/spend-limits", name="console-limits")
    class SpendLimits(View):
        async def post(self, request: Any, subscription_id: str) -> Any:
            return await console.set_spend_limit(request, subscription_id)

    @app.page(ROOT + "subscriptions/{subscription_id}/calls", name="console-calls")
    class Calls(View):
        async def get(self, request: Any, subscription_id: str) -> Any:
            return await console.calls(request, subscription_id)

    @app.page(ROOT + "subscriptions/{subscription_id}/calls.csv", name="console-calls-csv")
    class CallsCsv(View):
        async def get(self, request: Any, subscription_id: str) -> Any:
            return await console.calls_csv(request, subscription_id)

    @app.page(ROOT + "static/{name}", name="console-static")
    class Static(View):
        async def get(self, request: Any, name: str) -> Any:
            found = files.get(name)
            if found is None:
                return console.error(404, "no such file", None)
            body, content_type = found
            return aiohttp_web.Response(body=body, content_type=content_type, headers={
                **security.PAGE_HEADERS, "Cache-Control": "public, max-age=300"})

    return console
