"""Credit-control sessions against real workers: a burst of concurrent set-ups, the calls
ended within their grants, their CDRs through Kafka, and the reference model's verdict.

Used by tests/integration/test_sessions_*.py and the fault suite (Redis Cluster, SIGKILL).
The burst is built so that the model can be driven in a serial order that must give each
session exactly the answer the workers gave it, whatever order the concurrent requests
took in Redis: every call asks for the same `requested_s`, so the pool grants full asks
until at most one partial grant, then blocks. The model is fed the full grants, then the
partial one, then the blocks.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from rater.config import Settings
from rater.rating.clock import RatingClock, format_ms, now_ms
from rater.rating.increments import billable_seconds
from rater.rating.model import ReferenceRater
from rater.rating.results import CallRating, ZoneCounters
from rater.rating.sessions import SessionPolicy
from rater.records import (
    Increment,
    SessionInitial,
    SessionTerminate,
    cdr_fingerprint,
    decode_cdr,
    subscription_from_document,
)
from tests.builders import cdr_doc
from tests.integration.harness import consume, produce

ANSWER_FIELDS = {"session_id", "subscription_id", "decision", "granted_s", "final",
                 "validity_s", "reason", "expires_at"}


def user_of(session_id: str) -> str:
    """The user of a burst's call: a few users share the calls."""
    return f"user-{int(session_id.rsplit('-', 1)[1]) % 7}"


def session_path(session_id: str | None = None, action: str | None = None) -> str:
    if session_id is None:
        return "/v1/sessions"
    return f"/v1/sessions/{quote(session_id, safe='')}/{action}"


def session_url(base: str, session_id: str | None = None, action: str | None = None) -> str:
    return base + session_path(session_id, action)


async def post_all(urls: Sequence[str], requests: Sequence[tuple[str, Mapping[str, Any]]],
                   token: str, timeout_s: float = 60.0) -> list[tuple[int, Any]]:
    """Every (path, body) at once, request i to worker i mod n; answers in request order.

    Like a switch with several rating servers, a request whose worker does not answer (no
    connection, or 503 while it starts) goes again, unchanged, to the next one, until
    `timeout_s`: a request that was served before its answer got lost is then answered
    from the stored answer (same request number)."""
    connector = aiohttp.TCPConnector(limit=0)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with aiohttp.ClientSession(connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=10)) as http:
        async def post(index: int, path: str, body: Mapping[str, Any]) -> tuple[int, Any]:
            attempt = 0
            while True:
                url = urls[(index + attempt) % len(urls)] + path
                try:
                    async with http.post(url, data=orjson.dumps(body)) as answer:
                        found = answer.status, orjson.loads(await answer.read())
                    if found[0] != 503:
                        return found
                except (aiohttp.ClientError, TimeoutError):
                    found = None
                attempt += 1
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"{path}: no worker answered ({found})")
                await asyncio.sleep(0.1)

        return list(await asyncio.gather(*(post(i, path, body)
                                           for i, (path, body) in enumerate(requests))))


@dataclass
class Burst:
    """Concurrent initial requests of one subscription and what became of them."""

    subscription: dict[str, Any]  # the Subscription document
    requested_s: int
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # session_id -> answer

    @property
    def sub_id(self) -> str:
        return str(self.subscription["subscription_id"])

    @property
    def increment(self) -> Increment:
        return Increment.parse(self.subscription["plan"]["billing_increment"])

    def permitted(self) -> dict[str, int]:
        return {sid: a["granted_s"] for sid, a in self.answers.items()
                if a["decision"] == "permit"}

    def granted_billable_s(self) -> int:
        return sum(billable_seconds(g, self.increment) for g in self.permitted().values())


async def set_up(urls: Sequence[str], token: str, subscription: dict[str, Any], calls: int,
                 requested_s: int, tag: str) -> Burst:
    """`calls` initial requests at once, spread over the workers' `urls` in turn."""
    burst = Burst(subscription, requested_s)
    requests = []
    for i in range(calls):
        sid = f"{tag}-{i:04d}"
        body = {"session_id": sid, "subscription_id": burst.sub_id,
                "user_id": user_of(sid), "direction": "outbound", "zone": "domestic",
                "requested_s": requested_s, "request_number": 0}
        requests.append((session_path(), body))
    for (_, body), (status, answer) in zip(requests, await post_all(urls, requests, token),
                                           strict=True):
        assert status == 200, (status, answer)
        assert set(answer) == ANSWER_FIELDS, answer
        burst.answers[body["session_id"]] = answer
    return burst


@dataclass
class CallEnd:
    session_id: str
    duration_s: int
    cdr_first: bool  # the CDR comes before the terminate


