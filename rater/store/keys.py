"""The Redis layout, whole: key names, field names, value encodings and lifetimes.

Every key of one subscription carries the hash tag `{<subscription_id>}`, so one
script call touches one hash slot whatever period it lands in (Redis Cluster):

`<prefix>:{<id>}:sub`          hash  plan, licences, PAYG flag, its revision (`payg_rev`)
                                      and the last revision reserved (`payg_next`)
`<prefix>:{<id>}:p:<period>`   hash  per zone: counters (`d:used`, `d:over`, `d:amt`,
                                      `d:unb`) and alert flags (`a:d:80`) of one period
`<prefix>:{<id>}:u:<period>`   hash  per user: billable seconds by zone (`<user>|d`), the
                                      overage amount charged (`<user>|$`, micro-units) and
                                      the worst-case amount its sessions reserve (`<user>|r$`)
`<prefix>:{<id>}:lim`          hash  per-user spend limits (SPEC §14): `l:<user>` the monthly
                                      limit (micro-units; absent: none), `r:<user>` the
                                      revision applied, `n:<user>` the last one reserved
`<prefix>:{<id>}:c:<YYYYMM>`   hash  rated calls by call_id, bucketed by the UTC month of
                                      started_at (the dedupe memory of SPEC §5.8)
`<prefix>:ba:{<account>}:subs` hash  the billing account's subscriptions: subscription id ->
                                      billing anchor day (the console lists an account with it)
`<prefix>:{<id>}:s:<session>`  hash  one credit-control session (SPEC §11): `SESSION_FIELDS`
`<prefix>:{<id>}:sx`           zset  session_id -> deadline (ms) of every session that holds a
                                      reservation (open or terminated): the expiry queue
`<prefix>:sessions`            zset  subscription_id -> a time (ms) at or before the earliest
                                      deadline in its `sx` (the sweeper's registry; one key of
                                      its own, outside every subscription's hash tag)
`<prefix>:sid:<session_id>`    string the subscription of a session id, for update and
                                      terminate requests that do not name it (lives
                                      `rater.store.sessions.index_ttl_ms`, renewed on use)

Sessions add to the hashes above: in `p:<period>` the field `<zone letter>:res`, the
seconds reserved in that pool by open and terminated sessions (so available =
included - used - res in one read); in `sub` the subscription's session totals
(`SESSIONS_OPEN_FIELD`, `SESSIONS_RESERVING_FIELD`, `reserved_field(zone)`) that the
gauges add up and that tell `rate_batch` whether a CDR can close a session at all; in
`u:<period>` the user's `<user>|r$` (SPEC §14).

The Lua scripts receive only the `sub` key (and the sweeper's scripts the registry) and
derive the others from it with the same names (`base_of` in lua/lib.lua, the field
tables in lua/rate_batch.lua and the session helpers in lua/lib.lua);
`rater.store.rebuild` writes this layout from the topics, and the differential
tests hold the three together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Final, Literal

from redis.crc import key_slot

from rater.rating.clock import day_to_ms, from_ms
from rater.rating.money import rate_to_micro
from rater.rating.results import Outcome
from rater.rating.sessions import KEEP_CLOSED_MS, RequestKind, SessionAnswer, SessionState
from rater.records.shapes import Increment, Plan, Subscription, Zone

ZONE_LETTER: Final[dict[Zone, str]] = {"domestic": "d", "international": "i"}
LETTER_ZONE: Final[dict[str, Zone]] = {letter: zone for zone, letter in ZONE_LETTER.items()}
OUTCOME_LETTER: Final[dict[Outcome, str]] = {
    "included": "i", "overage": "o", "exhausted": "e", "blocked": "b", "free": "f",
}
# Keys outlive the last instant they can be written (period end + grace) by a day, for
# late reads; a rating script gives every key at least this long to live.
KEEP_MS: Final = 86_400_000


@dataclass(frozen=True, slots=True)
class KeySpace:
    """The key names of one deployment (`RATER_APP_ID` is the prefix)."""

    prefix: str

    def base(self, subscription_id: str) -> str:
        """What every key of the subscription starts with, hash tag included."""
        return f"{self.prefix}:{{{subscription_id}}}:"

    def subscription(self, subscription_id: str) -> str:
        return f"{self.base(subscription_id)}sub"

    def counters(self, subscription_id: str, period: str) -> str:
        return f"{self.base(subscription_id)}p:{period}"

    def users(self, subscription_id: str, period: str) -> str:
        return f"{self.base(subscription_id)}u:{period}"

    def limits(self, subscription_id: str) -> str:
        """The subscription's per-user spend limits (SPEC §14); no expiry, like `sub`."""
        return f"{self.base(subscription_id)}{LIMITS_SUFFIX}"

    def calls(self, subscription_id: str, started_at_ms: int) -> str:
        return f"{self.base(subscription_id)}c:{calls_bucket(started_at_ms)}"

    def account_subscriptions(self, billing_account_id: str) -> str:
        """The index of one billing account's subscriptions. Not under a subscription's
        hash tag (it spans many), so no script writes it: `RedisStore` sets its field
        after the upsert script applied, before the event is acknowledged."""
        return f"{self.prefix}:ba:{{{billing_account_id}}}:subs"

    @property
    def every_account_index_key(self) -> str:
        """A SCAN pattern matching every account index of this deployment."""
        return f"{self.prefix}:ba:{{*"
    def session(self, subscription_id: str, session_id: str) -> str:
        return f"{self.base(subscription_id)}s:{session_id}"

    def session_deadlines(self, subscription_id: str) -> str:
        return f"{self.base(subscription_id)}sx"

    def session_index(self, session_id: str) -> str:
        return f"{self.prefix}:sid:{session_id}"

    @property
    def session_registry(self) -> str:
        """The sweeper's registry: subscriptions with sessions, scored by when to look."""
        return f"{self.prefix}:sessions"

    @property
    def every_subscription_key(self) -> str:
        """A SCAN pattern matching every key of every subscription of this deployment."""
        return f"{self.prefix}:{{*"


