"""deploy/k8s: schema-valid for Kubernetes (kubernetes-validate, offline
bundled OpenAPI schemas, strict mode) and wired as the rater needs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy._support import K8S, ROOT, WEB_PORT, load_yaml, load_yaml_all

try:
    import kubernetes_validate
except ImportError:  # pragma: no cover - reported by the test below
    kubernetes_validate = None

KUBERNETES_VERSION = "1.30"  # oldest Kubernetes the manifests must work on
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
CONFIG_SOURCE = (ROOT / "rater" / "config.py").read_text(encoding="utf-8")


def _resources() -> dict[str, dict[str, Any]]:
    out = {}
    for path in MANIFESTS:
        for doc in load_yaml_all(path):
            out[doc["kind"]] = doc
    return out


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    return _resources()


@pytest.fixture(scope="module")
def pod(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = resources["Deployment"]["spec"]["template"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod["spec"]["containers"]
    return only


def test_kubernetes_validate_is_installed() -> None:
    if kubernetes_validate is None:
        pytest.fail(
            "kubernetes-validate is missing: pip install kubernetes-validate", pytrace=False
        )


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_schema_valid(path: Path) -> None:
    if kubernetes_validate is None:
        pytest.fail(
            "kubernetes-validate is missing: pip install kubernetes-validate", pytrace=False
        )
    for doc in load_yaml_all(path):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_schema_validation_rejects_a_typo() -> None:
    if kubernetes_validate is None:
        pytest.fail(
            "kubernetes-validate is missing: pip install kubernetes-validate", pytrace=False
        )
    deployment = load_yaml(K8S / "deployment.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_manifest_has_identity_and_no_namespace() -> None:
    assert {p.name for p in MANIFESTS} == {
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "pdb.yaml",
    }
    for path in MANIFESTS:
        for doc in load_yaml_all(path):
            assert doc["apiVersion"] and doc["kind"], path
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
            assert "namespace" not in doc["metadata"], f"{path.name} must stay namespace-less"
            assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "rater"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)
    assert "namespace" not in kustomization
    assert kustomization["images"][0]["name"] == "rater"


def test_api_versions(resources: dict[str, dict[str, Any]]) -> None:
    assert {kind: r["apiVersion"] for kind, r in resources.items()} == {
        "ConfigMap": "v1",
        "Deployment": "apps/v1",
        "Service": "v1",
        "PodDisruptionBudget": "policy/v1",
    }


def test_deployment_replicas_and_selector(resources: dict[str, dict[str, Any]]) -> None:
    deployment = resources["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert resources["Service"]["spec"]["selector"].items() <= labels.items()
    assert (
        resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items()
        <= labels.items()
    )
    assert resources["PodDisruptionBudget"]["spec"]["minAvailable"] == 1


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (named,) = [p for p in container["ports"] if p["name"] == port]
    return int(named["containerPort"])


def test_probes_hit_health_endpoints_on_web_port(container: dict[str, Any]) -> None:
    assert [p["containerPort"] for p in container["ports"]] == [WEB_PORT]
    probes = {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in probes.items():
        http = container[probe]["httpGet"]
        assert http["path"] == path
        assert _port_number(container, http["port"]) == WEB_PORT
    if "startupProbe" in container:
        assert _port_number(container, container["startupProbe"]["httpGet"]["port"]) == WEB_PORT


def test_service_targets_web_port(
    resources: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    (port,) = resources["Service"]["spec"]["ports"]
    assert port["port"] == WEB_PORT
    assert _port_number(container, port["targetPort"]) == WEB_PORT


def test_prometheus_annotations(pod: dict[str, Any]) -> None:
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(WEB_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_security_context(pod: dict[str, Any], container: dict[str, Any]) -> None:
    pod_sc = pod["spec"]["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == 10001  # the uid of the image (Dockerfile)
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]


def test_writable_paths_are_volumes(
    resources: dict[str, dict[str, Any]], pod: dict[str, Any], container: dict[str, Any]
) -> None:
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    data_dir = resources["ConfigMap"]["data"]["RATER_DATA_DIR"]
    assert data_dir in mounts and "/tmp" in mounts
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts[data_dir]]


def test_resources_set(container: dict[str, Any]) -> None:
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])


def test_env_from_configmap_and_jwt_secret(
    resources: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    config_name = resources["ConfigMap"]["metadata"]["name"]
    assert {"configMapRef": {"name": config_name}} in container["envFrom"]
    (jwt,) = [e for e in container["env"] if e["name"] == "RATER_JWT_KEY"]
    assert jwt["valueFrom"]["secretKeyRef"]["key"] == "RATER_JWT_KEY"
    assert "RATER_JWT_KEY" not in resources["ConfigMap"]["data"]


def test_configmap_holds_only_known_settings(resources: dict[str, dict[str, Any]]) -> None:
    data = resources["ConfigMap"]["data"]
    assert data["RATER_WEB_PORT"] == str(WEB_PORT)
    assert data["RATER_WEB_HOST"] == "0.0.0.0"
    assert all(isinstance(v, str) for v in data.values())
    unknown = [key for key in data if f'"{key}"' not in CONFIG_SOURCE]
    assert unknown == [], f"not read by rater/config.py: {unknown}"
