"""deploy/ is checked offline: images cannot be built here, so the manifests are what CI can test.

Kubernetes manifests are validated against the API schemas bundled with kubernetes-validate
(strict: unknown fields fail), docker-compose.yml against the Compose specification's schema
bundled with check-jsonschema. Beyond the schemas, the checks catch what a schema cannot: a
role without a Deployment, a setting name postroom does not read, a container running as root.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from postroom.runner import ALL_ROLES
from postroom.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"

# Read by boto3 itself (storage/README.md), or by Settings before its fields (POSTROOM_CONFIG).
OTHER_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
SETTING_NAMES = {f"POSTROOM_{name.upper()}" for name in Settings.model_fields} | {"POSTROOM_CONFIG"}


@functools.cache
def _resources() -> list[dict[str, Any]]:
    """Parsed once per run (PyYAML is slow); tests that change a resource copy it first."""
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def _kind(kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in _resources() if r["kind"] == kind}


def _pod_specs() -> dict[str, dict[str, Any]]:
    return {
        name: r["spec"]["template"]["spec"]
        for kind in ("Deployment", "Job")
        for name, r in _kind(kind).items()
    }


def _compose() -> dict[str, Any]:
    return copy.deepcopy(_compose_file())


@functools.cache
def _compose_file() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return loaded


def _compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    version = kubernetes_validate.latest_version()
    resources = _resources()
    assert resources
    for resource in resources:
        kubernetes_validate.validate(resource, version, strict=True)


def test_the_kubernetes_validator_rejects_a_misspelt_field() -> None:
    deployment = copy.deepcopy(_kind("Deployment")["postroom-gateway"])
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_compose_file_matches_the_compose_specification() -> None:
    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    validator.validate(_compose())
    broken = _compose()
    broken["services"]["gateway"]["healthcheck"]["intervall"] = "10s"
    assert not validator.is_valid(broken)


def test_every_role_has_a_deployment_and_a_compose_service() -> None:
    deployments = {
        name: spec["containers"][0]["args"]
        for name, spec in _pod_specs().items()
        if name in _kind("Deployment")
    }
    assert deployments == {f"postroom-{role}": ["run", role] for role in ALL_ROLES}
    assert _pod_specs()["postroom-migrate"]["containers"][0]["args"] == ["migrate"]

    services = _compose()["services"]
    commands = {name: service.get("command") for name, service in services.items()}
    for role in ALL_ROLES:
        assert commands[role] == ["run", role]
        assert "healthcheck" in services[role], role
        assert services[role]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert commands["migrate"] == ["migrate"]
    assert {"postgres", "redis", "minio", "opensearch"} <= set(services)


def test_autoscalers_target_smtp_out_and_processor() -> None:
    targets = {
        r["spec"]["scaleTargetRef"]["name"] for r in _kind("HorizontalPodAutoscaler").values()
    }
    assert targets == {"postroom-smtp-out", "postroom-processor"}
    assert targets <= set(_kind("Deployment"))


def test_every_deployment_has_a_disruption_budget_selecting_it() -> None:
    budgets = [r["spec"]["selector"]["matchLabels"] for r in _kind("PodDisruptionBudget").values()]
    for name, deployment in _kind("Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(selector.items() <= labels.items() for selector in budgets), name


def test_services_and_ingress_point_at_ports_that_exist() -> None:
    pods = _kind("Deployment")
    port_names: dict[str, set[str]] = {}
    for name, service in _kind("Service").items():
        selector = service["spec"]["selector"]
        [pod] = [
            d["spec"]["template"]["spec"]
            for d in pods.values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        exposed = {p["name"] for c in pod["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= exposed, name
        port_names[name] = {p["name"] for p in service["spec"]["ports"]}
    for ingress in _kind("Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["port"]["name"] in port_names[backend["name"]]


def test_containers_run_as_non_root() -> None:
    for name, pod in _pod_specs().items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    users = re.findall(r"^USER\s+(\S+)", final_stage, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")


def _k8s_variables() -> set[str]:
    names: set[str] = set()
    for resource in _resources():
        if resource["kind"] == "ConfigMap":
            names |= set(resource["data"])
        if resource["kind"] == "Secret":
            names |= set(resource.get("stringData", {})) | set(resource.get("data", {}))
    for pod in _pod_specs().values():
        names |= {env["name"] for c in pod["containers"] for env in c.get("env", [])}
    return names


def _compose_variables() -> set[str]:
    names: set[str] = set()
    for service in _compose()["services"].values():
        if "postroom" in str(service.get("image", "")):
            names |= set(service.get("environment", {}))
    return names


def test_every_variable_is_a_setting_postroom_reads() -> None:
    variables = _k8s_variables() | _compose_variables()
    assert "POSTROOM_DATABASE_URL" in variables
    assert variables - SETTING_NAMES - OTHER_VARIABLES == set()


def test_the_guide_and_dockerfile_name_only_real_settings() -> None:
    for path in (DEPLOY / "README.md", DEPLOY / "Dockerfile", DEPLOY / "docker-compose.yml"):
        mentioned = set(re.findall(r"POSTROOM_[A-Z0-9_]+", path.read_text()))
        assert mentioned - SETTING_NAMES == set(), path.name
