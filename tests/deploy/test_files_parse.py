"""Every YAML and JSON file under deploy/ parses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.deploy._support import DEPLOY

# local stack state and downloaded jars are not artefacts
IGNORED = {".cache", ".data"}


def _files(*suffixes: str) -> list[Path]:
    return sorted(
        p
        for p in DEPLOY.rglob("*")
        if p.is_file()
        and p.suffix in suffixes
        and not IGNORED.intersection(p.relative_to(DEPLOY).parts)
    )


YAML_FILES = _files(".yml", ".yaml")
JSON_FILES = _files(".json")


def test_the_artefacts_are_found() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES + JSON_FILES}
    for expected in (
        "prometheus/prometheus.yml",
        "prometheus/rules/rater.rules.yml",
        "prometheus/rules/rater.rules.test.yml",
        "compose/compose.yaml",
        "k8s/deployment.yaml",
        "k8s/kustomization.yaml",
        "grafana/rater-dashboard.json",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/rater.yml",
    ):
        assert expected in names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_yaml_parses(path: Path) -> None:
    with path.open(encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    assert docs, f"{path} is empty"
    assert all(isinstance(d, dict) for d in docs), f"{path}: top level must be a mapping"


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_json_parses(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and doc


def test_yaml_has_no_duplicate_keys() -> None:
    """PyYAML silently keeps the last of duplicate keys; a duplicated
    `environment:` or `ports:` would drop settings unnoticed."""

    class StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
        loader.flatten_mapping(node)
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)

    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.load("a: 1\na: 2\n", Loader=StrictLoader)
    for path in YAML_FILES:
        list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=StrictLoader))
