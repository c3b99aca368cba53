"""`rater demo generate|switch|report`: the example data, the calls set up through sessions
(rater.cli.demo_switch), and the closing report of `make run`."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from rater.config import Settings


def add_commands(commands: Any) -> None:
    demo = commands.add_parser("demo", help="demo data and report for `make run`")
    actions = demo.add_subparsers(dest="action", required=True)
    generate = actions.add_parser("generate", help="subscriptions and the calls to place")
    generate.add_argument("--out", default="rater-data/demo")
    generate.add_argument("--calls", type=int, default=2000)
    generate.set_defaults(func=generate_demo)
    switch = actions.add_parser("switch", help="set the calls up through sessions; write "
                                               "the CDRs of those that took place")
    switch.add_argument("--dir", default="rater-data/demo")
    switch.add_argument("--url", help="API base URL (default: RATER_WEB_HOST/RATER_WEB_PORT)")
    switch.set_defaults(func=switch_demo)
    report = actions.add_parser("report")
    report.add_argument("--dir", default="rater-data/demo")
    report.add_argument("--wait", type=float, default=60.0)
    report.add_argument("--expect", type=int, default=None,
                        help="wait until this many records were handled (default: what "
                             "the switch sent, from switch.json)")
    report.set_defaults(func=report_demo)


def generate_demo(settings: Settings, args: argparse.Namespace) -> int:
    from rater import demo

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subs = demo.subscriptions()
    calls = demo.planned_calls(subs, args.calls)
    (out / "subscriptions.json").write_bytes(orjson.dumps(subs, option=orjson.OPT_INDENT_2))
    (out / "calls.jsonl").write_bytes(b"\n".join(orjson.dumps(c) for c in calls) + b"\n")
    print(f"wrote {out}/subscriptions.json ({len(subs)}) and {out}/calls.jsonl ({len(calls)})")
    return 0


def switch_demo(settings: Settings, args: argparse.Namespace) -> int:
    from rater.cli.demo_switch import switch_demo as run_switch

    return run_switch(settings, args)


def _read_outputs(settings: Settings) -> dict[str, list[Any]]:
    from rater.kafka import read_to_end

    topics = settings.topics
    names = [topics.rated, topics.charges, topics.dlq, topics.alerts]
    seen: dict[str, list[Any]] = {name: [] for name in names}
    for message in asyncio.run(read_to_end(settings.kafka_bootstrap, names)):
        seen[message.topic].append(orjson.loads(message.value))
    return seen


def report_demo(settings: Settings, args: argparse.Namespace) -> int:
    topics = settings.topics
    summary_file = Path(args.dir) / "switch.json"
    switch = orjson.loads(summary_file.read_bytes()) if summary_file.exists() else None
    expect = args.expect if args.expect is not None else (switch or {}).get("expect", 0)
    deadline = time.monotonic() + args.wait
    while True:
        seen = _read_outputs(settings)
        handled = len({(r["subscription_id"], r["call_id"]) for r in seen[topics.rated]})
        handled += len(seen[topics.dlq])
        if handled >= expect or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    if switch is not None:
        refused = switch["refused"]
        print(f"call set-ups (POST /v1/sessions): {switch['permitted']} permitted, "
              f"{sum(refused.values())} refused at set-up"
              + (f" ({', '.join(f'{k}={v}' for k, v in sorted(refused.items()))})"
                 if refused else "")
              + f", {switch['cut']} cut at their final grant")
    rated = {(r["subscription_id"], r["call_id"]): r for r in seen[topics.rated]}
    outcomes = Counter(r["outcome"] for r in rated.values())
    charges = {c["charge_id"]: c for c in seen[topics.charges]}
    counts: Counter[str] = Counter()
    amounts: dict[str, Decimal] = {}
    for charge in charges.values():
        counts[charge["currency"]] += 1
        amounts[charge["currency"]] = (amounts.get(charge["currency"], Decimal(0))
                                       + Decimal(charge["amount"]))
    print(f"rated calls ({topics.rated}): {len(rated)} distinct")
    for outcome, n in sorted(outcomes.items()):
        print(f"  {outcome:<10} {n}")
    print(f"overage charges ({topics.charges}): {len(charges)} distinct")
    for currency in sorted(amounts):
        print(f"  {currency} {amounts[currency]} over {counts[currency]} charges")
    print(f"blocked calls (PAYG off, pool empty): {outcomes.get('blocked', 0)}")
    print(f"threshold alerts ({topics.alerts}): {len(seen[topics.alerts])}")
    reasons = Counter(d["reason"] for d in seen[topics.dlq])
    print(f"dead letters ({topics.dlq}): {sum(reasons.values())} "
          + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
    return 0
