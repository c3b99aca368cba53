"""The console's Jinja2 environment: autoescape on for every template, undefined names an
error, and the filters that format (never compute) what the pages show."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

HERE = Path(__file__).resolve().parent


def minutes(seconds: Any) -> str:
    """1830 -> '30 min 30 s'; pools and usage are kept in seconds."""
    whole, rest = divmod(int(seconds), 60)
    return f"{whole:,} min {rest} s" if rest else f"{whole:,} min"


def clock(seconds: Any) -> str:
    """A call's length: 75 -> '1:15', 3725 -> '1:02:05'."""
    hours, rest = divmod(int(seconds), 3600)
    mins, secs = divmod(rest, 60)
    return f"{hours}:{mins:02d}:{secs:02d}" if hours else f"{mins}:{secs:02d}"


def when(timestamp: Any) -> str:
    """An RFC 3339 UTC timestamp as '2026-11-20 10:00:05 UTC'."""
    text = str(timestamp)
    if text.endswith("Z"):
        return f"{text[:-1].replace('T', ' ')} UTC"
    return text.replace("T", " ")


def path_segment(value: Any) -> str:
    return quote(str(value), safe="")


def on_off(value: Any) -> str:
    if value is None:
        return "\N{EN DASH}"
    return "On" if value else "Off"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template: user ids, destinations, call ids come from outside
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(minutes=minutes, clock=clock, when=when, path=path_segment,
                       on_off=on_off)
    return env
