"""Credit-control sessions (SPEC §11), pure: what a request is granted, what its session
reserves, when it expires, and which requests are refused.

A session authorises `authorised_s` call seconds in total and reserves
`billable(authorised_s)` (§5.2) in its zone's pool of the period of its initial request.
`available` is the pool's `included - used_included - reserved by every session`, plus
what the asking session holds itself (its own reservation counts as available to it).

The reference model (`rater.rating.model`) applies these functions to its state; the Lua
scripts in `rater.store.lua` state the same rules for Redis, and the differential test
holds the two together. docs/sessions.md explains them to the people who run switches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from rater.rating.increments import billable_seconds, max_duration_within
from rater.rating.spend import SpendTerms
from rater.records.shapes import Increment

RequestKind = Literal["initial", "update", "terminate"]
SessionDecision = Literal["permit", "block"]
SessionReason = Literal["free", "included", "payg", "exhausted", "unknown_subscription",
                        "terminated", "spend_limit"]
SessionState = Literal["open", "terminated", "closed", "expired", "blocked", "free", "ended"]
RefusalCode = Literal["unknown_session", "session_exists", "out_of_order", "terminated",
                      "closed", "blocked", "used_decreased"]
ExpiryRule = Literal["validity", "cdr_wait"]

# states that hold a reservation and sit in the expiry queue
RESERVING: Final[frozenset[str]] = frozenset(("open", "terminated"))
# A session that stopped reserving (closed by its CDR, expired, blocked, ended) is remembered
# this long, for retries and for 404/409 answers to late requests; then it is forgotten.
KEEP_CLOSED_MS: Final = 600_000

REFUSAL_STATUS: Final[dict[RefusalCode, int]] = {
    "unknown_session": 404,
    "session_exists": 409,
    "out_of_order": 409,
    "terminated": 409,
    "closed": 409,
    "blocked": 409,
    "used_decreased": 422,
}


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """The settings the rules read (RATER_SESSION_*)."""

    validity_s: int = 600
    grace_s: int = 30
    cdr_wait_s: int = 3600

    def open_deadline_ms(self, now_ms: int) -> int:
        """An open session not heard of again expires at this instant (§11.6)."""
        return now_ms + (self.validity_s + self.grace_s) * 1000

    def terminated_deadline_ms(self, now_ms: int) -> int:
        """A terminated session whose CDR has not come releases its reservation then."""
        return now_ms + self.cdr_wait_s * 1000


@dataclass(frozen=True, slots=True)
class Grant:
    """A decision on a pool: what the session is authorised and what it reserves, in
    seconds of the pool and in the worst-case amount against its user's limit (SPEC §14)."""

    decision: SessionDecision
    authorised_s: int | None  # None: unlimited (free calls)
    reserved_s: int
    final: bool
    reason: SessionReason
    reserved_micro: int = 0


@dataclass(frozen=True, slots=True)
class SessionAnswer:
    """The answer's values (field names: `rater.rating.outputs.session_answer`)."""

    decision: SessionDecision
    granted_s: int | None
    final: bool
    validity_s: int
    reason: SessionReason
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request refused with a 4xx status; nothing changed."""

    code: RefusalCode
    detail: str

    @property
    def status(self) -> int:
        return REFUSAL_STATUS[self.code]


@dataclass(frozen=True, slots=True)
class Expirations:
    """Sessions whose reservation a step released because they expired (§11.6), by rule."""

    validity: int = 0
    cdr_wait: int = 0

    def __add__(self, other: Expirations) -> Expirations:
        return Expirations(self.validity + other.validity, self.cdr_wait + other.cdr_wait)

    def __bool__(self) -> bool:
        return bool(self.validity or self.cdr_wait)


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    """What one session request yields, whichever engine (Lua or the model) decided it."""

    answer: SessionAnswer | None = None  # None when refused
    refusal: Refusal | None = None
    replayed: bool = False  # the stored answer of an earlier request with the same number
    expired: Expirations = Expirations()  # released by the sweep this request made first


# ------------------------------------------------------------------ grants ---

def free_grant() -> Grant:
    """Inbound or emergency: permitted whatever the subscription's state, nothing reserved."""
    return Grant("permit", None, 0, False, "free")


def unknown_subscription() -> Grant:
    return Grant("block", 0, 0, True, "unknown_subscription")


def held_seconds(used_s: int, available_s: int, payg: bool, increment: Increment) -> int:
    """What a session that may not grow keeps reserved: the billable seconds it has used,
    with PAYG off capped at what is available to it, so a switch that overshot its grant
    cannot break the invariant `used_included + reserved <= included` (§11.3)."""
    billable = billable_seconds(used_s, increment)
    return billable if payg else min(billable, max(0, available_s))


def grant(initial: bool, used_s: int, requested_s: int, available_s: int, payg: bool,
          increment: Increment, spend: SpendTerms | None = None) -> Grant:
    """An initial request (`used_s` 0) or an update (§11.3, §11.4, §14).

    `spend` weighs the grant against the user's limit and prices its reservation (without
    it the reservation costs nothing). At the limit, nothing more is granted, PAYG on or
    off. Below it with PAYG on, the grant is capped so that its worst case fits in what
    the limit leaves; a grant smaller than asked then says `spend_limit`."""
    asked = used_s + requested_s
    if spend is not None and spend.at_limit:
        return _hold(initial, used_s, available_s, payg, increment, spend, "spend_limit")
    if payg:
        cap = spend.cap(available_s, increment) if spend is not None else None
        if cap is None or cap >= asked:
            reserved = billable_seconds(asked, increment)
            return Grant("permit", asked, reserved, False,
                         "included" if reserved <= available_s else "payg",
                         _amount(spend, reserved, available_s))
        if cap > used_s:
            reserved = billable_seconds(cap, increment)
            return Grant("permit", cap, reserved, True, "spend_limit",
                         _amount(spend, reserved, available_s))
        return _hold(initial, used_s, available_s, payg, increment, spend, "spend_limit")
    fits = min(asked, max_duration_within(available_s, increment))
    if fits > used_s:
        reserved = billable_seconds(fits, increment)
        return Grant("permit", fits, reserved, fits < asked, "included",
                     _amount(spend, reserved, available_s))
    return _hold(initial, used_s, available_s, payg, increment, spend, "exhausted")


