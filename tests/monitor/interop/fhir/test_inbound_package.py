"""The inbound mapping as a package: its public names stay where callers import them from, and
every module imports on its own (no import cycle, whichever module is imported first).
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import monitor.interop.fhir.inbound as inbound

# what other modules and the tests import from `monitor.interop.fhir.inbound`
PUBLIC = (
    "BUNDLE_ELEMENTS",
    "DOMAIN_TERMS",
    "GRADING_STATUSES",
    "LOOKUP_TYPES",
    "MAPPED_TYPES",
    "ORDER_STATUSES",
    "BundleKind",
    "EntryProblem",
    "FhirMapping",
    "MappedEvent",
    "map_fhir",
    "patient_id_of",
    "pseudonym",
)

FIRST_IMPORT = """
import importlib, sys
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.startswith("monitor.interop.fhir.inbound")]:
        del sys.modules[loaded]
    importlib.import_module(name)
"""


def test_public_names_are_importable_from_the_package() -> None:
    assert sorted(inbound.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(inbound, name) is not None


def test_each_module_imports_first_without_a_cycle() -> None:
    names = [inbound.__name__] + [
        f"{inbound.__name__}.{m.name}" for m in pkgutil.iter_modules(inbound.__path__)
    ]
    assert f"{inbound.__name__}.bundle" in names
    result = subprocess.run(
        [sys.executable, "-c", FIRST_IMPORT, *names], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
