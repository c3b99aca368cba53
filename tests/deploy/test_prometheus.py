"""The Prometheus config and alert rules: promtool accepts them, the unit tests
pass, and those unit tests would catch a broken alert."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy._support import (
    ALERTS,
    DOCS,
    PROMETHEUS,
    RULES,
    RULES_TEST,
    load_yaml,
    run,
)
from tests.deploy.promconfig import prometheus_config, write_prometheus_config

CONFIGS = [PROMETHEUS / "prometheus.yml", PROMETHEUS / "prometheus-compose.yml"]


def _alert_rules(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


# ------------------------------------------------------------------ promtool ---


def test_promtool_check_rules(promtool: str) -> None:
    result = run([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_test_rules(promtool: str) -> None:
    result = run([promtool, "test", "rules", RULES_TEST.name], cwd=RULES_TEST.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_promtool_check_config(promtool: str, config: Path) -> None:
    result = run([promtool, "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    # the rule file is found and checked along with the config
    assert "rater.rules.yml" in result.stdout
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_rejects_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    """Guards the guard: a syntax error must make `check rules` fail."""
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text().replace('up{job="rater"} == 0', 'up{job="rater" == 0'))
    assert run([promtool, "check", "rules", str(broken)]).returncode != 0


# ------------------------------------------- the unit tests catch regressions ---


def _run_mutated(promtool: str, tmp_path: Path, alert: str, change: dict[str, Any]) -> int:
    doc = load_yaml(RULES)
    rule = _alert_rules(doc)[alert]
    rule.update(change)
    (tmp_path / RULES.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    return run([promtool, "test", "rules", RULES_TEST.name], cwd=tmp_path).returncode


@pytest.mark.parametrize("alert", ALERTS)
def test_unit_tests_cover_firing(promtool: str, tmp_path: Path, alert: str) -> None:
    """An alert that can never fire must fail the promtool unit tests."""
    assert _run_mutated(promtool, tmp_path, alert, {"expr": "vector(0) > 1"}) != 0


@pytest.mark.parametrize("alert", ALERTS)
def test_unit_tests_cover_not_firing(promtool: str, tmp_path: Path, alert: str) -> None:
    """An alert that fires without waiting its `for` must fail the unit tests."""
    assert _run_mutated(promtool, tmp_path, alert, {"for": "0s"}) != 0


def test_mutation_harness_passes_unchanged_rules(promtool: str, tmp_path: Path) -> None:
    """The copy-and-run harness itself passes when nothing is changed."""
    assert _run_mutated(promtool, tmp_path, ALERTS[0], {}) == 0


# ------------------------------------------------------------ rule contents ---


def test_every_required_alert_is_defined_once() -> None:
    doc = load_yaml(RULES)
    names = [r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r]
    assert sorted(names) == sorted(ALERTS)


def test_every_alert_is_exercised_by_the_unit_tests() -> None:
    tests = load_yaml(RULES_TEST)
    assert tests["rule_files"] == [RULES.name]
    tested = {
        case["alertname"] for test in tests["tests"] for case in test.get("alert_rule_test", [])
    }
    assert tested == set(ALERTS)
    for alert in ALERTS:
        cases = [
            case
            for test in tests["tests"]
            for case in test.get("alert_rule_test", [])
            if case["alertname"] == alert
        ]
        assert any(case["exp_alerts"] for case in cases), f"{alert}: no firing case"
        assert any(not case["exp_alerts"] for case in cases), f"{alert}: no quiet case"


def _anchors(markdown: str) -> set[str]:
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if match:
            title = match.group(1).strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            anchors.add(title.replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("alert", ALERTS)
def test_alert_labels_annotations_and_runbook(alert: str) -> None:
    rule = _alert_rules(load_yaml(RULES))[alert]
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert re.fullmatch(r"\d+[smh]", rule["for"]), rule.get("for")
    annotations = rule["annotations"]
    for key in ("summary", "description", "runbook"):
        assert annotations.get(key, "").strip(), f"{alert}: missing {key}"
    runbook = annotations["runbook"]
    match = re.match(r"docs/operations-metrics\.md#([a-z0-9-]+): \S", runbook)
    assert match, f"{alert}: runbook must name a docs section and give a hint: {runbook!r}"
    assert match.group(1) == alert.lower()
    assert match.group(1) in _anchors(DOCS.read_text(encoding="utf-8"))


def test_rule_thresholds_match_the_contract() -> None:
    rules = _alert_rules(load_yaml(RULES))
    expected_for = {
        "RaterDown": "1m",
        "RaterNotReady": "2m",
        "RaterConsumerLagGrowing": "10m",
        "RaterDeadLettersRising": "5m",
        "RaterRedisErrors": "5m",
        "RaterRevenueLeakage": "15m",
        "RaterSlowRating": "10m",
        "RaterAuthorizeSlow": "10m",
        "RaterSessionsExpiring": "2m",
    }
    assert {name: rule["for"] for name, rule in rules.items()} == expected_for
    assert 'kind="unbilled"' in rules["RaterRevenueLeakage"]["expr"]
    assert "histogram_quantile(0.99" in rules["RaterSlowRating"]["expr"]
    assert rules["RaterSlowRating"]["expr"].rstrip().endswith("> 1")
    assert rules["RaterAuthorizeSlow"]["expr"].rstrip().endswith("> 0.005")
    assert "deriv(" in rules["RaterConsumerLagGrowing"]["expr"]
    assert "by (reason)" in rules["RaterDeadLettersRising"]["expr"]
    assert 'rule="validity"' in rules["RaterSessionsExpiring"]["expr"]


# ------------------------------------------------------------ scrape config ---


def test_shipped_scrape_config_targets_the_loopback_worker() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    (job,) = [sc for sc in config["scrape_configs"] if sc["job_name"] == "rater"]
    assert job["scrape_interval"] == "5s"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"] == [{"targets": ["127.0.0.1:6066"]}]
    assert config["rule_files"] == ["rules/rater.rules.yml"]
    assert "kubernetes_sd_configs" in (PROMETHEUS / "prometheus.yml").read_text()


def test_compose_scrape_config_lists_both_workers() -> None:
    config = load_yaml(PROMETHEUS / "prometheus-compose.yml")
    (job,) = [sc for sc in config["scrape_configs"] if sc["job_name"] == "rater"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["rater-1:6066", "rater-2:6067"]


def test_rendered_local_config_is_valid(promtool: str, tmp_path: Path) -> None:
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    path = write_prometheus_config(
        elsewhere / "prometheus.yml", ["127.0.0.1:16066", "127.0.0.1:16067"]
    )
    config = load_yaml(path)
    (job,) = config["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["127.0.0.1:16066", "127.0.0.1:16067"]}]
    assert job["scrape_interval"] == "5s"
    assert all(Path(rule).is_absolute() and Path(rule).is_file() for rule in config["rule_files"])
    result = run([promtool, "check", "config", str(path)], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rendered_config_needs_a_target() -> None:
    with pytest.raises(ValueError):
        prometheus_config([])
    assert "rule_files" not in prometheus_config(["127.0.0.1:1"], with_rules=False)
