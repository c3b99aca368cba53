"""The one error type of the HTTP API: a status, a stable code and a human-readable detail,
answered as the `{"error", "detail"}` JSON of SPEC §7."""

from __future__ import annotations

from typing import Final

MAX_BODY_BYTES: Final = 65_536


class ApiError(Exception):
    """A request the API refuses. `detail` is safe to send back: it never holds a token."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail

    def to_body(self) -> dict[str, str]:
        return {"error": self.error, "detail": self.detail}

    @property
    def www_authenticate(self) -> str | None:
        """Value for a `WWW-Authenticate` response header (RFC 6750), if any."""
        if self.status == 401:
            return 'Bearer realm="rater", error="invalid_token"'
        if self.status == 403:
            return 'Bearer realm="rater", error="insufficient_scope"'
        return None

    @classmethod
    def unauthorized(cls, detail: str) -> ApiError:
        return cls(401, "unauthorized", detail)

    @classmethod
    def forbidden(cls, detail: str) -> ApiError:
        return cls(403, "forbidden", detail)

    @classmethod
    def not_configured(cls) -> ApiError:
        return cls(503, "auth_not_configured", "bearer-token authentication is not configured")

    @classmethod
    def not_found(cls, subscription_id: str) -> ApiError:
        return cls(404, "not_found", f"subscription {subscription_id!r} is not known")

    @classmethod
    def conflict(cls, detail: str) -> ApiError:
        return cls(409, "conflict", detail)

    @classmethod
    def too_large(cls, size: int | None = None) -> ApiError:
        got = f" (got {size} bytes)" if size is not None else ""
        return cls(413, "payload_too_large", f"body exceeds {MAX_BODY_BYTES} bytes{got}")

    @classmethod
    def invalid(cls, detail: str) -> ApiError:
        return cls(422, "invalid_request", detail)

    @classmethod
    def unavailable(cls, error: str, detail: str) -> ApiError:
        return cls(503, error, detail)
