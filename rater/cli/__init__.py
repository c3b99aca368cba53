"""`rater ...`: the worker and the operator commands (SPEC §10), one module per family.

Every command returns its exit code, or raises `CliError`, which `main` prints as one
line (`rater: ...`) and turns into the error's exit code (2 unless it says otherwise).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rater.cli import console, demo, history, inputs, ops, rebuild, rerate, topics, worker
from rater.cli.errors import CliError
from rater.config import ConfigError, Settings

COMMAND_FAMILIES = (worker, topics, inputs, demo, ops, rebuild, history, rerate, console)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rater", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for family in COMMAND_FAMILIES:
        family.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the commands say what happened themselves: the client libraries' warnings (aiokafka
    # logs each metadata retry) would otherwise reach stderr through Python's last-resort
    # handler; `rater worker` and `rater history-sink` configure logging of their own
    logging.getLogger().addHandler(logging.NullHandler())
    try:
        settings = Settings.from_env()
        result: int = args.func(settings, args)
    except (CliError, ConfigError) as exc:
        if str(exc):
            print(f"rater: {exc}", file=sys.stderr)
        return exc.code if isinstance(exc, CliError) else 2
    return result
