"""The Redis layout, whole: key names, field names, value encodings and lifetimes.

Every key of one subscription carries the hash tag `{<subscription_id>}`, so one
script call touches one hash slot whatever period it lands in (Redis Cluster):

`<prefix>:{<id>}:sub`          hash  plan, licences, PAYG flag, its revision (`payg_rev`)
                                      and the last revision reserved (`payg_next`)
`<prefix>:{<id>}:p:<period>`   hash  per zone: counters (`d:used`, `d:over`, `d:amt`,
                                      `d:unb`) and alert flags (`a:d:80`) of one period
`<prefix>:{<id>}:u:<period>`   hash  billable seconds per user and zone (`<user>|d`)
`<prefix>:{<id>}:c:<YYYYMM>`   hash  rated calls by call_id, bucketed by the UTC month of
                                      started_at (the dedupe memory of SPEC §5.8)
`<prefix>:ba:{<account>}:subs` hash  the billing account's subscriptions: subscription id ->
                                      billing anchor day (the console lists an account with it)

The Lua scripts receive only the `sub` key and derive the others from it with the
same names (`base_of` in lua/lib.lua, the field tables in lua/rate_batch.lua);
`rater.store.rebuild` writes this layout from the topics, and the differential
tests hold the three together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Final

from redis.crc import key_slot

from rater.rating.clock import day_to_ms, from_ms
from rater.rating.money import rate_to_micro
from rater.rating.results import Outcome
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


def parse_user_field(name: str) -> tuple[str, Zone]:
    user, _, letter = name.rpartition("|")
    return user, LETTER_ZONE[letter]


def rated_call_row(
    fingerprint: str, period: str, billable_s: int, included_s: int, overage_s: int,
    unbilled_s: int, outcome: Outcome, amount_micro: int, rated_at_ms: int, rate: str,
) -> str:
    """A rated call in the `c:` bucket: what a replay re-emits (`rate` empty without charge)."""
    return "|".join((fingerprint, period, str(billable_s), str(included_s), str(overage_s),
                     str(unbilled_s), OUTCOME_LETTER[outcome], str(amount_micro),
                     str(rated_at_ms), rate))


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