def slot_of(key: str) -> int:
    return int(key_slot(key.encode()))


# ---------------------------------------------------------------- fields ---

def subscription_fields(sub: Subscription) -> dict[str, str]:
    """The `sub` hash as `upsert_subscription.lua` stores it (without the PAYG revision)."""
    plan = sub.plan
    return {
        "ba": sub.billing_account_id,
        "cur": sub.currency,
        "lic": str(sub.licenses),
        "payg": "1" if sub.payg_enabled else "0",
        "anchor": str(sub.billing_anchor_day),
        "inc_m": str(plan.billing_increment.minimum_s),
        "inc_i": str(plan.billing_increment.step_s),
        "min_d": str(plan.included_minutes_per_license["domestic"]),
        "min_i": str(plan.included_minutes_per_license["international"]),
        "rate_d": str(plan.payg_rate_per_minute["domestic"]),
        "rate_i": str(plan.payg_rate_per_minute["international"]),
        "rmu_d": str(rate_to_micro(plan.payg_rate_per_minute["domestic"])),
        "rmu_i": str(rate_to_micro(plan.payg_rate_per_minute["international"])),
    }


def subscription_from_fields(subscription_id: str, fields: dict[str, str]) -> Subscription:
    """The `sub` hash back to the Subscription it was written from (`subscription_fields`)."""
    return Subscription(
        subscription_id=subscription_id,
        billing_account_id=fields["ba"],
        licenses=int(fields["lic"]),
        payg_enabled=fields["payg"] == "1",
        billing_anchor_day=int(fields["anchor"]),
        currency=fields["cur"],
        plan=Plan(
            included_minutes_per_license={"domestic": int(fields["min_d"]),
                                          "international": int(fields["min_i"])},
            payg_rate_per_minute={"domestic": Decimal(fields["rate_d"]),
                                  "international": Decimal(fields["rate_i"])},
            billing_increment=Increment(int(fields["inc_m"]), int(fields["inc_i"])),
        ),
    )


def used_field(zone: Zone) -> str:
    return f"{ZONE_LETTER[zone]}:used"


