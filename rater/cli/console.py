"""`rater console links|demo-key|reindex`: what a local console needs (SPEC §12).

`links` prints sign-in links for a demo owner and a demo reader of the demo's billing
accounts (or `--account` ones), signed with the worker's own HS256 secret
(`RATER_JWT_KEY`, issuer and audience): `make run` prints them. A production
deployment's tokens come from its identity provider, so `links` refuses RS256.
`demo-key FILE` writes a random HS256 secret once (mode 0600). `reindex` writes the
billing-account index of every subscription stored before the index existed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rater.cli.errors import CliError
from rater.config import Settings

DEFAULT_LINK_LIFETIME_S = 12 * 3600


def demo_accounts() -> list[str]:
    from rater import demo

    return sorted({sub["billing_account_id"] for sub in demo.subscriptions()})


def sign_in_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/console/sign-in?token={quote(token, safe='')}"


def cmd_links(settings: Settings, args: argparse.Namespace) -> int:
    from rater.web.tokens import issue_token

    if settings.jwt_algorithm != "HS256" or not settings.jwt_key:
        raise CliError("console links are signed with the worker's HS256 secret: set "
                       "RATER_JWT_ALGORITHM=HS256 and RATER_JWT_KEY=@FILE (rater console "
                       "demo-key FILE makes one), RATER_JWT_ISSUER and RATER_JWT_AUDIENCE")
    accounts = args.account or demo_accounts()
    base = args.url or f"http://{settings.web_host}:{settings.web_port}"
    for label, subject, role in (("owner", args.owner, "owner"),
                                 ("reader", args.reader, "reader")):
        token = issue_token(settings, subject=subject, roles=dict.fromkeys(accounts, role),
                            expires_in=args.expires_in)
        print(f"console, {label} ({subject}): {sign_in_link(base, token)}")
    return 0


def cmd_demo_key(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.exists() and path.stat().st_size > 0:
        print(f"{path}: kept (already there)")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secrets.token_urlsafe(48))
    print(f"{path}: a new HS256 secret (use RATER_JWT_KEY=@{path})")
    return 0


async def _reindex(settings: Settings) -> int:
    from rater.store import RedisStore

    store = RedisStore.from_settings(settings)
    try:
        return await store.index_every_subscription()
    finally:
        await store.close()


def cmd_reindex(settings: Settings, args: argparse.Namespace) -> int:
    from rater.store import StoreUnavailable

    try:
        count = asyncio.run(_reindex(settings))
    except StoreUnavailable as exc:
        raise CliError(f"Redis at {settings.redis_url} unavailable: {exc}") from None
    print(f"indexed {count} subscriptions by billing account")
    return 0


def add_commands(subparsers: Any) -> None:
    console = subparsers.add_parser("console", help="the administrator's console: sign-in "
                                                    "links, a demo key, the account index")
    actions = console.add_subparsers(dest="action", required=True)
    links = actions.add_parser("links", help="print sign-in links for a demo owner and reader")
    links.add_argument("--account", action="append", default=[], metavar="BA",
                       help="billing account (repeatable; default: the demo's)")
    links.add_argument("--owner", default="owner@demo.example", help="the owner's `sub`")
    links.add_argument("--reader", default="reader@demo.example", help="the reader's `sub`")
    links.add_argument("--url", help="console base URL (default: http://RATER_WEB_HOST:"
                                     "RATER_WEB_PORT)")
    links.add_argument("--expires-in", type=int, default=DEFAULT_LINK_LIFETIME_S,
                       metavar="SECONDS", help="token lifetime, and so the session's")
    links.set_defaults(func=cmd_links)
    key = actions.add_parser("demo-key", help="write a random HS256 secret to FILE once")
    key.add_argument("file", metavar="FILE")
    key.set_defaults(func=cmd_demo_key)
    reindex = actions.add_parser("reindex", help="index every stored subscription by its "
                                                 "billing account")
    reindex.set_defaults(func=cmd_reindex)
