"""Console sessions: a verified bearer token exchanged for an opaque random id.

Kept server-side, in this worker's memory: the cookie carries only the id (256 random
bits), never the token or a claim. A session ends at the token's own `exp`, at
sign-out, or when the worker restarts; several workers behind one address need sticky
routing (docs/console.md). Each session holds its CSRF token (the synchronizer token
every state-changing form carries).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from rater.web.auth import Principal

MAX_SESSIONS = 10_000
ID_BYTES = 32


def new_secret() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def same_secret(expected: str, given: str | None) -> bool:
    """Constant-time comparison; an absent value never matches."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    principal: Principal
    csrf_token: str
    expires_at: float  # epoch seconds: the token's exp

    def max_age_s(self, now: float) -> int:
        return max(0, int(self.expires_at - now))


class SessionStore:
    """Bounded: past MAX_SESSIONS, expired sessions go first, then the oldest."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 max_sessions: int = MAX_SESSIONS) -> None:
        self._clock = clock
        self._max = max_sessions
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, principal: Principal) -> Session:
        now = self._clock()
        expires_at = float(principal.expires_at) if principal.expires_at is not None else now
        if len(self._sessions) >= self._max:
            self._evict(now)
        session = Session(new_secret(), principal, new_secret(), expires_at)
        self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if self._clock() >= session.expires_at:
            del self._sessions[session_id]
            return None
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def _evict(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if now >= s.expires_at]:
            del self._sessions[key]
        while len(self._sessions) >= self._max:
            # a dict keeps insertion order: its first key is the oldest session
            del self._sessions[next(iter(self._sessions))]