def overage_field(zone: Zone) -> str:
    return f"{ZONE_LETTER[zone]}:over"


def amount_field(zone: Zone) -> str:
    return f"{ZONE_LETTER[zone]}:amt"


def unbilled_field(zone: Zone) -> str:
    return f"{ZONE_LETTER[zone]}:unb"


def alert_flag_field(zone: Zone, threshold: int) -> str:
    return f"a:{ZONE_LETTER[zone]}:{threshold}"


def alert_flag(used_included_s: int, included_s: int, at_ms: int, call_id: str) -> str:
    """An alert flag names the call that crossed it, so a replay re-emits the alert."""
    return f"{used_included_s}|{included_s}|{at_ms}|{call_id}"


def user_field(user_id: str, zone: Zone) -> str:
    return f"{user_id}|{ZONE_LETTER[zone]}"


def user_amount_field(user_id: str) -> str:
    """In `u:<period>`: the overage amount the user was charged (micro-units, SPEC §14)."""
    return f"{user_id}|{SPENT_TAG}"


def user_reserved_amount_field(user_id: str) -> str:
    """In `u:<period>`: the worst-case amount the user's sessions of the period reserve."""
    return f"{user_id}|{RESERVED_TAG}"


# what follows the last '|' of a `u:` field, besides the zone letters
SPENT_TAG: Final = "$"
RESERVED_TAG: Final = "r$"
UserFieldKind = Literal["domestic", "international", "spent", "reserved"]
_USER_FIELD_KIND: Final[dict[str, UserFieldKind]] = {
    "d": "domestic", "i": "international", SPENT_TAG: "spent", RESERVED_TAG: "reserved"}


def parse_user_field(name: str) -> tuple[str, UserFieldKind]:
    """A `u:` field -> (user id, what it counts: a zone's seconds, or an amount)."""
    user, _, tag = name.rpartition("|")
    return user, _USER_FIELD_KIND[tag]


# ---------------------------------------------------------- audited settings ---

# The settings the API changes by publish-then-apply (rater.service.audited): the hash they
# live in (a key suffix after the subscription's base), the value's field, the revision
# applied and the last revision reserved (lua/reserve_revision.lua, apply_revision.lua).
SUBSCRIPTION_SUFFIX: Final = "sub"
LIMITS_SUFFIX: Final = "lim"
PAYG_FIELDS: Final = ("payg", "payg_rev", "payg_next")


def limit_fields(user_id: str) -> tuple[str, str, str]:
    """In `lim`: the user's limit, the revision applied, the last revision reserved."""
    return f"l:{user_id}", f"r:{user_id}", f"n:{user_id}"


def rated_call_row(
    fingerprint: str, period: str, billable_s: int, included_s: int, overage_s: int,
    unbilled_s: int, outcome: Outcome, amount_micro: int, rated_at_ms: int, rate: str,
) -> str:
    """A rated call in the `c:` bucket: what a replay re-emits (`rate` empty without charge)."""
    return "|".join((fingerprint, period, str(billable_s), str(included_s), str(overage_s),
                     str(unbilled_s), OUTCOME_LETTER[outcome], str(amount_micro),
                     str(rated_at_ms), rate))


# -------------------------------------------------------------- sessions ---

# The session hash `s:<session_id>` (SPEC §11), field by field:
#   st    state, a letter of SESSION_STATE_LETTER (below)
#   z     zone letter of the pool it reserves in; per  period of its initial request (§11.8)
#   u     user_id; val  validity_s of its grants
#   auth  authorised_s (call seconds granted in total); used  used_s last reported
#   res   seconds it reserves now in `p:<per>` field `<z>:res`
#   ra    the worst-case amount (micro-units) of that reservation, in `u:<per>` field
#         `<u>|r$` (SPEC §14)
#   rn    highest request_number seen ('' when none came); arn  request_number of the
#         stored answer ('' when that request had none); k  kind of that request (i|u|t)
#   ans   the stored answer, as `session_answer` reads it (returned again on a retry)
#   term  '1' once a terminate was accepted
#   dl    deadline (ms) while it reserves (open or terminated), mirrored in `sx`
#   gone  instant (ms) from which a closed, blocked or free session is forgotten: its key
#         then answers like no key (404, and an initial request may reuse the id)
SESSION_FIELDS: Final = ("st", "z", "per", "u", "val", "auth", "used", "res", "ra", "rn",
                         "arn", "k", "ans", "term", "dl", "gone")
