"""Logging: plain text, or one JSON object per line with `RATER_LOG_FORMAT=json`.

Fields an on-call engineer greps for (subscription_id, call_id, reason) are
passed as `extra=` and come out as top-level keys. Nothing here ever logs a
token or a secret: the auth layer puts neither in a log record.

In JSON mode the Faust worker must not install its own (coloured, plain text)
handlers: `rater worker` hands `logging_config(settings)` to the worker, which
applies it in place of its default, so every line the worker prints — its own
service messages, aiokafka's, Python warnings, stray prints redirected by the
worker — is one JSON object.
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from typing import Any

import orjson

from rater.config import Settings
from rater.rating.clock import format_ms_fixed

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName",
}
TEXT_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": format_ms_fixed(int(record.created * 1000)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_") and name not in entry:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except (TypeError, ValueError):  # e.g. an int beyond 64 bits: the slow, lenient path
            return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` document: one stderr handler, our format."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if settings.log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,  # loggers made at import time keep working
        "formatters": {"rater": formatter},
        "handlers": {
            "rater": {
                "class": "logging.StreamHandler",
                "stream": sys.__stderr__ or sys.stderr,
                "formatter": "rater",
            },
        },
        "root": {"level": settings.log_level, "handlers": ["rater"]},
    }


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings))
    # warnings.warn() would write plain text to stderr: route it through logging
    logging.captureWarnings(True)
