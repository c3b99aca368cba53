"""Settings of credit-control sessions (rater.config): defaults, derived defaults, refusals."""

from __future__ import annotations

import pytest

from rater.config import ConfigError, Settings
from rater.rating.sessions import SessionPolicy


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
