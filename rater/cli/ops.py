"""Operator commands over the HTTP API: `rater usage`, `rater payg`, `rater token`.

`rater usage SUB` and `rater payg SUB on|off` call a running worker's API
(`--url`, default `http://RATER_WEB_HOST:RATER_WEB_PORT`) with a bearer token
from `--token` or the `RATER_TOKEN` environment variable. `rater token` mints a
token for local use with `rater.web.tokens` (production tokens come from the
identity provider).

Exit codes: 0 success, 1 the API refused (the HTTP status and the error body
are printed), 2 usage error or the API unreachable.
"""

from __future__ import annotations

import argparse
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from rater.cli.errors import CliError
from rater.config import Settings

TIMEOUT_S = 10.0


def _base_url(settings: Settings, args: argparse.Namespace) -> str:
    url: str | None = getattr(args, "url", None)
    return (url or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")


def _token(args: argparse.Namespace) -> str:
    token: str | None = getattr(args, "token", None) or os.environ.get("RATER_TOKEN")
    if not token:
        raise CliError("a bearer token is needed: --token TOKEN or RATER_TOKEN (see `rater token`)")
    return token.strip()


def call_api(
    method: str, url: str, token: str, body: Any = None, timeout: float = TIMEOUT_S
) -> Any:
    """One JSON request; CliError(code 1) with the API's error when it is not 2xx."""
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            doc = orjson.loads(raw)
            reason = f"{doc.get('error')}: {doc.get('detail')}"
        except (orjson.JSONDecodeError, AttributeError):
            reason = raw.decode("utf-8", "replace")[:200]
        raise CliError(f"HTTP {exc.code} from {method} {url}: {reason}", 1) from None
    except (urllib.error.URLError, OSError) as exc:
        cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise CliError(f"cannot reach {url}: {cause}") from None


def _sub_url(base: str, subscription_id: str, tail: str) -> str:
    return f"{base}/v1/subscriptions/{urllib.parse.quote(subscription_id, safe='')}/{tail}"


def _minutes(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{minutes}:{rest:02d}"


def format_usage(doc: dict[str, Any]) -> str:
    """The usage view as a table (seconds, with m:ss alongside)."""
    lines = [
        f"subscription {doc['subscription_id']}  billing account {doc['billing_account_id']}",
        f"period {doc['period']} until {doc['period_end']}  "
        f"PAYG {'on' if doc['payg_enabled'] else 'off'}  currency {doc['currency']}",
        "",
    ]
    header = ("zone", "included", "used", "remaining", "reserved", "available", "overage",
              "unbilled", f"overage {doc['currency']}", "status")
    rows = [header]
    for zone, z in doc["zones"].items():
        rows.append((
            zone,
            f"{z['included_s']}s ({_minutes(z['included_s'])})",
            f"{z['used_included_s']}s",
            f"{z['remaining_s']}s ({_minutes(z['remaining_s'])})",
            f"{z['reserved_s']}s",  # by credit-control sessions (docs/sessions.md)
            f"{z['available_s']}s",
            f"{z['overage_s']}s",
            f"{z['unbilled_s']}s",
            z["overage_amount"],
            z["status"],
        ))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [str(cell).ljust(w) if i in (0, len(header) - 1) else str(cell).rjust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def cmd_usage(settings: Settings, args: argparse.Namespace) -> int:
    url = _sub_url(_base_url(settings, args), args.subscription_id, "usage")
    doc = call_api("GET", url, _token(args))
    if args.json:
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_usage(doc))
    return 0


def cmd_payg(settings: Settings, args: argparse.Namespace) -> int:
    enabled = args.state == "on"
    url = _sub_url(_base_url(settings, args), args.subscription_id, "payg")
    doc = call_api("PUT", url, _token(args), {"enabled": enabled})
    previous = doc.get("previous")
    was = "on" if previous else "off"
    now = "on" if doc.get("payg_enabled") else "off"
    print(f"PAYG for {doc.get('subscription_id')}: {now} (was {was})")
    return 0


def _role_pairs(values: list[str]) -> dict[str, str]:
    roles: dict[str, str] = {}
    for value in values:
        account, sep, role = value.partition("=")
        if not sep or not account or not role:
            raise CliError(
                f"--role expects BILLING_ACCOUNT=owner|contributor|reader, got {value!r}"
            )
        roles[account] = role
    return roles


def _read_key(value: str, what: str) -> str:
    try:
        return Path(value).read_text()
    except OSError as exc:
        raise CliError(f"cannot read {what} {value!r}: {exc.strerror}") from None


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from rater.web.tokens import issue_token

    roles = _role_pairs(args.role)
    if args.private_key is not None:
        algorithm, key = "RS256", _read_key(args.private_key, "private key")
    elif args.secret is not None:
        algorithm = "HS256"
        if args.secret == "":
            if settings.jwt_algorithm != "HS256" or not settings.jwt_key:
                raise CliError("--secret without a value needs RATER_JWT_ALGORITHM=HS256 "
                               "and RATER_JWT_KEY")
            key = settings.jwt_key
        elif args.secret.startswith("@"):
            key = _read_key(args.secret[1:], "secret file")
        else:
            key = args.secret
    else:
        raise CliError("give --private-key FILE (RS256) or --secret [SECRET|@FILE] (HS256)")
    issuer = args.issuer or settings.jwt_issuer
    audience = args.audience or settings.jwt_audience
    if not issuer or not audience:
        raise CliError("issuer and audience are needed: --issuer/--audience or "
                       "RATER_JWT_ISSUER/RATER_JWT_AUDIENCE")
    try:
        token = issue_token(
            key,
            subject=args.sub,
            roles=roles or None,
            scope=args.scope or None,
            expires_in=args.expires_in,
            issuer=issuer,
            audience=audience,
            algorithm=algorithm,
        )
    except (ValueError, TypeError) as exc:
        raise CliError(f"cannot sign the token: {exc}") from None
    print(token)
    return 0


def add_commands(subparsers: Any) -> None:

    def api_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--token", help="bearer token (default: $RATER_TOKEN)")
        parser.add_argument("--url", help="API base URL (default: http://127.0.0.1:6066, "
                                          "from RATER_WEB_HOST/RATER_WEB_PORT)")

    usage = subparsers.add_parser("usage", help="show a subscription's usage this period")
    usage.add_argument("subscription_id", metavar="SUB")
    usage.add_argument("--json", action="store_true", help="print the API's JSON answer")
    api_options(usage)
    usage.set_defaults(func=cmd_usage)

    payg = subparsers.add_parser("payg", help="switch pay-as-you-go on or off")
    payg.add_argument("subscription_id", metavar="SUB")
    payg.add_argument("state", choices=("on", "off"))
    api_options(payg)
    payg.set_defaults(func=cmd_payg)

    token = subparsers.add_parser("token", help="mint a bearer token for local use")
    token.add_argument("--sub", required=True, help="the actor (JWT `sub` claim)")
    token.add_argument("--role", action="append", default=[], metavar="BA=ROLE",
                       help="role on a billing account (owner|contributor|reader); repeatable")
    token.add_argument("--scope", action="append", default=[],
                       help="service scope, e.g. call_authorizer; repeatable")
    key = token.add_mutually_exclusive_group()
    key.add_argument("--private-key", metavar="FILE", help="RS256: PEM private key file")
    key.add_argument("--secret", nargs="?", const="", metavar="SECRET|@FILE",
                     help="HS256: the secret, @FILE, or nothing to use RATER_JWT_KEY")
    token.add_argument("--issuer", help="default: RATER_JWT_ISSUER")
    token.add_argument("--audience", help="default: RATER_JWT_AUDIENCE")
    token.add_argument("--expires-in", type=int, default=3600, metavar="SECONDS")
    token.set_defaults(func=cmd_token)
