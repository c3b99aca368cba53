"""The Redis key layout: every key of one subscription shares the hash tag `{id}`.

`<prefix>:{<id>}:sub`          hash  the subscription's plan, licences, PAYG flag
`<prefix>:{<id>}:p:<period>`   hash  counters per zone and alert flags of one period
`<prefix>:{<id>}:u:<period>`   hash  billable seconds per user and zone of one period
`<prefix>:{<id>}:c:<YYYYMM>`   hash  rated calls by call_id, bucketed by started_at month

Only the `sub` key is built here; the Lua scripts derive the others from it,
so a script touches one hash slot whatever period it lands in (Redis Cluster).
"""

from __future__ import annotations

from redis.crc import key_slot


def subscription_key(prefix: str, subscription_id: str) -> str:
    return f"{prefix}:{{{subscription_id}}}:sub"


def users_key(prefix: str, subscription_id: str, period: str) -> str:
    return f"{prefix}:{{{subscription_id}}}:u:{period}"


def slot_of(key: str) -> int:
    return int(key_slot(key.encode()))