def plan_ends(burst: Burst, seed: int, cdr_first: float = 0.5,
              abandoned: float = 0.0) -> list[CallEnd]:
    """The permitted calls end within their grant: some at the grant, some earlier; a
    share `cdr_first` sends its CDR before its terminate; a share `abandoned` never ends
    (a switch that stopped reporting: no terminate, no CDR)."""
    rnd = random.Random(seed)
    ends = []
    for sid, granted in sorted(burst.permitted().items()):
        if rnd.random() < abandoned:
            continue
        duration = granted if rnd.random() < 0.5 else rnd.randint(1, granted)
        ends.append(CallEnd(sid, duration, rnd.random() < cdr_first))
    return ends


def call_cdr(burst: Burst, end: CallEnd, started_at_ms: int) -> dict[str, Any]:
    return cdr_doc(call_id=end.session_id, subscription_id=burst.sub_id,
                   user_id=user_of(end.session_id), started_at=format_ms(started_at_ms),
                   duration_s=end.duration_s)


async def end_calls(settings: Settings, urls: Sequence[str], token: str, burst: Burst,
                    ends: Sequence[CallEnd], started_at_ms: int,
                    timeout_s: float = 90.0) -> dict[str, dict[str, Any]]:
    """Terminates (concurrently) and CDRs (through Kafka) in each call's order; the rated
    calls by call id."""
    async def terminate(group: Sequence[CallEnd]) -> None:
        requests = [(session_path(e.session_id, "terminate"),
                     {"used_s": e.duration_s, "request_number": 1}) for e in group]
        for status, answer in await post_all(urls, requests, token, timeout_s):
            assert status == 200, (status, answer)
            assert (answer["decision"], answer["final"]) == ("permit", True), answer

    async def send_cdrs(group: Sequence[CallEnd]) -> None:
        records = [(burst.sub_id.encode(), orjson.dumps(call_cdr(burst, e, started_at_ms)))
                   for e in group]
        await produce(settings, settings.topics.cdr, records)

    first = [e for e in ends if e.cdr_first]
    later = [e for e in ends if not e.cdr_first]
    await terminate(later)
    await send_cdrs(ends)
    wanted = {e.session_id for e in ends}
    seen = await consume(settings, [settings.topics.rated],
                         lambda s: wanted <= {r["call_id"] for r in s[settings.topics.rated]
                                              if r["subscription_id"] == burst.sub_id},
                         timeout_s)
    await terminate(first)  # their CDRs are rated: these terminates change nothing
    return {r["call_id"]: r for r in seen[settings.topics.rated]
            if r["subscription_id"] == burst.sub_id and r["call_id"] in wanted}


def model_of(burst: Burst, ends: Sequence[CallEnd], started_at_ms: int,
             policy: SessionPolicy) -> ReferenceRater:
    """The reference model driven in the serial order that gives every session the answer
    it got (module docstring), then the same call ends; checks the answers on the way."""
    model = ReferenceRater()
    model.upsert(subscription_from_document(burst.subscription))
    now = now_ms()
    full = [s for s, a in burst.answers.items()
            if a["decision"] == "permit" and a["granted_s"] == burst.requested_s]
    partial = [s for s, a in burst.answers.items()
               if a["decision"] == "permit" and a["granted_s"] != burst.requested_s]
    blocked = [s for s, a in burst.answers.items() if a["decision"] == "block"]
    assert len(partial) <= 1, f"more than one partial grant: {partial}"
    for sid in full + partial + blocked:
        got = burst.answers[sid]
        request = SessionInitial(sid, burst.sub_id, user_of(sid), "outbound", "domestic",
                                 False, burst.requested_s, 0)
        want = model.sessions.initial(request, policy, now).answer
        assert want is not None
        assert (want.decision, want.granted_s, want.final, want.reason, want.validity_s) == (
            got["decision"], got["granted_s"], got["final"], got["reason"], got["validity_s"]
        ), sid
    clock = RatingClock(now + 1000)
    for end in ends:
        terminate = SessionTerminate(end.duration_s, 1, None)
        cdr = decode_cdr(orjson.dumps(call_cdr(burst, end, started_at_ms)))
        if not end.cdr_first:
            model.sessions.terminate(burst.sub_id, end.session_id, terminate, policy, now)
        rating = model.rate(cdr, cdr_fingerprint(cdr), clock, clock.now_ms)
        assert isinstance(rating, CallRating) and rating.session == "closed"
        if end.cdr_first:
            model.sessions.terminate(burst.sub_id, end.session_id, terminate, policy, now)
    return model


def model_counters(model: ReferenceRater, sub_id: str, period: str) -> ZoneCounters:
    return model.zone(sub_id, period, "domestic")
