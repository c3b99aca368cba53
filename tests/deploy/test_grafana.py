"""The Grafana dashboard and its provisioning."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy._support import COMPOSE, DASHBOARD, GRAFANA, load_yaml

DS_REF = "${DS_PROMETHEUS}"

REQUIRED_PANELS = {
    # title -> metric every one of its queries must mention at least once
    "CDRs/s by outcome": "rater_cdrs_total",
    "Billable seconds/s by zone and kind": "rater_billable_seconds_total",
    "Overage amount per hour by currency": "rater_overage_amount_total",
    "Decisions/s by decision and reason": "rater_decisions_total",
    "Dead letters/s by reason": "rater_dead_letters_total",
    "Rating batch latency p50 / p99": "rater_rating_batch_duration_seconds_bucket",
    "Authorize latency p50 / p99": "rater_authorize_duration_seconds_bucket",
    "Consumer lag by partition": "rater_consumer_lag_messages",
    "Redis errors/s by operation": "rater_redis_errors_total",
    "Ready workers": "rater_ready",
    "Readiness by worker": "rater_ready",
    "Sessions holding a reservation": "rater_sessions",
    "Reserved seconds by zone": "rater_session_reserved_seconds",
    "Session requests/s by request and result": "rater_session_requests_total",
    "Session expirations and closes /s": "rater_session_expirations_total",
    "Session request latency p50 / p99": "rater_session_request_duration_seconds_bucket",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_header(dashboard: dict[str, Any]) -> None:
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] == "rater-overview"
    assert dashboard["title"]
    assert "__inputs" not in dashboard  # would break file provisioning


def test_datasource_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["DS_PROMETHEUS"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    assert variables["instance"]["datasource"]["uid"] == DS_REF


def test_required_panels_present(dashboard: dict[str, Any]) -> None:
    panels = {p["title"]: p for p in _panels(dashboard)}
    for title, metric in REQUIRED_PANELS.items():
        assert title in panels, f"missing panel {title!r}"
        exprs = [t["expr"] for t in panels[title]["targets"]]
        assert exprs and metric in exprs[0], (title, exprs)


def test_latency_panels_show_p50_and_p99(dashboard: dict[str, Any]) -> None:
    panels = {p["title"]: p for p in _panels(dashboard)}
    for title in ("Rating batch latency p50 / p99", "Authorize latency p50 / p99",
                  "Session request latency p50 / p99"):
        exprs = [t["expr"] for t in panels[title]["targets"]]
        assert any(e.startswith("histogram_quantile(0.5,") for e in exprs)
        assert any(e.startswith("histogram_quantile(0.99,") for e in exprs)
        assert panels[title]["fieldConfig"]["defaults"]["unit"] == "s"


def test_every_query_panel_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    query_panels = [p for p in _panels(dashboard) if p["type"] != "row"]
    assert len(query_panels) >= len(REQUIRED_PANELS)
    for panel in query_panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": DS_REF}, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DS_REF
            assert target["expr"].strip()
            assert 'job="rater"' in target["expr"], (panel["title"], target["expr"])


def test_panel_ids_unique_and_layout_does_not_overlap(dashboard: dict[str, Any]) -> None:
    panels = list(_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids)
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_datasource_provisioning() -> None:
    doc = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["uid"] == "prometheus" and ds["type"] == "prometheus"
    assert ds["isDefault"] is True
    compose = load_yaml(COMPOSE)
    assert "prometheus" in compose["services"]
    assert ds["url"] == "http://prometheus:9090"


def test_dashboard_provisioning_path_matches_compose_mount() -> None:
    doc = load_yaml(GRAFANA / "provisioning" / "dashboards" / "rater.yml")
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    targets = {v.split(":")[1] for v in grafana["volumes"] if v.startswith("../grafana/")}
    assert f"{path}/{DASHBOARD.name}" in targets
    assert "/etc/grafana/provisioning" in targets