def _hold(initial: bool, used_s: int, available_s: int, payg: bool, increment: Increment,
          spend: SpendTerms | None, reason: SessionReason) -> Grant:
    """Nothing more is granted: an initial request is blocked; an update keeps the seconds
    it has used (`held_seconds`), priced by `SpendTerms.held`, and is told to end."""
    if initial:
        return Grant("block", 0, 0, True, reason)
    held = held_seconds(used_s, available_s, payg, increment)
    return Grant("permit", used_s, held, True, reason,
                 spend.held(held, available_s) if spend is not None else 0)


def _amount(spend: SpendTerms | None, reserved_s: int, available_s: int) -> int:
    return spend.amount(reserved_s, available_s) if spend is not None else 0


def terminate_grant(used_s: int, available_s: int, payg: bool, increment: Increment,
                    spend: SpendTerms | None = None) -> Grant:
    """Terminate (§11.5): the used seconds stay reserved until the call's CDR is rated,
    their amount re-priced to what they can cost (§14)."""
    held = held_seconds(used_s, available_s, payg, increment)
    return Grant("permit", used_s, held, True, "terminated",
                 spend.held(held, available_s) if spend is not None else 0)


def answer_of(kind: RequestKind, grant: Grant, validity_s: int, now_ms: int) -> SessionAnswer:
    """A permit is valid for `validity_s`; a block or the answer to a terminate grants
    nothing further, so its validity is 0 and it expires at once."""
    ends = grant.decision == "block" or kind == "terminate"
    validity = 0 if ends else validity_s
    granted = grant.authorised_s
    final = grant.final or (kind == "terminate")
    return SessionAnswer(grant.decision, granted, final, validity, grant.reason,
                         now_ms + validity * 1000)


# -------------------------------------------------------- request checks ---

@dataclass(frozen=True, slots=True)
class StoredSession:
    """What the request checks read of a stored session."""

    state: SessionState
    used_s: int
    request_number: int | None  # the highest seen
    answer_number: int | None  # the request number of the stored answer
    answer_kind: RequestKind
    terminated: bool
    deadline_ms: int | None  # while reserving
    gone_ms: int | None  # closed, blocked and free sessions are forgotten from then on

    def forgotten(self, now_ms: int) -> bool:
        return self.gone_ms is not None and self.gone_ms <= now_ms

    def expired(self, now_ms: int) -> bool:
        """Expired, released or not yet: a reserving session past its deadline counts."""
        if self.state == "expired":
            return True
        return (self.state in RESERVING and self.deadline_ms is not None
                and self.deadline_ms <= now_ms)


Verdict = Literal["proceed", "replay"] | Refusal


def check_request(kind: RequestKind, session_id: str, stored: StoredSession | None,
                  request_number: int | None, used_s: int, now_ms: int) -> Verdict:
    """§11.7, in this order: unknown or expired (404); a retry (the stored answer); an
    out-of-order number, a session that cannot take this request (409); a decreasing
    `used_s` (422). An initial request for an existing id is a retry only when it carries
    the number of the stored initial answer (both none counts as the same number)."""
    if stored is not None and stored.forgotten(now_ms):
        stored = None
    if kind == "initial":
        if stored is None:
            return "proceed"
        if stored.answer_kind == "initial" and stored.answer_number == request_number:
            return "replay"
        return refusal("session_exists", session_id)
    if stored is None or stored.expired(now_ms):
        return refusal("unknown_session", session_id)
    if request_number is not None:
        if request_number == stored.answer_number and stored.answer_kind == kind:
            return "replay"
        if stored.request_number is not None and request_number <= stored.request_number:
            return refusal("out_of_order", session_id, request_number, stored.request_number)
    if stored.state == "blocked":
        return refusal("blocked", session_id)
    if stored.terminated:
        return refusal("terminated", session_id)
    if kind == "update" and stored.state == "closed":
        return refusal("closed", session_id)
    if used_s < stored.used_s:
        return refusal("used_decreased", session_id, used_s, stored.used_s)
    return "proceed"


def refusal(code: RefusalCode, session_id: str, got: int | None = None,
            before: int | None = None) -> Refusal:
    """The refusal of `code`, with a detail for the switch's log (ids shortened)."""
    sid = repr(session_id[:128])
    details: dict[RefusalCode, str] = {
        "unknown_session": f"session {sid} is not known, or has expired",
        "session_exists": f"session {sid} already exists (an initial request is repeated "
                          "only with the request_number of the first)",
        "out_of_order": f"request_number {got} of session {sid} is not above {before}, the "
                        "last one seen",
        "terminated": f"session {sid} is terminated",
        "closed": f"session {sid} was closed by its CDR",
        "blocked": f"session {sid} was blocked at set-up",
        "used_decreased": f"used_s {got} of session {sid} is below the {before} reported "
                          "before",
    }
    return Refusal(code, details[code])


def pool_available(included_s: int, used_included_s: int, reserved_s: int,
                   own_reserved_s: int = 0) -> int:
    """What a decision may grant from a pool (§11.2); negative when the pool is overrun
    (a licence reduction, or PAYG turned off over PAYG reservations)."""
    return included_s - used_included_s - reserved_s + own_reserved_s