# States (`st`), by letter:
#   o  open: holds a reservation, expires at dl = last request + validity + grace
#   t  terminated: holds billable(used_s) until its CDR, or until dl = terminate + CDR wait
#   c  closed by its CDR    x  expired, released by a sweep    b  blocked at set-up
#   f  free (inbound or emergency): reserves nothing, never expires by rule
#   e  a free session after its terminate
SESSION_STATE_LETTER: Final[dict[SessionState, str]] = {
    "open": "o", "terminated": "t", "closed": "c", "expired": "x", "blocked": "b",
    "free": "f", "ended": "e",
}
REQUEST_KIND_LETTER: Final[dict[RequestKind, str]] = {
    "initial": "i", "update": "u", "terminate": "t",
}
# A session that stopped reserving (closed, expired, blocked, ended) is kept this long after
# that instant, so retries get their stored answer and late requests their 404/409; a free
# session is kept this long after its validity and grace have run out since its last request.
# Open and terminated sessions have no expiry: a sweep releases them first (docs/sessions.md).
SESSION_KEEP_MS: Final = KEEP_CLOSED_MS
# A script releases at most this many due sessions of one subscription per call; any left
# over are released by the next script or sweep (meanwhile the pool looks smaller, never
# larger).
SESSION_SWEEP_MAX: Final = 1000
# `sub` hash fields: the subscription's session totals, kept by the session scripts: open
# sessions, and every session that reserves (open or terminated; terminated = the
# difference). `rate_batch` reads only the second, beside the plan: a subscription
# without it has no session a CDR could close.
SESSIONS_OPEN_FIELD: Final = "s:o"
SESSIONS_RESERVING_FIELD: Final = "s:n"


def reserved_field(zone: Zone) -> str:
    """In `p:<period>`: the seconds sessions reserve in that pool."""
    return f"{ZONE_LETTER[zone]}:res"


def subscription_reserved_field(zone: Zone) -> str:
    """In `sub`: the seconds its sessions reserve in that zone, every period together."""
    return f"s:r:{ZONE_LETTER[zone]}"


def session_answer(text: str) -> SessionAnswer:
    """The stored answer `p|300|0|600|included|<expires_at_ms>` (granted empty when null),
    as the session scripts write it (`answer_text` in lua/lib.lua)."""
    decision, granted, final, validity, reason, expires = text.split("|")
    return SessionAnswer(
        decision="permit" if decision == "p" else "block",
        granted_s=int(granted) if granted else None,
        final=final == "1",
        validity_s=int(validity),
        reason=reason,  # type: ignore[arg-type]  # written by the scripts from SessionReason
        expires_at_ms=int(expires),
    )


# ------------------------------------------------------------- lifetimes ---

def calls_bucket(started_at_ms: int) -> str:
    """`YYYYMM` of the call's UTC start: its dedupe bucket (rater.rating.model.start_month)."""
    day = from_ms(started_at_ms)
    return f"{day.year:04d}{day.month:02d}"


def period_keys_expire_at(period_end_ms: int, grace_ms: int) -> int:
    """`p:` and `u:` keys: the period's last accepted CDR (end + grace), and a day more."""
    return period_end_ms + grace_ms + KEEP_MS


def calls_bucket_expires_at(started_at_ms: int, grace_ms: int) -> int:
    """A `c:` bucket is looked into by CDRs up to a month later, so it lives until the first
    day of the month after next (UTC), plus grace, plus a day."""
    day = from_ms(started_at_ms)
    year, month0 = divmod(day.year * 12 + day.month - 1 + 2, 12)
    return day_to_ms(date(year, month0 + 1, 1)) + grace_ms + KEEP_MS
