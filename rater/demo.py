"""Demo data for `make run`: subscriptions, the calls a switch tries to set up, and the
CDRs of those that took place (rater.cli.demo_switch decides which), dated in the
current period."""

from __future__ import annotations

import random
from typing import Any

from rater.rating.clock import format_ms, now_ms

PLANS = [
    ("60/60", {"domestic": 100, "international": 10},
     {"domestic": "0.025", "international": "0.15"}),
    ("30/6", {"domestic": 30, "international": 0}, {"domestic": "0.02", "international": "0.2"}),
    ("1/1", {"domestic": 5, "international": 5}, {"domestic": "0.0125", "international": "0.1"}),
]


def subscriptions(count: int = 12, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    subs = []
    for i in range(count):
        increment, minutes, rates = PLANS[i % len(PLANS)]
        subs.append({
            "subscription_id": f"demo-sub-{i:03d}",
            "billing_account_id": f"demo-ba-{i % 4}",
            "licenses": rnd.randint(1, 3),
            "payg_enabled": i % 2 == 0,
            "billing_anchor_day": 1,
            "currency": "EUR" if i % 3 else "USD",
            "plan": {
                "included_minutes_per_license": minutes,
                "payg_rate_per_minute": rates,
                "billing_increment": increment,
            },
        })
    return subs


def planned_calls(subs: list[dict[str, Any]], count: int = 2000,
                  seed: int = 11) -> list[dict[str, Any]]:
    """The calls a switch will try to set up: CDR-shaped, `duration_s` the seconds each
    would last if nothing cut it, from the last few hours (inside the current period),
    oldest first."""
    rnd = random.Random(seed)
    now = now_ms()
    calls = []
    for i in range(count):
        sub = rnd.choice(subs)
        calls.append({
            "call_id": f"demo-call-{i:06d}",
            "subscription_id": sub["subscription_id"],
            "user_id": f"user-{rnd.randint(1, 5)}",
            "started_at": format_ms(now - rnd.randint(60_000, 6 * 3_600_000)),
            "duration_s": rnd.choice([0, 15, 45, 61, 120, 300, 900, 1800]),
            "direction": "outbound" if rnd.random() < 0.85 else "inbound",
            "zone": "domestic" if rnd.random() < 0.8 else "international",
            "emergency": rnd.random() < 0.01,
        })
    calls.sort(key=lambda call: (call["started_at"], call["call_id"]))
    return calls


def cdr_lines(cdrs: list[dict[str, Any]]) -> list[bytes]:
    """The CDRs of the calls that took place, with a replay now and then (which must change
    nothing) and some junk (which must be dead-lettered)."""
    import orjson

    lines: list[bytes] = []
    for i, cdr in enumerate(cdrs):
        lines.append(orjson.dumps(cdr))
        if i % 500 == 0:
            lines.append(orjson.dumps(cdr))
    lines += [
        b"this is not json",
        b'{"call_id": "demo-bad-1", "subscription_id": "demo-sub-000", "duration_s": -5}',
        orjson.dumps({"call_id": "demo-bad-2", "subscription_id": "no-such-sub",
                      "user_id": "u", "started_at": format_ms(now_ms()), "duration_s": 10,
                      "direction": "outbound", "zone": "domestic"}),
    ]
    return lines


JUNK_LINES = 3  # the dead letters cdr_lines adds
