"""Every setting of the rater, read once from the environment (SPEC §10).

`Settings.from_env()` validates everything up front and raises `ConfigError`
with a one-line message naming the variable, so a worker refuses to start
instead of failing on the first record.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rater.jwt_key import load_verification_key
from rater.rating.sessions import SessionPolicy


class ConfigError(ValueError):
    """A setting is missing or malformed; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class Topics:
    """Kafka topic names of SPEC §3, each already carrying the configured prefix."""

    cdr: str
    attempts: str
    decisions: str
    rated: str
    charges: str
    subscription_events: str
    alerts: str
    dlq: str
    adjustments: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(
            cdr=f"{prefix}calls.cdr",
            attempts=f"{prefix}calls.attempts",
            decisions=f"{prefix}calls.decisions",
            rated=f"{prefix}calls.rated",
            charges=f"{prefix}billing.overage-charges",
            subscription_events=f"{prefix}subscriptions.events",
            alerts=f"{prefix}subscriptions.alerts",
            dlq=f"{prefix}calls.dlq",
            adjustments=f"{prefix}billing.adjustments",
        )

    def all(self) -> list[str]:
        return [
            self.cdr,
            self.attempts,
            self.decisions,
            self.rated,
            self.charges,
            self.subscription_events,
            self.alerts,
            self.dlq,
            self.adjustments,
        ]


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster: bool = False
    app_id: str = "rater"
    topic_prefix: str = ""
    topic_partitions: int = 6
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    late_grace_s: int = 259_200
    future_tolerance_s: int = 300
    jwt_algorithm: str = "RS256"
    jwt_key: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    batch_max: int = 1000
    # CDRs per batch while the direct consumer keeps up (no backlog of batch_max or more):
    # short Lua scripts, so Redis answers the API's reads between them (docs/performance.md)
    batch_steady_max: int = 200
    batch_within_s: float = 0.05
    # "direct" (agents/fast_path), "faust" (the rate-cdrs agent), or "off": a worker that
    # serves the API, decisions and subscription events but rates no CDRs
    cdr_consumer: str = "direct"
    max_record_bytes: int = 65_536
    log_format: str = "text"
    log_level: str = "INFO"
    startup_retry_s: float = 30.0
    data_dir: Path = field(default_factory=lambda: Path("rater-data"))
    # the call history (rater.history, docs/history.md)
    history_dsn: str = "postgresql://rater@127.0.0.1:5432/rater"
    history_schema: str = "public"
    # "off": the worker needs no PostgreSQL (run `rater history-sink` beside it, or
    # nothing); "on": the worker runs the history sink too
    history_sink: str = "off"
    history_retention_months: int = 25
    history_batch_max: int = 5000
    # credit-control sessions (SPEC §11)
    session_quota_s: int = 300
    session_validity_s: int = 600
    session_grace_s: int = 30
    session_cdr_wait_s: int = 3600
    session_sweep_s: float = 5.0

    @property
    def topics(self) -> Topics:
        return Topics.with_prefix(self.topic_prefix)

    @property
    def cdr_group(self) -> str:
        """The consumer group of the direct CDR consumer; the Faust app's own is `app_id`."""
        return f"{self.app_id}-cdr"

    @property
    def history_group(self) -> str:
        """The consumer group of the history sink (rater.history.sink)."""
        return f"{self.app_id}-history"

    @property
    def key_prefix(self) -> str:
        """Every Redis key starts with this, so two deployments can share one Redis."""
        return self.app_id

    @property
    def session_policy(self) -> SessionPolicy:
        return SessionPolicy(self.session_validity_s, self.session_grace_s,
                             self.session_cdr_wait_s)

    @property
    def auth_configured(self) -> bool:
        return self.jwt_key is not None

    @property
    def kafka_broker_url(self) -> str:
        """The bootstrap list in Faust's `kafka://host:port;host:port` form."""
        return ";".join(f"kafka://{hp.strip()}" for hp in self.kafka_bootstrap.split(","))

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        reader = _Reader(env)
        quota = reader.integer("RATER_SESSION_QUOTA_S", 300, 1, 86_400)
        settings = cls(
            kafka_bootstrap=reader.text("RATER_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            redis_url=reader.text("RATER_REDIS_URL", "redis://127.0.0.1:6379/0"),
            redis_cluster=reader.flag("RATER_REDIS_CLUSTER", False),
            app_id=reader.text("RATER_APP_ID", "rater"),
            topic_prefix=env.get("RATER_TOPIC_PREFIX", ""),
            topic_partitions=reader.integer("RATER_TOPIC_PARTITIONS", 6, 1, 1024),
            web_host=reader.text("RATER_WEB_HOST", "127.0.0.1"),
            web_port=reader.integer("RATER_WEB_PORT", 6066, 1, 65535),
            late_grace_s=reader.integer("RATER_LATE_GRACE_S", 259_200, 0, 366 * 86_400),
            future_tolerance_s=reader.integer("RATER_FUTURE_TOLERANCE_S", 300, 0, 86_400),
            jwt_algorithm=reader.choice("RATER_JWT_ALGORITHM", "RS256", ("RS256", "HS256")),
            jwt_key=_jwt_key(env),
            jwt_issuer=env.get("RATER_JWT_ISSUER") or None,
            jwt_audience=env.get("RATER_JWT_AUDIENCE") or None,
            batch_max=reader.integer("RATER_BATCH_MAX", 1000, 1, 100_000),
            batch_steady_max=reader.integer("RATER_BATCH_STEADY_MAX", 200, 1, 100_000),
            batch_within_s=reader.decimal_seconds("RATER_BATCH_WITHIN_S", 0.05),
            cdr_consumer=reader.choice("RATER_CDR_CONSUMER", "direct", ("direct", "faust", "off")),
            max_record_bytes=reader.integer("RATER_MAX_RECORD_BYTES", 65_536, 1024, 16_777_216),
            log_format=reader.choice("RATER_LOG_FORMAT", "text", ("text", "json")),
            log_level=reader.choice(
                "RATER_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")
            ),
            startup_retry_s=reader.decimal_seconds("RATER_STARTUP_RETRY_S", 30.0),
            data_dir=Path(env.get("RATER_DATA_DIR", "rater-data")),
            history_dsn=reader.text("RATER_HISTORY_DSN", "postgresql://rater@127.0.0.1:5432/rater"),
            history_schema=reader.text("RATER_HISTORY_SCHEMA", "public"),
            history_sink=reader.choice("RATER_HISTORY_SINK", "off", ("off", "on")),
            history_retention_months=reader.integer(
                "RATER_HISTORY_RETENTION_MONTHS", 25, 2, 1200),
            history_batch_max=reader.integer("RATER_HISTORY_BATCH_MAX", 5000, 1, 100_000),
            session_quota_s=quota,
            session_validity_s=reader.integer("RATER_SESSION_VALIDITY_S", 2 * quota, 1, 172_800),
            session_grace_s=reader.integer("RATER_SESSION_GRACE_S", 30, 0, 3600),
            session_cdr_wait_s=reader.integer("RATER_SESSION_CDR_WAIT_S", 3600, 1, 7 * 86_400),
            session_sweep_s=reader.decimal_seconds("RATER_SESSION_SWEEP_S", 5.0),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        for hostport in self.kafka_bootstrap.split(","):
            host, sep, port = hostport.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ConfigError(
                    f"RATER_KAFKA_BOOTSTRAP: expected host:port[,host:port], got {hostport!r}"
                )
        parsed = urlparse(self.redis_url)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"RATER_REDIS_URL: expected redis://host:port/db, got {self.redis_url!r}"
            )
        if not self.app_id or any(c in self.app_id for c in "{}: "):
            raise ConfigError(
                f"RATER_APP_ID: must be non-empty without braces, colons or spaces: {self.app_id!r}"
            )
        if self.jwt_key is not None and (not self.jwt_issuer or not self.jwt_audience):
            raise ConfigError(
                "RATER_JWT_ISSUER and RATER_JWT_AUDIENCE are required when RATER_JWT_KEY is set"
            )
        if self.session_sweep_s <= 0:
            raise ConfigError(
                f"RATER_SESSION_SWEEP_S: must be above 0 seconds, got {self.session_sweep_s}")
        if self.jwt_key is not None:
            try:
                load_verification_key(self.jwt_algorithm, self.jwt_key)
            except ValueError as exc:
                raise ConfigError(f"RATER_JWT_KEY: {exc}") from None
        if urlparse(self.history_dsn).scheme not in ("postgresql", "postgres"):
            raise ConfigError(
                f"RATER_HISTORY_DSN: expected postgresql://user@host:port/database, "
                f"got {_without_password(self.history_dsn)!r}")
        if not _SQL_NAME.fullmatch(self.history_schema):
            raise ConfigError(
                "RATER_HISTORY_SCHEMA: expected a lower-case SQL name (a-z, 0-9, _), "
                f"got {self.history_schema!r}")


