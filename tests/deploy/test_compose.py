"""deploy/compose/compose.yaml: valid against the Compose Specification JSON
schema (vendored under schemas/, see schemas/README.md) and wired as SPEC §10
says."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.deploy._support import COMPOSE, ROOT, load_yaml

SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
WORKERS = ("rater-1", "rater-2")
LONG_RUNNING = ("kafka", "redis", *WORKERS, "prometheus", "grafana")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(COMPOSE)
    return loaded


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_valid_against_compose_spec(
    compose: dict[str, Any], validator: jsonschema.Draft7Validator
) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_schema_rejects_an_invalid_file(
    compose: dict[str, Any], validator: jsonschema.Draft7Validator
) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["redis"]["restart_policy"] = "always"  # not a service key
    broken["services"]["kafka"]["ports"] = "29092"  # must be a list
    assert len(list(validator.iter_errors(broken))) >= 2


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "kafka",
        "redis",
        "topics",
        *WORKERS,
        "prometheus",
        "grafana",
    }


def test_kafka_is_single_node_kraft(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = _env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert not any("ZOOKEEPER" in key for key in env)
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def test_redis_uses_aof_always(compose: dict[str, Any]) -> None:
    """docs/operations.md: the rater requires appendfsync always (tests/faults shows why)."""
    command = compose["services"]["redis"]["command"]
    joined = " ".join(command) if isinstance(command, list) else command
    assert "--appendonly yes" in joined
    assert "--appendfsync always" in joined
    assert any(v.endswith(":/data") for v in compose["services"]["redis"]["volumes"])


@pytest.mark.parametrize("name", WORKERS)
def test_worker_environment_and_build(compose: dict[str, Any], name: str) -> None:
    worker = compose["services"][name]
    assert worker["build"]["context"] == "../.."
    assert (
        COMPOSE.parent / worker["build"]["context"] / worker["build"]["dockerfile"]
    ).resolve() == ROOT / "Dockerfile"
    env = _env(worker)
    assert env["RATER_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["RATER_REDIS_URL"] == "redis://redis:6379/0"
    assert env["RATER_WEB_HOST"] == "0.0.0.0"
    assert worker.get("command") in (None, ["worker"])
    deps = worker["depends_on"]
    assert deps["kafka"]["condition"] == "service_healthy"
    assert deps["redis"]["condition"] == "service_healthy"
    assert deps["topics"]["condition"] == "service_completed_successfully"


def test_workers_have_distinct_ports_matching_prometheus(compose: dict[str, Any]) -> None:
    ports = {}
    for name in WORKERS:
        worker = compose["services"][name]
        port = _env(worker)["RATER_WEB_PORT"]
        published = [p.rsplit(":", 2) for p in worker["ports"]]
        assert [p[-1] for p in published] == [port], (name, worker["ports"])
        assert f":{port}/" in " ".join(worker["healthcheck"]["test"])
        ports[name] = port
    assert len(set(ports.values())) == len(WORKERS)
    prom = load_yaml(COMPOSE.parent.parent / "prometheus" / "prometheus-compose.yml")
    targets = {
        t for sc in prom["scrape_configs"] for c in sc["static_configs"] for t in c["targets"]
    }
    assert targets == {f"{name}:{port}" for name, port in ports.items()}


def test_topic_creation_is_one_shot(compose: dict[str, Any]) -> None:
    topics = compose["services"]["topics"]
    assert topics["command"] == ["topics", "create"]
    assert topics["restart"] == "no"
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert _env(topics)["RATER_KAFKA_BOOTSTRAP"] == "kafka:9092"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_healthchecks(compose: dict[str, Any], name: str) -> None:
    check = compose["services"][name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) >= 2
    assert re.fullmatch(r"\d+s", check["interval"])


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    mounts = [
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if volume.startswith(".")
    ]
    assert len(mounts) >= 4
    for source in mounts:
        assert (COMPOSE.parent / source).exists(), source


def test_prometheus_gets_config_and_rules(compose: dict[str, Any]) -> None:
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "../prometheus/prometheus-compose.yml:/etc/prometheus/prometheus.yml:ro" in volumes
    assert "../prometheus/rules:/etc/prometheus/rules:ro" in volumes
    assert (
        "--config.file=/etc/prometheus/prometheus.yml"
        in compose["services"]["prometheus"]["command"]
    )


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    used = {
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if not volume.startswith((".", "/"))
    }
    assert used and used <= set(compose.get("volumes", {}))
