"""A Prometheus configuration derived from the shipped one, for tests that run
a real Prometheus against live workers.

    from tests.deploy.promconfig import write_prometheus_config
    config = write_prometheus_config(tmp_path / "prometheus.yml", ["127.0.0.1:16066"])
    # prometheus --config.file=<config> --storage.tsdb.path=<tmp> --web.listen-address=...

The job (name, interval, metrics path) stays exactly as shipped in
deploy/prometheus/prometheus.yml; only the static targets change, and the rule
files become absolute so the config works from any directory.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "prometheus.yml"


def prometheus_config(
    targets: Sequence[str], *, job: str = "rater", with_rules: bool = True
) -> dict[str, Any]:
    """The shipped config with `targets` as the static targets of `job`."""
    if not targets:
        raise ValueError("at least one target is needed")
    shipped: dict[str, Any] = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    config = copy.deepcopy(shipped)
    jobs = [sc for sc in config["scrape_configs"] if sc["job_name"] == job]
    if len(jobs) != 1:
        raise LookupError(f"{SHIPPED} has {len(jobs)} scrape configs named {job!r}")
    jobs[0]["static_configs"] = [{"targets": list(targets)}]
    if with_rules:
        config["rule_files"] = [
            str((SHIPPED.parent / rule).resolve()) for rule in shipped.get("rule_files", [])
        ]
    else:
        config.pop("rule_files", None)
    return config


def write_prometheus_config(path: Path, targets: Sequence[str], **kwargs: Any) -> Path:
    path.write_text(yaml.safe_dump(prometheus_config(targets, **kwargs), sort_keys=False))
    return path
