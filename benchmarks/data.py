"""The benchmark's data set: subscriptions and CDR records as they travel on Kafka.

Deterministic for a seed. Every record is `(key, value)` bytes in the order it
is produced. About 2 % are exact duplicates of an earlier CDR (same bytes) and
about 1 % are dead letters of every reason SPEC §5.10 lists, spread through the
stream. CDRs start within the last few hours, so they fall in an open period.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from rater.rating.clock import format_ms, now_ms

INCREMENTS = ("60/60", "30/6", "1/1", "60/1")
DOMESTIC_MINUTES = (0, 5, 10, 30, 60)
INTERNATIONAL_MINUTES = (0, 1, 5)
CURRENCIES = ("EUR", "USD", "GBP")
DURATIONS = (0, 3, 14, 29, 31, 45, 59, 61, 90, 120, 185, 240, 300, 600, 1200, 3600)
DEAD_KINDS = (
    "not_json", "wrong_type", "negative_duration", "bad_date", "unknown_zone",
    "unknown_subscription", "future_timestamp", "period_closed", "conflicting_duplicate",
)
REASON = {
    "not_json": "invalid", "wrong_type": "invalid", "negative_duration": "invalid",
    "bad_date": "invalid", "unknown_zone": "invalid",
    "unknown_subscription": "unknown_subscription", "future_timestamp": "future_timestamp",
    "period_closed": "period_closed", "conflicting_duplicate": "conflicting_duplicate",
}
Record = tuple[bytes | None, bytes]


@dataclass
class DataSet:
    subscriptions: list[dict[str, Any]]
    records: list[Record]
    now_ms: int
    duplicates: int = 0
    dead: Counter[str] = field(default_factory=Counter)  # expected dead letters by reason

    @property
    def valid(self) -> int:
        """Records that end as a rated call (duplicates included: they are re-emitted)."""
        return len(self.records) - sum(self.dead.values())

    def summary(self) -> dict[str, Any]:
        return {"records": len(self.records), "subscriptions": len(self.subscriptions),
                "duplicates": self.duplicates, "dead_letters": dict(self.dead),
                "rated_expected": self.valid}


def call_id(rnd: random.Random) -> str:
    """A 36-character UUID-shaped call id, as telephony platforms commonly send."""
    h = f"{rnd.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def subscriptions(count: int, seed: int = 1, prefix: str = "bs") -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    subs = []
    for i in range(count):
        subs.append({
            "subscription_id": f"{prefix}-{i:06d}",
            "billing_account_id": f"ba-{i // 4:06d}",
            "licenses": rnd.randint(1, 5),
            "payg_enabled": rnd.random() < 0.5,
            "billing_anchor_day": rnd.randint(1, 31),
            "currency": rnd.choice(CURRENCIES),
            "plan": {
                "included_minutes_per_license": {
                    "domestic": rnd.choice(DOMESTIC_MINUTES),
                    "international": rnd.choice(INTERNATIONAL_MINUTES),
                },
                "payg_rate_per_minute": {
                    "domestic": rnd.choice(("0.025", "0.02", "0.0125", "0.5")),
                    "international": rnd.choice(("0.15", "0.2", "1.05")),
                },
                "billing_increment": rnd.choice(INCREMENTS),
            },
        })
    return subs


def cdr_document(rnd: random.Random, sub: dict[str, Any], now: int) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "call_id": call_id(rnd),
        "subscription_id": sub["subscription_id"],
        "user_id": f"user-{rnd.randrange(2 * sub['licenses'])}",
        "started_at": format_ms(now - rnd.randrange(60_000, 6 * 3_600_000)),
        "duration_s": rnd.choice(DURATIONS),
        "direction": "outbound" if rnd.random() < 0.85 else "inbound",
        "zone": "domestic" if rnd.random() < 0.8 else "international",
    }
    if rnd.random() < 0.01:
        doc["emergency"] = True
    if rnd.random() < 0.7:
        doc["destination"] = f"+{rnd.randint(1, 9)}{rnd.randrange(10**9, 10**10)}"
    return doc


def dead_record(kind: str, rnd: random.Random, sub: dict[str, Any], now: int,
                earlier: dict[str, Any] | None) -> Record:
    key = sub["subscription_id"].encode()
    doc = cdr_document(rnd, sub, now)
    if kind == "not_json":
        return (None if rnd.random() < 0.5 else key), b"\x00not json {" + doc["call_id"].encode()
    if kind == "wrong_type":
        doc["duration_s"] = str(doc["duration_s"])
    elif kind == "negative_duration":
        doc["duration_s"] = -1 - rnd.randrange(100)
    elif kind == "bad_date":
        doc["started_at"] = "2026-02-30T10:00:00Z"
    elif kind == "unknown_zone":
        doc["zone"] = "lunar"
    elif kind == "unknown_subscription":
        doc["subscription_id"] = f"nobody-{rnd.randrange(10**6)}"
        key = doc["subscription_id"].encode()
    elif kind == "future_timestamp":
        doc["started_at"] = format_ms(now + 3_600_000 + rnd.randrange(3_600_000))
    elif kind == "period_closed":
        doc["started_at"] = format_ms(now - 100 * 86_400_000)
    elif kind == "conflicting_duplicate":
        assert earlier is not None
        doc = dict(earlier, duration_s=earlier["duration_s"] + 1)
        key = doc["subscription_id"].encode()
    return key, orjson.dumps(doc)


def generate(total: int, n_subs: int, seed: int = 7, dup_rate: float = 0.02,
             dead_rate: float = 0.01, now: int | None = None,
             call_prefix: str = "") -> DataSet:
    """`total` records: valid CDRs, exact duplicates and dead letters, interleaved."""
    now = now_ms() if now is None else now
    rnd = random.Random(seed)
    subs = subscriptions(n_subs, seed)
    data = DataSet(subs, [], now)
    history: list[tuple[dict[str, Any], bytes]] = []  # earlier valid CDRs (doc, bytes)
    dead_i = 0
    for _ in range(total):
        draw = rnd.random()
        if history and draw < dup_rate:
            doc, raw = history[rnd.randrange(len(history))]
            data.records.append((doc["subscription_id"].encode(), raw))
            data.duplicates += 1
        elif history and draw < dup_rate + dead_rate:
            kind = DEAD_KINDS[dead_i % len(DEAD_KINDS)]
            dead_i += 1
            earlier = history[rnd.randrange(len(history))][0]
            sub = subs[rnd.randrange(n_subs)]
            data.records.append(dead_record(kind, rnd, sub, now, earlier))
            data.dead[REASON[kind]] += 1
        else:
            doc = cdr_document(rnd, subs[rnd.randrange(n_subs)], now)
            if call_prefix:
                doc["call_id"] = call_prefix + doc["call_id"]
            raw = orjson.dumps(doc)
            history.append((doc, raw))
            data.records.append((doc["subscription_id"].encode(), raw))
    return data


def fresh_cdrs(subs: list[dict[str, Any]], seed: int, prefix: str) -> Iterator[Record]:
    """An endless stream of new, valid CDRs (unique call ids) for paced phases."""
    rnd = random.Random(seed)
    i = 0
    while True:
        doc = cdr_document(rnd, subs[rnd.randrange(len(subs))], now_ms())
        doc["call_id"] = f"{prefix}{i:09d}"
        i += 1
        yield doc["subscription_id"].encode(), orjson.dumps(doc)
