"""The JSON Schemas of `schemas/`, compiled once, and JSON parsing with a size limit.

Every check raises `InvalidRecord` with a human-readable detail; callers turn it
into a dead letter with reason `invalid` (SPEC §5.10) or a 422 answer.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
if not SCHEMA_DIR.is_dir():  # installed as a wheel: schemas ship as package data
    SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"


class InvalidRecord(ValueError):
    """The input is not a valid record; `str(exc)` is the dead letter's detail."""


@cache
def load_schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((SCHEMA_DIR / f"{name}.schema.json").read_bytes())
    return loaded


@cache
def validator(name: str) -> Callable[[Any], Any]:
    schema = load_schema(name)
    handlers = {"": lambda uri: load_schema(uri.removesuffix(".schema.json"))}
    compiled: Callable[[Any], Any] = fastjsonschema.compile(
        schema, handlers=handlers, use_default=True, use_formats=False
    )
    return compiled


def parse_json(raw: bytes, max_bytes: int) -> Any:
    if len(raw) > max_bytes:
        raise InvalidRecord(f"record of {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"not JSON: {exc}") from None


def validate(name: str, document: Any) -> dict[str, Any]:
    try:
        checked: dict[str, Any] = validator(name)(document)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InvalidRecord(f"{exc.message}") from None
    except (RecursionError, TypeError, ValueError) as exc:
        raise InvalidRecord(f"not a {name} record: {type(exc).__name__}") from None
    return checked
