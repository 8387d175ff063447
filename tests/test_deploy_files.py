"""The container and Kubernetes files parse and run command lines the CLI accepts.

Docker is not available on these machines: these checks are static (the production topology is
started natively by the integration tests). `docker-compose -f docker-compose.yml config -q`
validates the compose file against the Compose schema where Debian's docker-compose is installed.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from monitor.cli import build_parser
from monitor.settings import Settings

ROOT = pathlib.Path(__file__).resolve().parents[1]
IMAGE = "bipn-monitor:latest"
SETTING_NAMES = {f"MONITOR_{name.upper()}" for name in Settings.model_fields}


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _image_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == IMAGE or "build" in service
    }


def _manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    paths = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
    assert paths, "deploy/k8s holds no manifest"
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), path.name
            yield path.name, doc


def _by_kind_and_name() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in _manifests()}


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] not in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return []
    pod = doc["spec"]["template"]["spec"]
    containers: list[dict[str, Any]] = pod["containers"] + pod.get("initContainers", [])
    return containers


# --- docker-compose.yml -------------------------------------------------------------------


def test_compose_has_the_production_topology() -> None:
    services = _compose()["services"]
    assert {"redis", "postgres", "migrate", "api", "worker", "webhooks", "scheduler"} <= set(
        services
    )
    image_services = _image_services(_compose())
    assert set(image_services) == {"migrate", "api", "worker", "webhooks", "scheduler"}


def test_every_image_service_runs_a_command_the_cli_accepts() -> None:
    expected = {
        "migrate": ("migrate", {}),
        "api": ("api", {"host": "0.0.0.0", "port": 8000}),
        "worker": ("worker", {"queues": "monitor"}),
        "webhooks": ("worker", {"queues": "webhooks"}),
        "scheduler": ("scheduler", {}),
    }
    for name, service in _image_services(_compose()).items():
        assert service["image"] == IMAGE, name
        assert "entrypoint" not in service, f"{name} must use the image's entrypoint"
        parsed = build_parser().parse_args(service["command"])
        command, options = expected[name]
        assert parsed.command == command, name
        for key, value in options.items():
            assert getattr(parsed, key) == value, (name, key)


def test_compose_settings_come_from_one_shared_anchor() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"^x-monitor-env: &monitor-env$", text, re.MULTILINE)
    compose = _compose()
    shared = compose["x-monitor-env"]
    assert {"MONITOR_DATABASE_URL", "MONITOR_BROKER_URL"} <= shared.keys()
    assert set(shared) <= SETTING_NAMES, set(shared) - SETTING_NAMES
    for name, service in _image_services(compose).items():
        assert service["environment"] == shared, name
    # The URLs point at the compose services, not at localhost.
    assert "@postgres:5432/" in shared["MONITOR_DATABASE_URL"]
    assert shared["MONITOR_BROKER_URL"].startswith("redis://redis:6379/")


def test_compose_start_order_and_healthchecks() -> None:
    services = _compose()["services"]
    for name in ("redis", "postgres", "api"):
        assert services[name]["healthcheck"]["test"], name
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    assert "/readyz" in api_check
    assert "127.0.0.1:8000" in api_check
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker", "webhooks", "scheduler"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "redis": {"condition": "service_healthy"},
        }, name
    volumes = services["postgres"]["volumes"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in volumes), volumes
    assert volumes[0].split(":")[0] in _compose()["volumes"]


def test_compose_worker_scales_and_scheduler_does_not() -> None:
    services = _compose()["services"]
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "scale" not in worker
    assert "replicas" not in worker.get("deploy", {})
    scheduler = services["scheduler"]
    assert "ports" not in scheduler
    assert scheduler.get("deploy", {}).get("replicas", 1) == 1


def test_dockerfile_runs_the_cli_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "monitor"]' in text
    users = re.findall(r"^USER\s+(\S+)$", text, re.MULTILINE)
    assert users, "no USER: the image would run as root"
    assert users[-1] not in ("root", "0")
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert cmd is not None
    assert build_parser().parse_args(yaml.safe_load(cmd.group(1))).command == "serve"


# --- deploy/k8s ---------------------------------------------------------------------------


def test_every_manifest_is_an_object_with_a_name_and_no_namespace() -> None:
    seen = 0
    for path, doc in _manifests():
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path
        assert doc["metadata"]["name"], path
        assert "namespace" not in doc["metadata"], f"{path}: manifests are namespace-free"
        seen += 1
    assert seen >= 7


def test_every_container_runs_the_image_with_arguments_the_cli_accepts() -> None:
    commands = {}
    for path, doc in _manifests():
        for container in _containers(doc):
            assert container["image"] == IMAGE, path
            assert "command" not in container, f"{path}: use the image's entrypoint"
            commands[doc["metadata"]["name"]] = build_parser().parse_args(container["args"])
    assert {name: parsed.command for name, parsed in commands.items()} == {
        "bipn-api": "api",
        "bipn-worker": "worker",
        "bipn-webhooks": "worker",
        "bipn-scheduler": "scheduler",
        "bipn-migrate": "migrate",
        "bipn-replay": "replay",
    }
    assert (commands["bipn-api"].host, commands["bipn-api"].port) == ("0.0.0.0", 8000)
    # deliveries on their own queue, in pods of their own (issue 11)
    assert commands["bipn-worker"].queues == "monitor"
    assert commands["bipn-webhooks"].queues == "webhooks"


@pytest.mark.parametrize(
    "name", ["bipn-api", "bipn-worker", "bipn-webhooks", "bipn-scheduler", "bipn-migrate"]
)
def test_service_pods_take_settings_from_the_configmap_and_secret(name: str) -> None:
    objects = _by_kind_and_name()
    kind = "Job" if name == "bipn-migrate" else "Deployment"
    doc = objects[(kind, name)]
    pod = doc["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    assert container["envFrom"] == [
        {"configMapRef": {"name": "bipn-monitor-config"}},
        {"secretRef": {"name": "bipn-monitor-secrets"}},
    ]
    assert {"requests", "limits"} <= container["resources"].keys()
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    if kind == "Deployment":
        labels = doc["spec"]["selector"]["matchLabels"]
        assert labels.items() <= doc["spec"]["template"]["metadata"]["labels"].items()


def test_the_scheduler_runs_two_replicas_behind_its_lease() -> None:
    doc = _by_kind_and_name()[("Deployment", "bipn-scheduler")]
    assert doc["spec"]["replicas"] == 2
    assert doc["spec"]["strategy"]["type"] == "RollingUpdate"


def test_config_and_secret_split_the_settings() -> None:
    objects = _by_kind_and_name()
    config = objects[("ConfigMap", "bipn-monitor-config")]["data"]
    secret = objects[("Secret", "bipn-monitor-secrets")]["stringData"]
    assert set(config) <= SETTING_NAMES, set(config) - SETTING_NAMES
    assert all(isinstance(v, str) for v in config.values())  # ConfigMap values are strings
    assert set(secret) == {"MONITOR_DATABASE_URL", "MONITOR_BROKER_URL", "MONITOR_AUDIT_KEY"}
    assert not set(config) & set(secret)
    assert all("CHANGE-ME" in v for v in secret.values())  # placeholders, never credentials
    # The ConfigMap's values are valid settings (with the Secret's URLs as stand-ins).
    Settings.model_validate({k.removeprefix("MONITOR_").lower(): v for k, v in config.items()})


def test_api_deployment_and_service() -> None:
    objects = _by_kind_and_name()
    api = objects[("Deployment", "bipn-api")]
    assert api["spec"]["replicas"] == 2
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    service = objects[("Service", "bipn-api")]
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_workers_scale_and_the_migration_runs_once() -> None:
    objects = _by_kind_and_name()
    assert objects[("Deployment", "bipn-worker")]["spec"]["replicas"] == 2
    migrate = objects[("Job", "bipn-migrate")]["spec"]
    assert migrate["template"]["spec"]["restartPolicy"] == "Never"
