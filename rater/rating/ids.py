"""Deterministic output ids (SPEC §4, §5.7): replays produce the same ids."""

from __future__ import annotations

import hashlib
import uuid

_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes


def uuid5_url(name: str) -> str:
    """`str(uuid.uuid5(uuid.NAMESPACE_URL, name))` without building a UUID object, which
    costs more than the SHA-1 itself; one of these per charged call (RFC 9562 §5.5)."""
    digest = hashlib.sha1(_URL_NAMESPACE + name.encode(), usedforsecurity=False).digest()
    version_and_variant = bytes(((digest[6] & 0x0F) | 0x50, digest[7], (digest[8] & 0x3F) | 0x80))
    text = (digest[:6] + version_and_variant + digest[9:16]).hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def charge_id(subscription_id: str, call_id: str) -> str:
    return uuid5_url(f"{subscription_id}/{call_id}")


def alert_id(subscription_id: str, zone: str, period: str, threshold: int) -> str:
    return uuid5_url(f"{subscription_id}/{zone}/{period}/{threshold}")
