"""`rater topics create`: the topics of SPEC §3 (and the rater's own), if missing."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from rater.config import Settings


def add_commands(commands: Any) -> None:
    topics = commands.add_parser("topics", help="topic administration")
    actions = topics.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create the topics of SPEC §3 if missing")
    create.add_argument("--replication", type=int, default=1)
    create.set_defaults(func=create_topics)


def create_topics(settings: Settings, args: argparse.Namespace) -> int:
    from rater.kafka import ensure_topics

    created = asyncio.run(ensure_topics(settings, replication=args.replication))
    print(f"topics: created {len(created)}, {len(settings.topics.all()) - len(created)} existed")
    for name in created:
        print(f"  + {name}")
    return 0
