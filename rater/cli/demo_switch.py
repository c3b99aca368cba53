"""`rater demo switch`: `make run`'s calls set up through credit-control sessions (SPEC §11),
the way a switch would, so that calls the pool cannot carry are refused at set-up.

For each planned call, oldest first, several at a time: an initial request for the
default quota; while the call outlasts its grant, an update reporting the seconds used so
far and asking for more; when the call ends, or when a final grant runs out (the switch
cuts the call there), a terminate with the answered seconds; then the call's CDR, with
those seconds. A refused set-up is never connected: it has no CDR. The CDRs go to
`cdrs.jsonl` (`rater replay` produces them); `switch.json` holds the figures the report
prints.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from rater.cli.errors import CliError
from rater.config import Settings

CALLS_IN_FLIGHT = 32
SWITCH_SUBJECT = "demo-switch"


@dataclass
class SwitchTally:
    permitted: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # by reason
    cut: int = 0  # connected, ended by a final grant before the caller hung up
    requests: Counter[str] = field(default_factory=Counter)  # initial, update, terminate

    def as_dict(self) -> dict[str, Any]:
        return {"permitted": self.permitted, "refused": dict(self.refused), "cut": self.cut,
                "requests": dict(self.requests)}


class SessionClient:
    """The sessions API of one worker, as the demo's switch uses it."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(self.base + path, data=orjson.dumps(body)) as answer:
            doc: dict[str, Any] = orjson.loads(await answer.read())
            if doc.get("error") == "auth_not_configured":
                raise CliError("the running worker checks no bearer tokens (started before "
                               "make run gave it the demo key?): make stop, then make run")
            if answer.status != 200:
                raise CliError(f"HTTP {answer.status} from POST {path}: {doc.get('error')}: "
                               f"{doc.get('detail')}", 1)
            return doc


async def place_call(api: SessionClient, call: dict[str, Any], tally: SwitchTally,
                     ) -> dict[str, Any] | None:
    """One call's life through its session; its CDR, or None when it was refused."""
    sid = call["call_id"]
    path = f"/v1/sessions/{quote(sid, safe='')}"
    answer = await api.post("/v1/sessions", {
        "session_id": sid, "subscription_id": call["subscription_id"],
        "user_id": call["user_id"], "direction": call["direction"], "zone": call["zone"],
        "emergency": call["emergency"], "request_number": 0})
    tally.requests["initial"] += 1
    if answer["decision"] == "block":
        tally.refused[answer["reason"]] += 1
        return None
    tally.permitted += 1
    wanted, number, used = call["duration_s"], 0, 0
    while True:
        granted = answer["granted_s"]
        if granted is None or wanted <= granted:  # free, or ends within its grant
            used = wanted
            break
        if answer["final"]:
            used = granted
            tally.cut += 1
            break
        number += 1
        answer = await api.post(f"{path}/update", {
            "used_s": granted, "request_number": number})
        tally.requests["update"] += 1
    await api.post(f"{path}/terminate", {"used_s": used, "request_number": number + 1})
    tally.requests["terminate"] += 1
    return {**call, "duration_s": used}


async def run_switch(base: str, token: str, calls: list[dict[str, Any]],
                     ) -> tuple[list[dict[str, Any]], SwitchTally]:
    tally = SwitchTally()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    slots = asyncio.Semaphore(CALLS_IN_FLIGHT)
    async with aiohttp.ClientSession(headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=30)) as http:
        api = SessionClient(http, base)

        async def one(call: dict[str, Any]) -> dict[str, Any] | None:
            async with slots:
                return await place_call(api, call, tally)

        cdrs = await asyncio.gather(*(one(call) for call in calls))
    return [cdr for cdr in cdrs if cdr is not None], tally


def switch_demo(settings: Settings, args: argparse.Namespace) -> int:
    from rater import demo
    from rater.web.tokens import issue_token

    folder = Path(args.dir)
    calls = [orjson.loads(line) for line in (folder / "calls.jsonl").read_bytes().splitlines()
             if line.strip()]
    if not settings.auth_configured or settings.jwt_algorithm != "HS256":
        raise CliError("the demo switch signs its token with the HS256 key of RATER_JWT_KEY "
                       "(make run sets it)")
    token = issue_token(settings, subject=SWITCH_SUBJECT, scope="call_authorizer")
    base = (args.url or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")
    try:
        cdrs, tally = asyncio.run(run_switch(base, token, calls))
    except aiohttp.ClientError as exc:
        raise CliError(f"cannot reach the sessions API at {base}: {exc}") from None
    (folder / "cdrs.jsonl").write_bytes(b"\n".join(demo.cdr_lines(cdrs)) + b"\n")
    summary = {**tally.as_dict(), "cdrs": len(cdrs), "expect": len(cdrs) + demo.JUNK_LINES}
    (folder / "switch.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    refused = sum(tally.refused.values())
    print(f"{len(calls)} calls set up through sessions: {tally.permitted} permitted, "
          f"{refused} refused, {tally.cut} cut at their final grant; {len(cdrs)} CDRs "
          f"written to {folder}/cdrs.jsonl")
    return 0
