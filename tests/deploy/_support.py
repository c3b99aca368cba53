"""Paths and helpers shared by the deploy-artefact tests."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "rules" / "rater.rules.yml"
RULES_TEST = PROMETHEUS / "rules" / "rater.rules.test.yml"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
K8S = DEPLOY / "k8s"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "rater-dashboard.json"
DOCS = ROOT / "docs" / "operations-metrics.md"
WEB_PORT = 6066

ALERTS = (
    "RaterDown",
    "RaterNotReady",
    "RaterConsumerLagGrowing",
    "RaterDeadLettersRising",
    "RaterRedisErrors",
    "RaterRevenueLeakage",
    "RaterSlowRating",
    "RaterAuthorizeSlow",
    "RaterSessionsExpiring",
)


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_yaml_all(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
