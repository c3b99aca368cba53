"""SPEC §10's settings and §3's topic names, pinned (an operator's tooling relies on
them), and the settings of credit-control sessions: defaults, derived defaults, refusals."""

from __future__ import annotations

import pytest

from rater.config import ConfigError, Settings, Topics
from rater.rating.sessions import SessionPolicy

# SPEC §3, in its order, then §13's
SPEC_TOPICS = ["calls.cdr", "calls.attempts", "calls.decisions", "calls.rated",
               "billing.overage-charges", "subscriptions.events", "subscriptions.alerts",
               "calls.dlq", "billing.adjustments"]


def test_spec_defaults_with_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.redis_cluster is False
    assert settings.app_id == "rater"
    assert settings.topic_prefix == ""
    assert settings.web_port == 6066
    assert settings.late_grace_s == 259_200
    assert settings.jwt_algorithm == "RS256"
    assert settings.jwt_key is None and not settings.auth_configured
    assert settings.jwt_issuer is None and settings.jwt_audience is None


def test_topic_names_are_the_specs_and_every_one_takes_the_prefix() -> None:
    assert Settings.from_env({}).topics.all() == SPEC_TOPICS
    prefixed = Settings.from_env({"RATER_TOPIC_PREFIX": "acme."}).topics
    assert prefixed.all() == [f"acme.{name}" for name in SPEC_TOPICS]
    assert prefixed == Topics.with_prefix("acme.")


def test_consumer_groups_derive_from_the_app_id() -> None:
    settings = Settings.from_env({"RATER_APP_ID": "billing-eu"})
    assert settings.app_id == "billing-eu"
    assert settings.cdr_group == "billing-eu-cdr"
    assert settings.history_group == "billing-eu-history"


@pytest.mark.parametrize(("env", "message"), [
    ({"RATER_REDIS_CLUSTER": "1"}, None),
    ({"RATER_REDIS_CLUSTER": "maybe"}, "RATER_REDIS_CLUSTER: expected 1/0/true/false"),
    ({"RATER_JWT_ALGORITHM": "HS512"}, "RATER_JWT_ALGORITHM: expected one of RS256, HS256"),
    ({"RATER_JWT_KEY": "x" * 40, "RATER_JWT_ALGORITHM": "HS256"},
     "RATER_JWT_ISSUER and RATER_JWT_AUDIENCE are required"),
    ({"RATER_JWT_KEY": "short", "RATER_JWT_ALGORITHM": "HS256", "RATER_JWT_ISSUER": "i",
      "RATER_JWT_AUDIENCE": "a"}, "RATER_JWT_KEY: an HS256 secret must be at least 32 bytes"),
    ({"RATER_JWT_KEY": "not a pem", "RATER_JWT_ISSUER": "i", "RATER_JWT_AUDIENCE": "a"},
     "RATER_JWT_KEY: RS256 needs a PEM public key"),
    ({"RATER_LATE_GRACE_S": "-1"}, "RATER_LATE_GRACE_S: must be between"),
    ({"RATER_APP_ID": "a:b"}, "RATER_APP_ID: must be non-empty without braces"),
])
def test_each_setting_is_checked_once_with_a_one_line_message(
    env: dict[str, str], message: str | None
) -> None:
    if message is None:
        assert Settings.from_env(env).redis_cluster is True
        return
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_session_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.session_quota_s, settings.session_sweep_s) == (300, 5.0)
    assert settings.session_policy == SessionPolicy(validity_s=600, grace_s=30, cdr_wait_s=3600)


def test_validity_defaults_to_twice_the_quota() -> None:
    assert Settings.from_env({"RATER_SESSION_QUOTA_S": "120"}).session_validity_s == 240
    settings = Settings.from_env({"RATER_SESSION_QUOTA_S": "120",
                                  "RATER_SESSION_VALIDITY_S": "30"})
    assert settings.session_policy.validity_s == 30


@pytest.mark.parametrize(("name", "value"), [
    ("RATER_SESSION_QUOTA_S", "0"), ("RATER_SESSION_QUOTA_S", "86401"),
    ("RATER_SESSION_VALIDITY_S", "0"), ("RATER_SESSION_GRACE_S", "-1"),
    ("RATER_SESSION_CDR_WAIT_S", "ten"), ("RATER_SESSION_SWEEP_S", "0"),
    ("RATER_SESSION_SWEEP_S", "3601"),
])
def test_bad_session_settings_are_one_line_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({name: value})
    message = str(refused.value)
    assert message.startswith(f"{name}:") and "\n" not in message
