"""The operator commands over the API (rater.cli.ops): tokens and the usage table."""

from __future__ import annotations

import os

import pytest

from rater.cli import build_parser, main
from rater.cli.ops import cmd_token, format_usage
from rater.config import Settings
from rater.web.auth import TokenVerifier
from rater.web.documents import usage_document
from tests.builders import make_snapshot

SECRET = "unit-test-secret-unit-test-secret-0123456789"
ISSUER, AUDIENCE = "https://idp.unit.test/", "rater-api"
SETTINGS = Settings(jwt_algorithm="HS256", jwt_key=SECRET, jwt_issuer=ISSUER,
                    jwt_audience=AUDIENCE)

def test_rater_token_with_a_secret_is_accepted_by_the_verifier(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args([
        "token", "--sub", "ops", "--role", "ba-1=owner", "--role", "ba-2=reader",
        "--scope", "call_authorizer", "--secret", SECRET, "--issuer", ISSUER,
        "--audience", AUDIENCE])
    assert cmd_token(Settings(), args) == 0
    principal = TokenVerifier.from_settings(SETTINGS).authenticate(
        "Bearer " + capsys.readouterr().out.strip())
    assert principal.subject == "ops"
    assert dict(principal.roles) == {"ba-1": "owner", "ba-2": "reader"}
    assert principal.has_scope("call_authorizer")


@pytest.mark.parametrize("argv", [
    ["token", "--sub", "ops", "--role", "ba-1"],                       # no BA=ROLE
    ["token", "--sub", "ops", "--role", "ba-1=admin", "--secret", SECRET],  # unknown role
    ["token", "--sub", "ops", "--secret"],                             # no RATER_JWT_KEY
    ["token", "--sub", "ops"],                                         # no key at all
])
def test_rater_token_refuses_bad_input(argv: list[str], capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("RATER_")]:
        monkeypatch.delenv(name)
    assert main([*argv, "--issuer", ISSUER, "--audience", AUDIENCE]) == 2
    assert capsys.readouterr().err.startswith("rater: ")


def test_usage_table_is_readable() -> None:
    text = format_usage(usage_document(make_snapshot(used=120, overage_s=60, overage_micro=25_000,
                                                payg=True)))
    lines = text.splitlines()
    assert lines[0] == "subscription sub-1  billing account ba-1"
    assert "PAYG on" in lines[1] and "2026-12-01T00:00:00Z" in lines[1]
    domestic = next(line for line in lines if line.startswith("domestic"))
    assert domestic.split()[-2:] == ["0.025000", "payg"]
    assert "120s (2:00)" in domestic
    held = format_usage(usage_document(make_snapshot(used=30, reserved=60))).splitlines()
    assert held[3].split()[3:7] == ["remaining", "reserved", "available", "overage"]
    assert next(line for line in held if line.startswith("domestic")).split()[6:8] == [
        "60s", "30s"]
