"""Deterministic output ids (SPEC §4, §5.7): replays produce the same ids."""

from __future__ import annotations

import uuid


def charge_id(subscription_id: str, call_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{subscription_id}/{call_id}"))


def alert_id(subscription_id: str, zone: str, period: str, threshold: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{subscription_id}/{zone}/{period}/{threshold}"))
