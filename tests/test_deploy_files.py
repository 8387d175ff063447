"""The container and Kubernetes files parse and run the same command line as the README."""

from __future__ import annotations

import pathlib

import yaml

from monitor.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_compose_services_run_known_commands() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"], "docker-compose.yml defines no service"
    for name, service in compose["services"].items():
        assert "build" in service or "image" in service, name
        parsed = build_parser().parse_args(service["command"])
        assert parsed.command == "replay", name


def test_kubernetes_manifests_are_valid_objects_with_known_commands() -> None:
    manifests = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
    assert manifests
    for path in manifests:
        for doc in yaml.safe_load_all(path.read_text()):
            assert {"apiVersion", "kind", "metadata", "spec"} <= doc.keys(), path.name
            for container in doc["spec"]["template"]["spec"]["containers"]:
                assert build_parser().parse_args(container["args"]).command == "replay"
