"""Every role is probed on /healthz (liveness) and /readyz (readiness) and scraped for metrics
on a port its container exposes; compose checks /readyz on the same ports (issue 9, point 1)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from postroom.runner import ALL_ROLES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Where each role answers: its own HTTP port, or the health port (POSTROOM_HEALTH_PORT).
PORTS = {"gateway": 8080, "realtime": 8081, "smtp-in": 8082, "processor": 8082, "smtp-out": 8082}


def _deployments() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "Deployment":
                found[doc["metadata"]["name"].removeprefix("postroom-")] = doc
    return found


def test_probes_and_scrape_annotations_point_at_the_roles_ports() -> None:
    deployments = _deployments()
    assert set(deployments) == set(ALL_ROLES)
    for role, deployment in deployments.items():
        template = deployment["spec"]["template"]
        [container] = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        readiness = container["readinessProbe"]["httpGet"]
        liveness = container["livenessProbe"]["httpGet"]
        assert readiness["path"] == "/readyz", role
        assert liveness["path"] == "/healthz", role
        assert ports[readiness["port"]] == ports[liveness["port"]] == PORTS[role], role
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", role
        assert annotations["prometheus.io/port"] == str(PORTS[role]), role
        assert annotations["prometheus.io/path"] == "/metrics", role


def test_the_health_port_and_json_logs_are_configured() -> None:
    config = next(
        doc
        for doc in yaml.safe_load_all((DEPLOY / "k8s" / "config.yaml").read_text())
        if doc["kind"] == "ConfigMap"
    )
    assert config["data"]["POSTROOM_HEALTH_PORT"] == "8082"
    assert config["data"]["POSTROOM_LOG_FORMAT"] == "json"


def test_compose_checks_readiness_on_the_same_ports() -> None:
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    for role in ALL_ROLES:
        check = " ".join(services[role]["healthcheck"]["test"])
        assert re.search(rf"http://127\.0\.0\.1:{PORTS[role]}/readyz", check), role
