"""The endpoints of SPEC §12 on Faust's web server: thin views over
`rater.web.history_api.HistoryApi`, answered like the §7 ones by `respond` (JSON and
its errors), and the CSV export streamed in chunks."""

from __future__ import annotations

import logging
from typing import Any, Final

from aiohttp import web as aiohttp_web

from rater import metrics
from rater.store import StoreUnavailable
from rater.web.errors import ApiError
from rater.web.history_api import CsvDownload, HistoryApi, wants_csv
from rater.web.views import ApiView, json_response, respond

log = logging.getLogger(__name__)

ROUTE_CALLS: Final = "/v1/subscriptions/{subscription_id}/calls"
ROUTE_CALLS_CSV: Final = "/v1/subscriptions/{subscription_id}/calls.csv"
ROUTE_CHARGES: Final = "/v1/billing-accounts/{billing_account_id}/charges"
ROUTE_PAYG_HISTORY: Final = "/v1/subscriptions/{subscription_id}/payg/history"
CSV_CONTENT_TYPE: Final = "text/csv; charset=utf-8; header=present"


async def stream_csv(request: Any, route: str, download: CsvDownload,
                     extra_headers: dict[str, str] | None = None) -> aiohttp_web.StreamResponse:
    """Send an opened export chunk by chunk (Transfer-Encoding: chunked): memory holds
    one chunk, whatever the number of rows. A failure after the first byte can only cut
    the stream short: the missing final chunk tells the client it is incomplete."""
    response = aiohttp_web.StreamResponse(status=200, headers={
        "Content-Type": CSV_CONTENT_TYPE,
        "Content-Disposition": f'attachment; filename="{download.filename}"',
        "Cache-Control": "no-store",
        **(extra_headers or {}),
    })
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        async for chunk in download.chunks():
            await response.write(chunk)
        await response.write_eof()
    except (ConnectionResetError, OSError) as exc:
        log.info("%s: CSV export ended early: %r", route, exc)
        raise
    except Exception:
        log.exception("%s: CSV export failed mid-stream; the answer is cut short", route)
        raise
    finally:
        await download.close()
        metrics.HTTP_REQUESTS.labels(route, "200").inc()
    return response


async def respond_csv(request: Any, route: str, open_download: Any) -> aiohttp_web.StreamResponse:
    """Errors before the export starts answer JSON, as every endpoint does."""
    try:
        download = await open_download()
    except ApiError as exc:
        metrics.HTTP_REQUESTS.labels(route, str(exc.status)).inc()
        challenge = exc.www_authenticate
        return json_response(exc.status, exc.to_body(),
                             {"WWW-Authenticate": challenge} if challenge else None)
    except StoreUnavailable as exc:
        metrics.REDIS_ERRORS.labels("http").inc()
        metrics.HTTP_REQUESTS.labels(route, "503").inc()
        log.warning("%s: Redis failed: %s", route, exc)
        return json_response(503, {"error": "store_unavailable",
                                   "detail": "counter store unavailable"})
    except Exception:
        log.exception("%s: unexpected failure", route)
        metrics.HTTP_REQUESTS.labels(route, "500").inc()
        return json_response(500, {"error": "internal_error",
                                   "detail": "unexpected server error"})
    return await stream_csv(request, route, download)


def register_history_api(app: Any, history: HistoryApi) -> None:
    """Mount the endpoints of SPEC §12 on the Faust app."""

    def auth_header(request: Any) -> str | None:
        value: str | None = request.headers.get("Authorization")
        return value

    @app.page(ROUTE_CALLS, name="v1-calls")
    class CallsView(ApiView):
        async def get(self, request: Any, subscription_id: str) -> Any:
            query = request.query
            if wants_csv(request.headers.get("Accept")):
                return await respond_csv(request, ROUTE_CALLS, lambda: history.calls_csv(
                    auth_header(request), subscription_id, query))
            return await respond(ROUTE_CALLS, lambda: history.calls_document(
                auth_header(request), subscription_id, query))

    @app.page(ROUTE_CALLS_CSV, name="v1-calls-csv")
    class CallsCsvView(ApiView):
        async def get(self, request: Any, subscription_id: str) -> Any:
            query = request.query
            return await respond_csv(request, ROUTE_CALLS_CSV, lambda: history.calls_csv(
                auth_header(request), subscription_id, query))

    @app.page(ROUTE_CHARGES, name="v1-charges")
    class ChargesView(ApiView):
        async def get(self, request: Any, billing_account_id: str) -> Any:
            query = request.query
            return await respond(ROUTE_CHARGES, lambda: history.charges_document(
                auth_header(request), billing_account_id, query))

    @app.page(ROUTE_PAYG_HISTORY, name="v1-payg-history")
    class PaygHistoryView(ApiView):
        async def get(self, request: Any, subscription_id: str) -> Any:
            query = request.query
            return await respond(ROUTE_PAYG_HISTORY, lambda: history.payg_history_document(
                auth_header(request), subscription_id, query))
