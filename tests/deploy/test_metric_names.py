"""Every metric name the alert rules and the dashboard query is one the rater
exports (rater/metrics.py), with the right suffix for its type."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from rater import metrics
from tests.deploy._support import DASHBOARD, DOCS, RULES, load_yaml

# a metric identifier: not preceded by a name character (so `job="rater"` or
# `my_rater_x` never match), made of the characters of a metric name.
METRIC_RE = re.compile(r"(?<![A-Za-z0-9_:])rater_[a-z0-9_:]+")

SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def exported_families() -> dict[str, str]:
    """Family name -> type, from the registry itself."""
    return {family.name: family.type for family in metrics.REGISTRY.collect()}


def exported_names() -> set[str]:
    """Every series name a scrape can contain (labelled metrics included even
    before their first sample)."""
    names = set()
    for family, kind in exported_families().items():
        for suffix in SUFFIXES[kind]:
            names.add(family + suffix)
    return names


# PromQL string literals (label values, regexes) are not metric names
STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')


def metric_names(expr: str) -> set[str]:
    return set(METRIC_RE.findall(STRING_RE.sub('""', expr)))


def rule_expressions() -> Iterator[tuple[str, str]]:
    for group in load_yaml(RULES)["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def _walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels", []))


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in _walk_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"{panel['title']}/{target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        if variable.get("type") == "query":
            yield f"${variable['name']}", str(query)
            yield f"${variable['name']} definition", variable.get("definition", "")


def test_registry_exports_the_spec_metrics() -> None:
    names = exported_names()
    assert len(names) >= 15
    for name in (
        "rater_cdrs_total",
        "rater_billable_seconds_total",
        "rater_overage_amount_total",
        "rater_decisions_total",
        "rater_dead_letters_total",
        "rater_rating_batch_duration_seconds_bucket",
        "rater_authorize_duration_seconds_bucket",
        "rater_redis_errors_total",
        "rater_consumer_lag_messages",
        "rater_ready",
    ):
        assert name in names


def test_metric_regex_finds_names_and_nothing_else() -> None:
    expr = (
        'sum by (le) (rate(rater_a_bucket{job="rater", x="rater_not"}[5m])) '
        "/ ignoring(x) my_rater_b + rater_c:d + label_replace(v, 'y', 'rater_z', '', '')"
    )
    assert metric_names(expr) == {"rater_a_bucket", "rater_c:d"}


def _unknown(exprs: list[tuple[str, str]]) -> list[str]:
    known = exported_names()
    return [
        f"{where}: {name}"
        for where, expr in exprs
        for name in sorted(metric_names(expr))
        if name not in known
    ]


def test_alert_rules_use_only_exported_metrics() -> None:
    exprs = list(rule_expressions())
    assert len(exprs) >= 8
    used = set().union(*(metric_names(e) for _, e in exprs))
    assert len(used) >= 7
    assert _unknown(exprs) == []


def test_dashboard_uses_only_exported_metrics() -> None:
    exprs = list(dashboard_expressions())
    assert len(exprs) >= 10
    assert _unknown(exprs) == []


def test_checker_rejects_an_unknown_or_mis_suffixed_metric() -> None:
    bad = [
        ("typo", "rate(rater_cdr_total[5m])"),
        ("counter without _total", "rate(rater_cdrs[5m])"),
        ("gauge with _total", "rater_ready_total"),
        ("histogram without _bucket", "histogram_quantile(0.99, rater_authorize_duration_seconds)"),
    ]
    assert len(_unknown(bad)) == len(bad)


def test_dashboard_shows_every_exported_family() -> None:
    used = set().union(*(metric_names(e) for _, e in dashboard_expressions()))
    missing = [
        family
        for family, kind in exported_families().items()
        if not any(family + suffix in used for suffix in SUFFIXES[kind])
    ]
    assert missing == [], f"metrics without a dashboard panel: {missing}"


@pytest.mark.parametrize("family", sorted(exported_families()))
def test_every_exported_metric_is_documented(family: str) -> None:
    kind = exported_families()[family]
    exposed = family + "_total" if kind == "counter" else family
    assert f"`{exposed}`" in DOCS.read_text(encoding="utf-8"), (
        f"{exposed} is not described in docs/operations-metrics.md"
    )