# a schema name used unquoted in SQL: nothing that needs quoting
_SQL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _without_password(dsn: str) -> str:
    """The DSN as it may be printed: a password, if any, replaced by ***."""
    parsed = urlparse(dsn)
    if parsed.password is None:
        return dsn
    return dsn.replace(f":{parsed.password}@", ":***@", 1)


def faust_options(settings: Settings) -> dict[str, Any]:
    """The Faust app's settings (rater.app; the benchmark's bare Faust agent takes them too)."""
    return {
        "broker": settings.kafka_broker_url,
        "store": "memory://",
        # not Faust's default `<app id>-data` in the current directory
        "datadir": str(settings.data_dir / f"{settings.app_id}-data"),
        "web_port": settings.web_port,
        "web_bind": settings.web_host,
        "web_host": settings.web_host,
        "topic_partitions": settings.topic_partitions,
        "topic_disable_leader": True,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "producer_acks": -1,
        "consumer_auto_offset_reset": "earliest",
        "broker_max_poll_records": settings.batch_max * 4,
        "stream_buffer_maxsize": settings.batch_max * 8,
        "stream_wait_empty": False,
    }


def _jwt_key(env: Mapping[str, str]) -> str | None:
    """The key itself, or `@/path/to/file` to read it from a file (PEM keys are multi-line)."""
    raw = env.get("RATER_JWT_KEY") or None
    if raw is None or not raw.startswith("@"):
        return raw
    try:
        return Path(raw[1:]).read_text()
    except OSError as exc:
        raise ConfigError(f"RATER_JWT_KEY: cannot read {raw[1:]!r}: {exc.strerror}") from None


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str) -> str:
        value = self.env.get(name, default).strip()
        if not value:
            raise ConfigError(f"{name}: must not be empty")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.env.get(name)
        if raw is None or raw == "":
            return default
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected 1/0/true/false, got {raw!r}")

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.env.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}: must be between {low} and {high}, got {value}")
        return value

    def decimal_seconds(self, name: str, default: float) -> float:
        raw = self.env.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a number of seconds, got {raw!r}") from None
        if not 0 <= value <= 3600:
            raise ConfigError(f"{name}: must be between 0 and 3600 seconds, got {raw}")
        return value

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.env.get(name) or default
        if value not in allowed:
            raise ConfigError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
        return value
