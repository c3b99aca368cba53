"""`rater rerate`: re-rate a period with a corrected plan, emitting adjustments (SPEC §13;
the work is `rater.corrections`, docs/corrections.md says when and how)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from rater.cli.errors import CliError
from rater.config import Settings


def add_commands(commands: Any) -> None:
    rerate = commands.add_parser(
        "rerate", help="re-rate a period with a corrected plan; emit adjustments")
    rerate.add_argument("--period", required=True,
                        help="the period's start date (2026-11-01), or a month (2026-11)")
    scope = rerate.add_mutually_exclusive_group(required=True)
    scope.add_argument("--subscription", action="append", default=[], metavar="SUB")
    scope.add_argument("--billing-account", metavar="BA")
    rerate.add_argument("--plan", metavar="FILE",
                        help="JSON array of corrected Subscriptions (others: as in Redis)")
    rerate.add_argument("--reason", default="rerate", help="written on every adjustment")
    rerate.add_argument("--rerate-id", help="default: determined by the correction itself")
    rerate.add_argument("--dry-run", action="store_true", help="print the diff; touch nothing")
    rerate.add_argument("--json", action="store_true", help="the diff or summary as JSON")
    rerate.add_argument("--quiet", action="store_true", help="no progress bar")
    rerate.add_argument("--history-wait", type=float, default=120.0, metavar="SECONDS",
                        help="how long to wait for the call history to catch up")
    rerate.set_defaults(func=rerate_period)


def _plans(path: str | None) -> list[Any]:
    from rater.records import InvalidRecord, subscription_from_document

    if path is None:
        return []
    try:
        documents = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    if not isinstance(documents, list):
        raise CliError(f"{path}: expected a JSON array of subscriptions")
    try:
        return [subscription_from_document(doc) for doc in documents]
    except InvalidRecord as exc:
        raise CliError(f"{path}: invalid subscription: {exc}") from None


def rerate_period(settings: Settings, args: argparse.Namespace) -> int:
    import asyncpg

    from rater.corrections.run import RerateRefused, RerateRequest, run
    from rater.history.calls import InvalidQuery
    from rater.store import StoreUnavailable

    if not args.reason.strip() or len(args.reason) > 500:
        raise CliError("--reason: 1 to 500 characters")
    request = RerateRequest(args.period, args.subscription, args.billing_account,
                            _plans(args.plan), args.reason, args.rerate_id, args.dry_run,
                            args.history_wait)
    try:
        outcome = asyncio.run(run(settings, request, None if args.quiet else sys.stderr))
    except (RerateRefused, InvalidQuery) as exc:
        raise CliError(str(exc)) from None
    except (OSError, asyncpg.PostgresError, StoreUnavailable) as exc:
        raise CliError(f"rerate failed: {type(exc).__name__}: {exc}") from None
    result = outcome.result
    if args.json:
        print(orjson.dumps(_summary(outcome), option=orjson.OPT_INDENT_2).decode())
        return 0
    if args.dry_run:
        print(f"dry run of rerate {outcome.rerate_id}: nothing changed")
        print(f"{'subscription':<20} {'call':<20} {'started_at':<24} zone    "
              "billable incl overage outcome     amount -> billable incl overage outcome"
              "     amount")
        for d in result.diffs:
            b, a = d.before, d.after
            print(f"{d.subscription_id:<20} {d.call_id:<20} {d.started_at:<24} "
                  f"{d.zone[:7]:<7} {b[0]:>8} {b[1]:>4} {b[2]:>7} {b[3]:<9} {b[4]:>10} -> "
                  f"{a[0]:>8} {a[1]:>4} {a[2]:>7} {a[3]:<9} {a[4]:>10}")
    for line in _summary_lines(outcome):
        print(line)
    return 0


def _deltas_by_currency(adjustments: list[dict[str, Any]]) -> dict[str, str]:
    totals: dict[str, Decimal] = {}
    for record in adjustments:
        totals[record["currency"]] = totals.get(record["currency"], Decimal(0)) + Decimal(
            record["delta"])
    return {currency: f"{total:f}" for currency, total in sorted(totals.items())}


def _summary(outcome: Any) -> dict[str, Any]:
    result = outcome.result
    return {
        "rerate_id": outcome.rerate_id,
        "cutoff": outcome.cutoff.isoformat(),
        "resumed": outcome.resumed,
        "calls": result.calls,
        "changed_calls": len(result.diffs),
        "adjustments": result.adjustments,
        "delta_by_currency": _deltas_by_currency(result.adjustments),
        "counters_applied": outcome.applied,
        "diff": [{"subscription_id": d.subscription_id, "call_id": d.call_id,
                  "started_at": d.started_at, "zone": d.zone,
                  "before": dict(zip(("billable_s", "included_s", "overage_s", "outcome",
                                      "amount"), d.before, strict=True)),
                  "after": dict(zip(("billable_s", "included_s", "overage_s", "outcome",
                                     "amount"), d.after, strict=True))}
                 for d in result.diffs],
    }


def _summary_lines(outcome: Any) -> list[str]:
    result = outcome.result
    applied = Counter(outcome.applied.values())
    deltas = _deltas_by_currency(result.adjustments)
    return [
        f"rerate {outcome.rerate_id}{' (resumed)' if outcome.resumed else ''}: "
        f"{result.calls} calls rated up to {outcome.cutoff.isoformat()} re-rated, "
        f"{len(result.diffs)} changed",
        f"adjustments: {len(result.adjustments)}"
        + (" (" + ", ".join(f"{c} {d}" for c, d in deltas.items()) + ")" if deltas else ""),
        f"counters: {applied[True]} subscriptions moved now, {applied[False]} already",
    ]
